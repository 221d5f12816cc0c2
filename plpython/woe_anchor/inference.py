"""Serve stored models: scoring SQL over any relation, live views, training features.

Only a model's stored artifacts are used: its registry row (thresholds, base
logit, cutoff), its final cuts row and its final map rows. Nothing is
re-learned. The statements built here are plain set-based SQL; the PL/pgSQL
wrappers in sql/functions/inference.sql run them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from . import bands, errors, packs, passes, schemas, sharded, source
from .errors import FitError
from .persist import REGISTRY
from .sqlgen import Compiler, quote_ident, quote_literal, utc_iso_sql

BANDS_VIEW = "ml.v_woe_anchor_bands_live_v1"
SCORES_VIEW = "ml.woe_anchor_scores_live_v1"
TRAIN_VIEW = "ml.woe_anchor_scores_live_train_v"
SPLIT_CENSORED_HOURS = 504  # SPEC.md 3: censored_ge_21d is 21 days whatever the label threshold

_MODEL_SQL = f"""
SELECT r.model_key, r.band_schema::text AS band_schema, r.base_logit, c.thresholds::text AS thresholds,
       r.source_relation, {utc_iso_sql('r.train_cutoff_ts')} AS cutoff
FROM {REGISTRY} r
LEFT JOIN ml.woe_anchor_cuts_v1 c ON c.model_key = r.model_key AND c.fold_id IS NULL
WHERE CASE WHEN $1::text IS NULL THEN r.is_active ELSE r.model_key = $1 END
"""
_MAP_SQL = """
SELECT band_name, band_value, woe FROM ml.woe_anchor_map_v1 WHERE model_key = $1 AND fold_id IS NULL
"""


@dataclass
class Model:
    key: str
    schema: bands.BandSchema
    base_logit: float
    learned: dict          # threshold name -> value (schema 1: dsold_t1..t4, c1, c2)
    woe: list              # per band of the schema: WOE per label, 0 where unseen
    source_relation: str
    cutoff: str            # ISO text, UTC


def load_model(plpy, key: str | None) -> Model:
    """The named model, or the active one; refuses a missing or incomplete model."""
    rows = plpy.execute(plpy.prepare(_MODEL_SQL, ["text"]), [key])
    if not rows:
        what = f"model {key!r} does not exist" if key else "no model is active"
        raise FitError(errors.NO_DATA_FOUND, what,
                       hint="List models with ml.woe_anchor_models(); fit one with CALL ml.fit_woe_anchor(...).")
    m = rows[0]
    if m["thresholds"] is None:
        raise FitError(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                       f"model {m['model_key']!r} has no final cuts row")
    stored = {(r["band_name"], r["band_value"]): r["woe"]
              for r in plpy.execute(plpy.prepare(_MAP_SQL, ["text"]), [m["model_key"]])}
    # the schema as the fit read it: editing or dropping schema rows never changes a model
    schema, problems = schemas.parse(m["band_schema"])
    if problems:
        raise FitError(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                       f"model {m['model_key']!r} records an unreadable band schema: {problems[0][1]}")
    # a category band keeps exactly the values its final map stores (everything else is OTHER)
    schema = schema.resolve({band.name: sorted(v for (name, v) in stored if name == band.name
                                               and v not in bands.RESERVED_LABELS)
                             for band in schema.bands if band.category is not None})
    woe = [np.array([stored.get((band.name, label), 0.0) for label in band.labels])
           for band in schema.bands]
    learned = {name: float(v) for name, v in json.loads(m["thresholds"]).items()}
    return Model(m["model_key"], schema, m["base_logit"], learned, woe,
                 m["source_relation"], m["cutoff"])


def model_bands(plpy, key: str | None) -> list[tuple]:
    """(band position, band, view column, subset, value position, value) of a model, in code order."""
    model = load_model(plpy, key)
    return [(i, band.name, band.column, band.subset, j, label)
            for i, band in enumerate(model.schema.bands) for j, label in enumerate(band.labels)]


def _final_rows(compiler: Compiler, qualified: str, model: Model, extra=()) -> str:
    """Every row of the relation scored with the model's final mapping (fit index 0)."""
    plan = packs.plan(model.schema)
    tables = [packs.woe_table(p, model.woe).tolist() for p in plan]
    return passes.scored_rows_sql(compiler, qualified, plan, "0", [model.base_logit], tables, extra=extra)


