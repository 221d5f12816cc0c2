"""Serve stored models: scoring SQL over any relation, live views, training features.

Only a model's stored artifacts are used: its registry row (thresholds, base
logit, cutoff), its final cuts row and its final map rows. Nothing is
re-learned. The statements built here are plain set-based SQL; the PL/pgSQL
wrappers in sql/functions/inference.sql run them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from . import bands, errors, packs, passes, quality, schemas, sharded, source
from .errors import Refusal
from .catalog import CENSORED_HOURS, CUTS, EVAL_WINDOW, IMPORTED_FROM, MAPS, REGISTRY, SCORES, SHARD_SCORES
from .sqlgen import Compiler, quote_literal, utc_iso_sql


# One statement, one snapshot: a model replaced under the same key between two reads would give
# one model's thresholds with another's map. The map comes as arrays (binary floats, exact in any
# session's extra_float_digits).
_MODEL_SQL = f"""
SELECT r.model_key, r.model_id, r.band_schema::text AS band_schema, r.base_logit, c.thresholds::text AS thresholds,
       r.source_relation, {utc_iso_sql('r.train_cutoff_ts')} AS cutoff, r.slow_threshold_hours,
       r.oof, r.oof_auc, r.insample_auc, m.band_names, m.band_values, m.woe, m.n_rows
FROM {REGISTRY} r
LEFT JOIN {CUTS} c ON c.model_key = r.model_key AND c.fold_id IS NULL
CROSS JOIN LATERAL (SELECT array_agg(x.band_name) AS band_names, array_agg(x.band_value) AS band_values,
                           array_agg(x.woe) AS woe, array_agg(x.n_rows) AS n_rows
                    FROM {MAPS} AS x WHERE x.model_key = r.model_key AND x.fold_id IS NULL) AS m
WHERE CASE WHEN $1::text IS NULL THEN r.is_active ELSE r.model_key = $1 END
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
    slow_threshold_hours: float  # its label's threshold
    model_id: int = 0      # which model of its key: a replaced one has another
    trained: dict = None   # (band, value) -> its final map's rows
    figures: dict = None   # the registry's oof, oof_auc, insample_auc


def unchanged_sql(model: Model) -> str:
    """A condition that holds while ``model`` is still its key's model, and otherwise fails its
    statement (40001): what a statement built from a model reads by the key at run time (stored
    scores, the registry) must be that model's, not a replacement's."""
    return f"(SELECT woe_anchor_internal.model_unchanged({quote_literal(model.key)}, {int(model.model_id)}))"


def load_model(plpy, key: str | None) -> Model:
    """The named model, or the active one; refuses a missing or incomplete model."""
    rows = plpy.execute(plpy.prepare(_MODEL_SQL, ["text"]), [key])
    if not rows:
        if key is not None:
            raise Refusal(errors.NO_DATA_FOUND, f"model {key!r} does not exist", hint=errors.LIST_MODELS)
        raise Refusal(errors.NO_DATA_FOUND, "no model is active", hint=errors.ACTIVATE_ONE)
    m = rows[0]
    if m["thresholds"] is None:
        raise Refusal(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                       f"model {m['model_key']!r} has no final cuts row")
    values = list(zip(m["band_names"] or [], m["band_values"] or []))  # (band, value) of each map row
    stored = dict(zip(values, m["woe"] or []))
    if not stored:   # every fit stores some: it would score every row with the base logit alone
        raise Refusal(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                       f"model {m['model_key']!r} has no final map rows",
                       hint="A restore that lost them? docs/backup.md restores with pg_restore -j in two passes.")
    # the schema as the fit read it: editing or dropping schema rows never changes a model
    schema, problems = schemas.parse(m["band_schema"])
    if problems:
        raise Refusal(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                       f"model {m['model_key']!r} records an unreadable band schema: {problems[0][1]}")
    # a category band keeps exactly the values its final map stores (everything else is OTHER)
    schema = schema.resolve({band.name: sorted(v for (name, v) in stored if name == band.name
                                               and v not in bands.RESERVED_LABELS)
                             for band in schema.bands if band.category is not None})
    woe = [np.array([stored.get((band.name, label), 0.0) for label in band.labels])
           for band in schema.bands]
    learned = {name: float(v) for name, v in json.loads(m["thresholds"]).items()}
    return Model(m["model_key"], schema, m["base_logit"], learned, woe,
                 m["source_relation"], m["cutoff"], m["slow_threshold_hours"], m["model_id"],
                 # an imported trainer model's map has no row counts: no training shares to compare
                 dict(zip(values, (int(n or 0) for n in m["n_rows"]))),
                 {k: m[k] for k in ("oof", "oof_auc", "insample_auc")})


def model_bands(plpy, key: str | None) -> list[tuple]:
    """(band position, band, view column, subset, value position, value) of a model: bands in schema
    order, each band's values in ``bands.display_order``."""
    model = load_model(plpy, key)
    return [(i, band.name, band.column, band.subset, j, label)
            for i, band in enumerate(model.schema.bands) for j, label in enumerate(bands.display_order(band))]


def final_rows(model: Model, src, where: str | None = None, extra=()) -> str:
    """Every row of the source (matching ``where``) scored with the model's final mapping (fit index 0)."""
    plan = packs.plan(model.schema)
    tables = [packs.woe_table(p, model.woe).tolist() for p in plan]
    return passes.scored_rows_sql(Compiler(model.schema, src.reads, model.learned), src.qualified, plan, "0",
                                  [model.base_logit], tables, where=where, extra=extra)


def timestamp_literal(plpy, value, name: str) -> str:
    """A caller's timestamptz ``name`` (as PL/Python hands it over: text in the session's style) as an
    exact, DateStyle-proof SQL literal in UTC; an infinite one is refused."""
    text = plpy.execute(plpy.prepare(f"SELECT {utc_iso_sql('$1::timestamptz')} AS t", ["text"]), [value])[0]["t"]
    if text is None:
        raise Refusal(errors.INVALID_PARAMETER_VALUE, f"{name} must be a finite timestamp, got {errors.sql_text(value)}")
    return f"{quote_literal(text)}::timestamptz"


def window_literals(plpy, start, end) -> tuple[str, str]:
    """``timestamp_literal`` of a window's start and end; refuses an end before its start."""
    first, last = timestamp_literal(plpy, start, "window_start"), timestamp_literal(plpy, end, "window_end")
    if plpy.execute(f"SELECT {first} > {last} AS inverted")[0]["inverted"]:
        raise Refusal(errors.INVALID_PARAMETER_VALUE, f"window_end {end} is before window_start {start}",
                      hint="Pass the window's start first.")
    return first, last


def score_sql(plpy, source_oid, key: str | None) -> str:
    """The statement behind ml.woe_anchor_score(source, model_key)."""
    model = load_model(plpy, key)
    src = source.resolve(plpy, source_oid, model.schema, labels=False)
    rows = final_rows(model, src)
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
             f"WHEN s.sold_time <= {cutoff} + {EVAL_WINDOW} THEN 'eval_sold_last_7d' "
             f"WHEN s.sold_time IS NULL AND {dur} >= {CENSORED_HOURS} THEN 'censored_ge_21d' "
             f"ELSE 'other' END")
    rows = final_rows(model, src, extra=((split, "split"),))
    return f"""
SELECT q.generation::int, q.listing_id::bigint, q.t0, q.split, sc.fold_id,
       coalesce(sc.is_oof, false), coalesce(sc.woe_logit, q.l),
       coalesce(sc.woe_p, {passes.sigmoid_sql('q.l')})
FROM ({rows}) AS q
LEFT JOIN ({_stored_scores(plpy, model)}) AS sc
       ON q.split = 'train_sold'
      AND (sc.generation, sc.listing_id, sc.t0) = (q.generation::int, q.listing_id::bigint, q.t0)
WHERE {unchanged_sql(model)}
"""