def score_sql(plpy, source_oid, key: str | None) -> str:
    """The statement behind ml.woe_anchor_score(source, model_key)."""
    model = load_model(plpy, key)
    src = source.resolve(plpy, source_oid, model.schema, labels=False)
    rows = _final_rows(Compiler(model.schema, src.reads, model.learned), src.qualified, model)
    return (f"SELECT q.generation::int, q.listing_id::bigint, q.t0, {quote_literal(model.key)}::text, "
            f"q.l, {passes.sigmoid_sql('q.l')} FROM ({rows}) AS q")


def training_features_sql(plpy, key: str | None, source_oid=None) -> str:
    """Every row of the model's training source with its split and its anchor feature.

    TRAIN SOLD rows carry their stored OOF score (requirements 4.2 step 3),
    every other row the final mapping's score. The source is the one given,
    else the one the model records, read only when no code in it can run
    with rights its owner lacks (``recorded_source``).
    """
    model = load_model(plpy, key)
    oid = source_oid if source_oid is not None else recorded_source(plpy, model)
    src = source.resolve(plpy, oid, model.schema)
    cutoff = f"{quote_literal(model.cutoff)}::timestamptz"
    dur = src.reads["duration_hours"]
    split = (f"CASE WHEN s.sold_time <= {cutoff} THEN 'train_sold' "
             f"WHEN s.sold_time <= {cutoff} + interval '168 hours' THEN 'eval_sold_last_7d' "
             f"WHEN s.sold_time IS NULL AND {dur} >= {SPLIT_CENSORED_HOURS} THEN 'censored_ge_21d' "
             f"ELSE 'other' END")
    rows = _final_rows(Compiler(model.schema, src.reads, model.learned), src.qualified, model,
                       extra=((split, "split"),))
    return f"""
SELECT q.generation::int, q.listing_id::bigint, q.t0, q.split, sc.fold_id,
       coalesce(sc.is_oof, false), coalesce(sc.woe_logit, q.l),
       coalesce(sc.woe_p, {passes.sigmoid_sql('q.l')})
FROM ({rows}) AS q
LEFT JOIN ({_stored_scores(plpy, model.key)}) AS sc
       ON q.split = 'train_sold'
      AND (sc.generation, sc.listing_id, sc.t0) = (q.generation::int, q.listing_id::bigint, q.t0)
"""


# Objects whose code a read of a relation may run as the reader: the relations, functions and
# operators its view rules and row-level policies use, transitively. Each is trusted when its
# owner already has every right of the reader (the reader itself, a superuser, or a role the
# reader is granted to); a SECURITY DEFINER function runs as its owner and is always safe.
_UNTRUSTED_CODE_SQL = """
WITH RECURSIVE uses (rel, classid, objid) AS (
    SELECT w.ev_class, d.refclassid, d.refobjid
    FROM pg_catalog.pg_rewrite AS w JOIN pg_catalog.pg_depend AS d
      ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = w.oid
    UNION ALL
    SELECT p.polrelid, d.refclassid, d.refobjid
    FROM pg_catalog.pg_policy AS p JOIN pg_catalog.pg_depend AS d
      ON d.classid = 'pg_catalog.pg_policy'::regclass AND d.objid = p.oid
), reached (classid, objid) AS (
    SELECT 'pg_catalog.pg_class'::regclass::oid, $1::oid
    UNION
    SELECT u.classid, u.objid FROM reached AS r
    JOIN uses AS u ON r.classid = 'pg_catalog.pg_class'::regclass AND u.rel = r.objid
    WHERE u.classid IN ('pg_catalog.pg_class'::regclass, 'pg_catalog.pg_proc'::regclass,
                        'pg_catalog.pg_operator'::regclass)
), code (what, owner, definer) AS (
    SELECT c.oid::regclass::text, c.relowner, false
    FROM reached AS r JOIN pg_catalog.pg_class AS c ON r.classid = 'pg_catalog.pg_class'::regclass AND c.oid = r.objid
    UNION ALL
    SELECT p.oid::regprocedure::text, p.proowner, p.prosecdef
    FROM reached AS r
    LEFT JOIN pg_catalog.pg_operator AS o ON r.classid = 'pg_catalog.pg_operator'::regclass AND o.oid = r.objid
    JOIN pg_catalog.pg_proc AS p ON p.oid = CASE WHEN r.classid = 'pg_catalog.pg_proc'::regclass THEN r.objid
                                                 ELSE o.oprcode END
)
SELECT string_agg(DISTINCT c.what || ' (owner ' || pg_catalog.pg_get_userbyid(c.owner) || ')', ', ') AS untrusted
FROM code AS c
WHERE NOT c.definer
  AND c.owner <> (SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user)
  AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.oid = c.owner)
  AND NOT pg_catalog.pg_has_role(c.owner, current_user, 'USAGE')
"""