def labelled_logits(plpy, models: list, source_oid, start, end) -> tuple:
    """The labelled rows of ``source`` sold in (start, end] (default: the 7 days after the latest of
    the models' cutoffs), each model's final-mapping logit on them: (y, [logits per model], the
    source's name). The models must share their label (slow_threshold_hours)."""
    thresholds = {m.slow_threshold_hours for m in models}
    if len(thresholds) != 1:
        raise Refusal(errors.INVALID_PARAMETER_VALUE,
                      f"models {' and '.join(repr(m.key) for m in models)} learned different labels "
                      f"(slow_threshold_hours {' and '.join(f'{t:g}' for t in sorted(thresholds))}): their scores "
                      "cannot be compared on one")
    if start is None:  # the latest of the models' cutoffs
        start = plpy.execute(plpy.prepare("SELECT max(c::timestamptz)::text AS t FROM unnest($1::text[]) AS c",
                                          ["text[]"]), [[m.cutoff for m in models]])[0]["t"]
    if end is None:
        start = timestamp_literal(plpy, start, "window_start")
        end = f"{start} + {EVAL_WINDOW}"
    else:
        start, end = window_literals(plpy, start, end)
    sources = [source.resolve(plpy, source_oid, m.schema) for m in models]
    label = passes.label_sql(sources[0].reads, thresholds.pop())
    window = f"s.sold_time > {start} AND s.sold_time <= {end}"
    scored = [final_rows(m, src, where=window, extra=((label, "y"),)) for m, src in zip(models, sources)]
    order = "ORDER BY m0.generation, m0.listing_id, m0.t0"
    rows = plpy.execute(
        f"SELECT array_agg(m0.y {order}) AS y, "
        + ", ".join(f"array_agg(m{i}.l {order}) AS l{i}" for i in range(len(models)))
        + f" FROM ({scored[0]}) AS m0"
        + "".join(f" JOIN ({s}) AS m{i} USING (generation, listing_id, t0)" for i, s in enumerate(scored) if i))[0]
    logits = [np.asarray(rows[f"l{i}"] or [], dtype=np.float64) for i in range(len(models))]
    return np.asarray(rows["y"] or [], dtype=bool), logits, sources[0].qualified


def compare(plpy, key_a: str, key_b: str, source_oid, start, end) -> list[tuple]:
    """Models a and b scored with their final mappings on the same labelled rows of ``source``:
    sold in (start, end], by default the 7-day window after the later of their cutoffs. Rows of
    (metric, a, b, a - b, standard error of the difference, two-sided p): the rows compared,
    AUC (paired, DeLong), and mean log loss (paired row by row)."""
    models = [load_model(plpy, key_a), load_model(plpy, key_b)]
    y, (la, lb), qualified = labelled_logits(plpy, models, source_oid, start, end)
    if not y.any() or y.all():
        raise Refusal(errors.NO_DATA_FOUND, f"the window holds {len(y)} sold rows of {qualified}, "
                                            f"{int(y.sum())} of them slow21: AUC needs both classes",
                      hint="Pass window_start and window_end around sales that both models did not learn from.")
    auc_a, auc_b, auc_se = quality.paired_auc(y, la, lb)
    loss_a, loss_b = quality.row_logloss(y, la), quality.row_logloss(y, lb)
    loss_diff = loss_a - loss_b
    loss_se = float(np.std(loss_diff, ddof=1) / math.sqrt(len(y))) if len(y) > 1 else float("nan")

    def paired(name, a, b, se):
        diff = a - b
        return (name, a, b, diff, se, quality.two_sided_p(diff / se) if se > 0 else None)
    return [("rows", float(len(y)), float(len(y)), None, None, None),
            ("slow21 rows", float(y.sum()), float(y.sum()), None, None, None),
            paired("auc", auc_a, auc_b, auc_se),
            paired("logloss", float(loss_a.mean()), float(loss_b.mean()), loss_se),
            *_band_differences(plpy, *models)]


_BAND_DIFFERENCES_SQL = f"""
SELECT band, (ra.band_quality -> band ->> 'iv')::float8 AS iv_a, (rb.band_quality -> band ->> 'iv')::float8 AS iv_b,
       (SELECT max(abs(a.woe - b.woe)) FROM {MAPS} AS a JOIN {MAPS} AS b USING (band_name, band_value)
        WHERE a.model_key = $1 AND b.model_key = $2 AND a.fold_id IS NULL AND b.fold_id IS NULL
          AND a.band_name = band) AS max_woe_difference
FROM {REGISTRY} AS ra, {REGISTRY} AS rb, jsonb_object_keys(ra.band_quality) AS band
WHERE ra.model_key = $1 AND rb.model_key = $2 AND rb.band_quality ? band AND {{unchanged}}
ORDER BY band
"""


def _band_differences(plpy, a: Model, b: Model) -> list[tuple]:
    """Per band both models have: its information value in each ('iv <band>', a, b, a - b), and the
    largest difference of their final WOE over the values both stored ('max woe difference <band>')."""
    out = []
    sql = _BAND_DIFFERENCES_SQL.format(unchanged=f"{unchanged_sql(a)} AND {unchanged_sql(b)}")
    for r in plpy.execute(plpy.prepare(sql, ["text", "text"]), [a.key, b.key]):
        if r["iv_a"] is not None and r["iv_b"] is not None:
            out.append((f"iv {r['band']}", r["iv_a"], r["iv_b"], r["iv_a"] - r["iv_b"], None, None))
        out.append((f"max woe difference {r['band']}", None, None, r["max_woe_difference"], None, None))
    return out


def reasons_sql(plpy, source_oid, key: str | None) -> str:
    """Every row of ``source`` with each band's value and what it adds: the final mapping's WOE
    (these add up, with the base logit, to the row's score), and for a row the model stored a
    score for, the WOE its out-of-fold mapping gave (with the fold's base logit, they add up to
    the stored OOF score). NULL bands (outside their subset) are left out.

    A fold's mapping looks a category's raw value up in what that fold kept, else its
    ``__other__`` (``__null__`` for NULL), as its scoring did.
    """
    model = load_model(plpy, key)
    src = source.resolve(plpy, source_oid, model.schema, labels=False)
    c = Compiler(model.schema, src.reads, model.learned)
    k = quote_literal(model.key)
    null = quote_literal(bands.NULL_VALUE)
    values = ", ".join(
        f"({quote_literal(band.name)}, {c.band(band, as_label=True)}, "
        f"{f'coalesce({c.category_read(band)}, {null})' if band.category else 'NULL::text'})"
        for band in model.schema.bands)
    return f"""
SELECT s.generation::int, s.listing_id::bigint, s.t0, u.band_name, u.band_value, coalesce(f.woe, 0::float8),
       sc.fold_id, CASE WHEN sc.is_oof THEN coalesce(k.woe, o.woe, 0::float8) END
FROM {src.qualified} AS s
CROSS JOIN LATERAL (VALUES {values}) AS u (band_name, band_value, raw_value)
LEFT JOIN ({_stored_scores(plpy, model)}) AS sc
       ON (sc.generation, sc.listing_id, sc.t0) = (s.generation::int, s.listing_id::bigint, s.t0)
LEFT JOIN {MAPS} AS f ON f.model_key = {k} AND f.fold_id IS NULL AND f.band_name = u.band_name
                     AND f.band_value = u.band_value
LEFT JOIN {MAPS} AS k ON k.model_key = {k} AND k.fold_id = sc.fold_id AND k.band_name = u.band_name
                     AND k.band_value = coalesce(u.raw_value, u.band_value)
LEFT JOIN {MAPS} AS o ON u.raw_value <> {null} AND k.woe IS NULL AND o.model_key = {k} AND o.fold_id = sc.fold_id
                     AND o.band_name = u.band_name AND o.band_value = {quote_literal(bands.OTHER)}
WHERE u.band_value IS NOT NULL AND {unchanged_sql(model)}
"""