def untrusted_code(plpy, relation_oid) -> str | None:
    """What a read of the relation could run as the caller although its owner lacks the caller's rights."""
    return plpy.execute(plpy.prepare(_UNTRUSTED_CODE_SQL, ["oid"]), [relation_oid])[0]["untrusted"]


def recorded_source(plpy, model: Model):
    """The OID of the source the model records, when the caller may safely read it by that name.

    Whoever fitted a model chose its source, so reading it for someone else is
    how a trainer would make an administrator or a reader run its code (a view
    calling its function). That source is read only when no code in it runs
    with rights its owner lacks; otherwise the caller must name it.
    """
    oid = plpy.execute(plpy.prepare("SELECT to_regclass($1)::oid AS oid", ["text"]),
                       [model.source_relation])[0]["oid"]
    if oid is None:
        raise FitError(errors.UNDEFINED_TABLE,
                       f"training source {model.source_relation} of model {model.key!r} no longer exists")
    untrusted = untrusted_code(plpy, oid)
    if untrusted:
        raise FitError("42501", f"training source {model.source_relation} of model {model.key!r} runs code of "
                                f"roles without your rights: {untrusted}",
                       hint="Pass the source yourself, source => '...', once you trust what reading it runs "
                            "(it runs with your rights).")
    return oid


def stored_scores_sql(plpy, key: str | None) -> str:
    """The statement behind ml.woe_anchor_stored_scores(model_key)."""
    return _stored_scores(plpy, load_model(plpy, key).key)


def _stored_scores(plpy, key: str) -> str:
    """The model's stored scores: its partition, and for scores_on_shards the shards' tables."""
    local = (f"SELECT s.generation, s.listing_id, s.t0, s.fold_id, s.is_oof, s.woe_logit, s.woe_p "
             f"FROM ml.woe_anchor_scores_v1 AS s WHERE s.model_key = {quote_literal(key)}")
    remote = plpy.execute(plpy.prepare("SELECT server::text, remote_table FROM ml.woe_anchor_shard_scores "
                                       "WHERE model_key = $1 ORDER BY 1, 2", ["text"]), [key])
    return " UNION ALL ".join([local] + [sharded.shard_scores_sql(plpy, r["server"], r["remote_table"]) for r in remote])