# Objects whose code reading a relation may run as the reader, transitively: what its view rules
# and row-level policies read, call and cast to; the expressions and predicates of its indexes, its
# statistics objects, check constraints and partition key, which the planner may evaluate; and its
# partitions and inheritance children, read with it. Each is trusted when its owner already has
# every right of the reader (the reader itself, a superuser, or a role the reader is granted to);
# a SECURITY DEFINER function runs as its owner and is always safe.
_UNTRUSTED_CODE_SQL = """
WITH RECURSIVE uses (rel, classid, objid) AS (
    SELECT w.ev_class, d.refclassid, d.refobjid
    FROM pg_catalog.pg_rewrite AS w JOIN pg_catalog.pg_depend AS d
      ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = w.oid
    UNION ALL
    SELECT p.polrelid, d.refclassid, d.refobjid
    FROM pg_catalog.pg_policy AS p JOIN pg_catalog.pg_depend AS d
      ON d.classid = 'pg_catalog.pg_policy'::regclass AND d.objid = p.oid
    UNION ALL
    SELECT i.indrelid, d.refclassid, d.refobjid
    FROM pg_catalog.pg_index AS i JOIN pg_catalog.pg_depend AS d
      ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = i.indexrelid
    UNION ALL
    SELECT s.stxrelid, 'pg_catalog.pg_statistic_ext'::regclass, s.oid  -- its owner, checked below
    FROM pg_catalog.pg_statistic_ext AS s
    UNION ALL
    SELECT s.stxrelid, d.refclassid, d.refobjid
    FROM pg_catalog.pg_statistic_ext AS s JOIN pg_catalog.pg_depend AS d
      ON d.classid = 'pg_catalog.pg_statistic_ext'::regclass AND d.objid = s.oid
    UNION ALL
    SELECT k.conrelid, d.refclassid, d.refobjid
    FROM pg_catalog.pg_constraint AS k JOIN pg_catalog.pg_depend AS d
      ON d.classid = 'pg_catalog.pg_constraint'::regclass AND d.objid = k.oid
    WHERE k.contype = 'c'
    UNION ALL
    SELECT d.objid, d.refclassid, d.refobjid  -- a partition key's expressions
    FROM pg_catalog.pg_depend AS d
    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_proc'::regclass
    UNION ALL
    SELECT i.inhparent, 'pg_catalog.pg_class'::regclass, i.inhrelid
    FROM pg_catalog.pg_inherits AS i
), reached (classid, objid) AS (
    SELECT 'pg_catalog.pg_class'::regclass::oid, $1::oid
    UNION
    SELECT u.classid, u.objid FROM reached AS r
    JOIN uses AS u ON r.classid = 'pg_catalog.pg_class'::regclass AND u.rel = r.objid
    WHERE u.classid IN ('pg_catalog.pg_class'::regclass, 'pg_catalog.pg_proc'::regclass,
                        'pg_catalog.pg_operator'::regclass, 'pg_catalog.pg_statistic_ext'::regclass,
                        'pg_catalog.pg_type'::regclass)
), code (what, owner, definer) AS (
    SELECT c.oid::regclass::text, c.relowner, false
    FROM reached AS r JOIN pg_catalog.pg_class AS c ON r.classid = 'pg_catalog.pg_class'::regclass AND c.oid = r.objid
    UNION ALL
    -- the source is read by its name: its schema's owner could rename it and put another in its place
    SELECT 'schema ' || pg_catalog.quote_ident(n.nspname),
           CASE WHEN n.nspowner = 'pg_database_owner'::regrole
                THEN (SELECT d.datdba FROM pg_catalog.pg_database AS d WHERE d.datname = pg_catalog.current_database())
                ELSE n.nspowner END, false
    FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.oid = $1
    UNION ALL
    SELECT 'statistics ' || s.stxname, s.stxowner, false
    FROM reached AS r JOIN pg_catalog.pg_statistic_ext AS s
      ON r.classid = 'pg_catalog.pg_statistic_ext'::regclass AND s.oid = r.objid
    UNION ALL
    SELECT 'type ' || t.oid::regtype::text, t.typowner, false  -- a domain's checks, a type's casts
    FROM reached AS r JOIN pg_catalog.pg_type AS t ON r.classid = 'pg_catalog.pg_type'::regclass AND t.oid = r.objid
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
    if model.source_relation.startswith(IMPORTED_FROM):  # where the trainer's model came from
        raise Refusal(errors.UNDEFINED_TABLE, f"model {model.key!r} records no source relation "
                                              f"({model.source_relation})",
                      hint="Pass the source yourself, source => '...'.")
    oid = plpy.execute(plpy.prepare("SELECT to_regclass($1)::oid AS oid", ["text"]),
                       [model.source_relation])[0]["oid"]
    if oid is None:
        raise Refusal(errors.UNDEFINED_TABLE,
                       f"training source {model.source_relation} of model {model.key!r} no longer exists")
    untrusted = untrusted_code(plpy, oid)
    if untrusted:
        raise Refusal("42501", f"training source {model.source_relation} of model {model.key!r} runs code of "
                                f"roles without your rights: {untrusted}",
                       hint="Pass the source yourself, source => '...', once you trust what reading it runs "
                            "(it runs with your rights).")
    return oid


def stored_scores_sql(plpy, key: str | None) -> str:
    """The statement behind ml.woe_anchor_stored_scores(model_key)."""
    model = load_model(plpy, key)
    return f"SELECT * FROM ({_stored_scores(plpy, model)}) AS s WHERE {unchanged_sql(model)}"


# the catalog, not the rows: a model may store none (an imported trainer rerun). The partition's row
# as this snapshot sees it, and whether the relation still is (the relation cache: the latest
# state, so a snapshot older than a drop or a replacement learns of it); no USAGE on the schema is
# needed for either
_PARTITION_SQL = ("SELECT p.name, coalesce((SELECT pg_catalog.pg_relation_filenode(c.oid) IS NOT NULL "
                  "FROM pg_catalog.pg_class AS c WHERE c.relname = p.name "
                  "AND c.relnamespace = 'woe_anchor_scores'::regnamespace), false) AS stored "
                  "FROM (SELECT woe_anchor_internal.score_partition_name($1) AS name) AS p")


def _stored_scores(plpy, model: Model) -> str:
    """The model's stored scores: its partition, and for scores_on_shards the shards' tables."""
    key = model.key
    local = (f"SELECT s.generation, s.listing_id, s.t0, s.fold_id, s.is_oof, s.woe_logit, s.woe_p "
             f"FROM {SCORES} AS s WHERE s.model_key = {quote_literal(key)}")
    remote = plpy.execute(plpy.prepare(f"SELECT server::text, remote_table FROM {SHARD_SCORES} "
                                       "WHERE model_key = $1 ORDER BY 1, 2", ["text"]), [key])
    # without its partition the training features would fall back to in-sample scores for every
    # TRAIN SOLD row, the leak OOF scoring exists to prevent
    partition = plpy.execute(plpy.prepare(_PARTITION_SQL, ["int8"]), [model.model_id])[0]
    if not remote and not partition["stored"]:
        raise Refusal(errors.OBJECT_NOT_IN_PREREQUISITE_STATE, f"model {key!r} has no stored scores in this database",
                      detail=f"Its partition woe_anchor_scores.{partition['name']} is gone: the "
                             "model was dropped or replaced since this transaction began, or a restore left "
                             "schema woe_anchor_scores out.",
                      hint="Run it again; after a partial restore, restore schema woe_anchor_scores from the same "
                           "dump, or refit the model.")
    return " UNION ALL ".join([local] + [sharded.shard_scores_sql(plpy, r["server"], r["remote_table"]) for r in remote])