def create_views(plpy, source_oid, version) -> None:
    """(Re)create the live views over the caller's source for band schema ``version``.

    The views read the active model's thresholds and map rows at query time,
    so activating another model of the same schema changes what they return
    without recreating them. They score the active model only while its
    schema is ``version`` (default: the active model's); the train view fails
    otherwise. A model of another schema needs another call.
    """
    if version is None:
        active = plpy.execute(f"SELECT band_schema_version AS v FROM {REGISTRY} WHERE is_active")
        version = active[0]["v"] if active else 1
    _, schema = schemas.load(plpy, version)
    src = source.resolve(plpy, source_oid, schema, labels=False)
    c = Compiler(schema, src.reads, live="m")
    exprs = [c.band(band, as_label=True) for band in schema.bands]
    exprs += [c.subset(name) for name in schema.subsets]
    for band, _ in bands.scored_sums(schema):
        # a ladder over a weighted sum also shows the sum (schema 1: presentation_score)
        score = c.input(band.rules[0].tests[0].input)
        exprs.append(f"CASE WHEN {c.subset(band.subset)} THEN {score} END" if band.subset else score)
    columns = list(zip(exprs, bands.view_columns(schema)))
    _drop_views_of_another_shape(plpy, list(bands.KEY_OUTPUTS) + [name for _, name in columns])
    column_sql = ",\n       ".join(f"{expr} AS {quote_ident(name)}" for expr, name in columns)
    plpy.execute(f"""
CREATE OR REPLACE VIEW {BANDS_VIEW} WITH (security_invoker = true) AS
SELECT s.generation::int AS generation, s.listing_id::bigint AS listing_id, s.t0, m.model_key, m.base_logit,
       {column_sql}
FROM {src.qualified} AS s
CROSS JOIN (SELECT r.model_key, r.base_logit, k.thresholds
            FROM {REGISTRY} AS r
            JOIN ml.woe_anchor_cuts_v1 AS k ON k.model_key = r.model_key AND k.fold_id IS NULL
            WHERE r.is_active AND r.band_schema_version = {int(version)}) AS m""")
    joins, terms = [], ["b.base_logit"]
    for i, band in enumerate(schema.bands):
        joins.append(f"LEFT JOIN ml.woe_anchor_map_v1 AS m{i} ON m{i}.model_key = b.model_key "
                     f"AND m{i}.fold_id IS NULL AND m{i}.band_name = {quote_literal(band.name)} "
                     f"AND m{i}.band_value = b.{quote_ident(band.column)}")
        terms.append(f"coalesce(m{i}.woe, 0::float8)")
    plpy.execute(f"""
CREATE OR REPLACE VIEW {SCORES_VIEW} WITH (security_invoker = true) AS
SELECT q.generation, q.listing_id, q.t0, q.model_key, q.woe_logit,
       {passes.sigmoid_sql('q.woe_logit')} AS woe_anchor_p_slow21
FROM (SELECT b.generation, b.listing_id, b.t0, b.model_key, {' + '.join(terms)} AS woe_logit
      FROM {BANDS_VIEW} AS b
      {chr(10).join('      ' + j for j in joins).strip()}) AS q""")
    plpy.execute(f"""
CREATE OR REPLACE VIEW {TRAIN_VIEW} WITH (security_invoker = true) AS
SELECT * FROM {SCORES_VIEW} WHERE ml.woe_anchor_assert_ready({int(version)})""")
    for view, what in ((BANDS_VIEW, "band values of the active WOE anchor model"),
                       (SCORES_VIEW, "active WOE anchor model scores, joined from the final map"),
                       (TRAIN_VIEW, "active WOE anchor model scores; every query fails unless the model is ready")):
        comment = f"woe_anchor: {what} over {src.qualified}, band schema {int(version)}"
        plpy.execute(f"COMMENT ON VIEW {view} IS {quote_literal(comment)}")


def _drop_views_of_another_shape(plpy, wanted: list[str]) -> None:
    """CREATE OR REPLACE keeps grants but cannot change columns: views of another schema go first.

    No CASCADE: a view of the user's that depends on ours makes this fail loudly.
    """
    old = plpy.execute(f"""
SELECT array_agg(a.attname::text ORDER BY a.attnum) AS names
FROM pg_catalog.pg_attribute AS a
WHERE a.attrelid = to_regclass({quote_literal(BANDS_VIEW)}) AND a.attnum > 0 AND NOT a.attisdropped""")[0]["names"]
    if old is not None and old != wanted:
        plpy.execute(f"DROP VIEW IF EXISTS {TRAIN_VIEW}, {SCORES_VIEW}, {BANDS_VIEW}")
