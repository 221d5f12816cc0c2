"""Import the Python trainer's models (ml.woe_anchor_import_trainer): the first half of `woe-anchor migrate`.

The trainer's four tables were moved into a legacy schema before CREATE
EXTENSION. Each model becomes an extension model with the same key, maps,
cuts and scores, and the model the trainer's views served stays the active
one. What the trainer never recorded is derived where it can be (each fit's
base rate and learned-row count from its map's dsold sums) and marked where
it cannot (weight_ref_ts is the cutoff, source_relation says "imported").

The trainer's quirks (existing-installation.md, section 10) are mapped
deliberately, and the summary says what was mapped, per model:

* score rows older than their registry row are a same-key rerun's leftovers
  (the trainer deletes scores only when new ones exist): not imported;
* fold_id -1 (backfilled rows, marked is_oof): in-sample, fold_id NULL;
* a NULL logit or p is derived from the other; rows with neither are not
  imported (the trainer wrote NaN scores as NULL);
* NULL sums in map rows: NaN, "unknown"; the fit's base rate then comes
  from the registry;
* cuts rows of folds without map rows (written for empty folds): dropped;
* NULL dsold thresholds: each its ratio default, a NULL base logit: ln(base
  rate / (1 - base rate)), and NULL cuts: every vision row present_hi, as
  the trainer's views read them;
* a model with no final map rows (an empty training set, NaN base rate):
  not imported, unless it is the one the views served: then nothing is.

What cannot be mapped is refused, naming the legacy model, table and rows.
"""
from __future__ import annotations

from . import errors, passes
from .errors import Refusal
from .catalog import CUTS, FIT_DEFAULTS, IMPORTED_FROM, MAPS, P_CLAMP, REGISTRY, SCORES
from .persist import score_partition
from .sqlgen import quote_ident, quote_literal

TABLES = ("woe_anchor_model_registry_v1", "woe_anchor_cuts_v1", "woe_anchor_map_v1", "woe_anchor_scores_v1")
RATIO_DEFAULTS = (-0.15, -0.05, 0.05, 0.15)  # docs/contract.md 5, what the trainer's views use for NULL thresholds

# The import reads the trainer's tables as a superuser: only when planning or reading them runs no
# code but a superuser's. Their columns are of built-in types (casts of another type are its
# owner's code); the expressions and predicates of their indexes (the trainer's script 01 has
# partial ones), their statistics, constraints and policies may call only superusers' functions
# and operators; no inheritance (children are read too). Checks are not planned (the import pins
# constraint_exclusion) and policies do not apply to a superuser. The tables are locked first, so
# nothing changes between this check and the reads.
_TABLE_SQL = """
SELECT c.relkind = 'r'
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_inherits AS i WHERE c.oid IN (i.inhrelid, i.inhparent))
       -- built-in column types only: a type of a role's own comes with casts that role wrote
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute AS a JOIN pg_catalog.pg_type AS t ON t.oid = a.atttypid
                       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                         AND t.typnamespace <> 'pg_catalog'::regnamespace)
       AND NOT EXISTS (
           SELECT FROM (SELECT 'pg_catalog.pg_class'::regclass AS classid, i.indexrelid AS objid
                        FROM pg_catalog.pg_index AS i WHERE i.indrelid = c.oid
                        UNION ALL
                        SELECT 'pg_catalog.pg_statistic_ext'::regclass, x.oid
                        FROM pg_catalog.pg_statistic_ext AS x WHERE x.stxrelid = c.oid
                        UNION ALL
                        SELECT 'pg_catalog.pg_constraint'::regclass, k.oid
                        FROM pg_catalog.pg_constraint AS k WHERE k.conrelid = c.oid
                        UNION ALL
                        SELECT 'pg_catalog.pg_policy'::regclass, p.oid
                        FROM pg_catalog.pg_policy AS p WHERE p.polrelid = c.oid) AS a
           JOIN pg_catalog.pg_depend AS d ON d.classid = a.classid AND d.objid = a.objid
           LEFT JOIN pg_catalog.pg_operator AS o ON d.refclassid = 'pg_catalog.pg_operator'::regclass
                                                AND o.oid = d.refobjid
           JOIN pg_catalog.pg_proc AS p ON p.oid = CASE WHEN d.refclassid = 'pg_catalog.pg_proc'::regclass
                                                        THEN d.refobjid ELSE o.oprcode END
           JOIN pg_catalog.pg_roles AS r ON r.oid = p.proowner
           WHERE NOT r.rolsuper) AS plain,
       EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
               WHERE a.attrelid = c.oid AND a.attname = 'created_at' AND NOT a.attisdropped) AS stamped
FROM pg_catalog.pg_class AS c WHERE c.oid = pg_catalog.to_regclass($1)
"""


def import_trainer(plpy, version: str, legacy_schema: str) -> list[tuple]:
    """(model_key, outcome, what was mapped) per legacy model; entry point of the SQL function."""
    return errors.reported(plpy, _import, plpy, version, legacy_schema)


def _rows(plpy, sql, types=(), args=()):
    return list(plpy.execute(plpy.prepare(sql, list(types)), list(args)))


def _import(plpy, version, legacy_schema) -> list[tuple]:
    if not _rows(plpy, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0]["rolsuper"]:
        raise Refusal("42501", "importing the trainer's models needs a superuser",
                       hint="It writes artifacts and score partitions directly.")
    if legacy_schema is None:
        raise Refusal(errors.NULL_VALUE_NOT_ALLOWED, "legacy_schema must not be NULL")
    # the tables are read by name in several statements: only a superuser's schema keeps those
    # names bound to the tables checked (its owner could rename it and put views there instead)
    ok = _rows(plpy, "SELECT woe_anchor_internal.superusers_schema($1) AS ok", ["name"], [legacy_schema])[0]["ok"]
    if ok is None:
        raise Refusal(errors.INVALID_SCHEMA_NAME, f"schema {legacy_schema} does not exist")
    if not ok:
        raise Refusal(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                       f"schema {legacy_schema} is not a superuser's: a role that owns it could swap the trainer's "
                       "tables for views of its own while the import reads them",
                       hint=f"ALTER SCHEMA {quote_ident(legacy_schema)} OWNER TO a superuser, then import "
                            "(woe-anchor migrate creates its legacy schema as one).")
    legacy = {t: f"{quote_ident(legacy_schema)}.{quote_ident(t)}" for t in TABLES}
    # messages name the legacy tables as the user knows them
    shown = {legacy[t]: f"{legacy_schema}.{t}" for t in TABLES}
    # every table locked before any is checked, in a mode that also keeps out CREATE INDEX and
    # CREATE STATISTICS (SHARE would let the owner add an index to a table already checked); one
    # missing now could be created, unlocked, before it is read
    for name in legacy.values():
        if not _rows(plpy, "SELECT to_regclass($1) IS NOT NULL AS found", ["text"], [name])[0]["found"]:
            raise Refusal(errors.UNDEFINED_TABLE, f"{shown[name]} does not exist",
                           hint="The trainer's four tables must be in the legacy schema (woe-anchor migrate moves "
                                "them there).")
        plpy.execute(f"LOCK TABLE {name} IN SHARE ROW EXCLUSIVE MODE")
    stamped = {}
    for table, name in legacy.items():
        row = _rows(plpy, _TABLE_SQL, ["text"], [name])
        if not row or not row[0]["plain"]:
            raise Refusal(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                           f"{shown[name]} is not a plain table, or reading it as a superuser would run functions "
                           "of a role that is not one (a column of a type that is not built in, an index "
                           "expression or predicate, statistics, a constraint or a policy), or it has inheritance",
                           hint="Drop those objects (the trainer's own indexes may stay), then import.")
        stamped[table] = row[0]["stamped"]
    registry, cuts, maps, scores = (legacy[t] for t in TABLES)
    _refuse_unmappable(plpy, registry, cuts, maps, shown)
    plpy.execute("SELECT woe_anchor_internal.lock_registry('SHARE UPDATE EXCLUSIVE')")  # it attaches partitions
    # the trainer's views serve the newest active row (existing-installation.md 7.3)
    served = _rows(plpy, f"SELECT model_key, count(*) OVER () AS n FROM {registry} WHERE is_active "
                         f"ORDER BY created_at DESC, model_key LIMIT 1")
    models = _rows(plpy, f"""
SELECT r.*, EXISTS (SELECT FROM {maps} AS m WHERE m.model_key = r.model_key AND m.fold_id IS NULL) AS has_map
FROM {registry} AS r ORDER BY r.created_at, r.model_key""")
    summary = []
    for m in models:
        thresholds = _thresholds(m)
        unmappable = (f"no final map rows in {shown[maps]} (an empty training set, base rate NaN)"
                      if not m["has_map"] else
                      f"dsold thresholds {thresholds} out of order, once each NULL one reads as its ratio default"
                      if thresholds != sorted(thresholds) else None)
        if unmappable:
            if served and m["model_key"] == served[0]["model_key"]:
                raise Refusal(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                               f"legacy model {m['model_key']!r} ({shown[registry]}) is the active one, and it has "
                               f"{unmappable}: woe_anchor cannot serve it as the trainer's views do",
                               hint="Activate another of the trainer's models first (UPDATE its is_active), then "
                                    "migrate.")
            summary.append((m["model_key"], "skipped", f"{unmappable}: not imported, kept in the legacy schema"))
            continue
        notes = _import_model(plpy, m, legacy, stamped, thresholds)
        summary.append((m["model_key"], "imported", "; ".join(notes) or None))
    if served:
        plpy.execute(plpy.prepare("SELECT woe_anchor_internal.set_active($1, current_user, 'activate', "
                                  "'{\"import\": true}')", ["text"]), [served[0]["model_key"]])
        if served[0]["n"] > 1:
            summary.append((served[0]["model_key"], "active",
                            f"{served[0]['n']} legacy models were marked active: the newest, which the trainer's "
                            "views served, is the active one"))
    return summary


def _refuse_unmappable(plpy, registry, cuts, maps, shown: dict) -> None:
    """Keys the extension cannot hold, and rows the trainer's tables left without uniqueness."""
    bad = _rows(plpy, f"SELECT string_agg(quote_literal(model_key), ', ') AS keys FROM {registry} "
                      "WHERE NOT (length(model_key) BETWEEN 1 AND 128 AND model_key !~ '[[:cntrl:]]')")[0]["keys"]
    if bad:
        raise Refusal(errors.INVALID_PARAMETER_VALUE, f"legacy models {bad} ({shown[registry]}) have keys woe_anchor cannot "
                                                       "hold (1 to 128 characters, no control characters)",
                       hint="Rename them in the legacy registry, cuts, map and scores tables, then migrate.")
    for table, key in ((cuts, "model_key, fold_id"), (maps, "model_key, fold_id, band_name, band_value")):
        dup = _rows(plpy, f"SELECT {key}, count(*) AS n FROM {table} GROUP BY {key} HAVING count(*) > 1 "
                          "ORDER BY 1 LIMIT 5")
        if dup:
            rows = "; ".join(", ".join(f"{k}={v!r}" for k, v in d.items()) for d in dup)
            raise Refusal(errors.UNIQUE_VIOLATION, f"{shown[table]} repeats ({key}): {rows}",
                           hint="The trainer's script 01 indexes prevent this; delete the extra rows, then migrate.")


def _thresholds(m: dict) -> list[float]:
    """The dsold thresholds the trainer's views read for a legacy model: each NULL its ratio default
    (existing-installation.md 8.1)."""
    return [d if m[f"dsold_t{i}"] is None else m[f"dsold_t{i}"] for i, d in enumerate(RATIO_DEFAULTS, 1)]


def _import_model(plpy, m: dict, legacy: dict, stamped: dict, thresholds: list[float]) -> list[str]:
    """One legacy model's registry row, maps, cuts and scores; returns what was mapped."""
    registry, cuts, maps, scores = (legacy[t] for t in TABLES)
    key, notes = m["model_key"], []
    # a same-key rerun leaves older scores behind: they are not this model's. Every run rewrites the
    # model's cuts in the transaction that writes its scores (when it writes any: not with OOF off),
    # so its final cuts row is as old as its scores; the registry row's created_at is the fallback
    # (a bump of it, to serve the model again, existing-installation.md 7.3, touches no cuts)
    fresh = "true"
    if stamped["woe_anchor_scores_v1"] and (stamped["woe_anchor_cuts_v1"] or stamped["woe_anchor_model_registry_v1"]):
        reference = ("(SELECT c.created_at FROM {cuts} AS c WHERE c.model_key = r.model_key AND c.fold_id IS NULL)"
                     if stamped["woe_anchor_cuts_v1"] else "NULL").format(cuts=cuts)
        fallback = "r.created_at" if stamped["woe_anchor_model_registry_v1"] else "NULL"
        since = _rows(plpy, f"SELECT coalesce({reference}, {fallback})::text AS t FROM {registry} AS r "
                            "WHERE r.model_key = $1", ["text"], [key])[0]["t"]
        fresh = "true" if since is None else f"s.created_at >= {quote_literal(since)}::timestamptz"
    counts = _rows(plpy, f"""
SELECT count(*) FILTER (WHERE NOT ({fresh})) AS stale,
       count(*) FILTER (WHERE {fresh} AND s.fold_id < 0) AS backfilled,
       count(*) FILTER (WHERE {fresh} AND (s.woe_logit IS NULL) <> (s.woe_p IS NULL)) AS derived,
       count(*) FILTER (WHERE {fresh} AND s.woe_logit IS NULL AND s.woe_p IS NULL) AS unscored
FROM {scores} AS s JOIN {registry} AS r ON r.model_key = s.model_key WHERE s.model_key = $1""", ["text"], [key])[0]
    for n, what in ((counts["stale"], "score rows older than the model's last run (a rerun left them): "
                                      "not imported"),
                    (counts["backfilled"], "backfilled score rows (fold_id < 0, is_oof true): in-sample, fold_id NULL"),
                    (counts["derived"], "score rows with a NULL logit or p: derived from the other"),
                    (counts["unscored"], "score rows with neither logit nor p: not imported")):
        if n:
            notes.append(f"{n} {what}")
    # the trainer's views read each NULL threshold as its ratio default (``_thresholds``), and a NULL
    # base logit from the base rate, unclamped (existing-installation.md 8.1)
    missing = ", ".join(f"dsold_t{i}" for i in range(1, 5) if m[f"dsold_t{i}"] is None)
    if missing:
        notes.append(f"NULL dsold thresholds ({missing}): the ratio defaults, as the trainer's views read them")
    if m["base_logit"] is None and m["base_rate"] is not None:
        notes.append("NULL base logit: ln(base_rate / (1 - base_rate)), as the trainer's views read it"
                     + ("" if 0 < m["base_rate"] < 1 else " (NaN for this base rate)"))
    if m.get("band_schema_version") not in (None, 1):
        notes.append(f"band_schema_version {m['band_schema_version']}: imported as band schema 1, the trainer's "
                     "bands (the only ones its views compute)")
    try:  # a row the registry's checks refuse (eps <= 0, n_folds < 1): named, with its table
        with plpy.subtransaction():
            row = _rows(plpy, f"""
INSERT INTO {REGISTRY} (
    model_key, train_cutoff_ts, half_life_days, eps, n_folds, band_schema_version, band_schema,
    code_sha256, created_at, base_rate, base_logit, dsold_t1, dsold_t2, dsold_t3, dsold_t4,
    slow_threshold_hours, min_duration_hours, oof, weight_ref_ts, dsold_source, n_train_sold, n_learned,
    n_days, n_folds_with_rows, n_scored_oof, source_relation, extension_version, parameters, timings_ms)
SELECT r.model_key, r.train_cutoff_ts, r.half_life_days, r.eps, r.n_folds, 1, ml.woe_anchor_band_schema(1),
       r.code_sha256, r.created_at, coalesce(r.base_rate, 'NaN'),
       coalesce(r.base_logit, CASE WHEN r.base_rate > 0 AND r.base_rate < 1 THEN ln(r.base_rate / (1 - r.base_rate)) END, 'NaN'),
       $2, $3, $4, $5,
       {FIT_DEFAULTS['slow_threshold_hours']}, {FIT_DEFAULTS['min_duration_hours']}, coalesce(s.n_oof, 0) > 0,
       r.train_cutoff_ts, 'given', coalesce(s.n, 0), 0, coalesce(s.n_days, 0),
       coalesce(s.n_folds, 0), coalesce(s.n_oof, 0), {quote_literal(IMPORTED_FROM + registry)}, 'imported',
       jsonb_build_object('imported_from', {quote_literal(registry)}), '{{}}'::jsonb
FROM {registry} AS r
LEFT JOIN (SELECT count(*) AS n, count(DISTINCT (s.t0 AT TIME ZONE 'UTC')::date) AS n_days,
                  count(DISTINCT s.fold_id) FILTER (WHERE s.fold_id >= 0) AS n_folds,
                  count(*) FILTER (WHERE s.is_oof AND s.fold_id >= 0) AS n_oof
           FROM {scores} AS s JOIN {registry} AS r ON r.model_key = s.model_key
           WHERE s.model_key = $1 AND {fresh} AND NOT (s.woe_logit IS NULL AND s.woe_p IS NULL)) AS s ON true
WHERE r.model_key = $1
RETURNING model_id""", ["text", "float8", "float8", "float8", "float8"], [key, *thresholds])[0]
    except plpy.spiexceptions.CheckViolation as e:
        raise Refusal(errors.INVALID_PARAMETER_VALUE,
                      f"model {key!r} of {registry} cannot be imported: {e.args[0] if e.args else e}",
                      hint="Fix or delete that row of the trainer's registry (it was never servable), then "
                           "migrate.") from None
    null_sums = _rows(plpy, f"SELECT count(*) AS n FROM {maps} WHERE model_key = $1 "
                            "AND (sum_w_pos IS NULL OR sum_w_neg IS NULL)", ["text"], [key])[0]["n"]
    if null_sums:
        notes.append(f"{null_sums} map rows with NULL sums: NaN (unknown)")
    plpy.execute(plpy.prepare(
        f"INSERT INTO {MAPS} (model_key, fold_id, band_name, band_value, woe, sum_w_pos, sum_w_neg) "
        f"SELECT model_key, fold_id, band_name, band_value, woe, coalesce(sum_w_pos, 'NaN'), "
        f"coalesce(sum_w_neg, 'NaN') FROM {maps} WHERE model_key = $1", ["text"]), [key])
    dropped = _rows(plpy, f"SELECT string_agg(c.fold_id::text, ', ' ORDER BY c.fold_id) AS folds FROM {cuts} AS c "
                          f"WHERE c.model_key = $1 AND c.fold_id IS NOT NULL AND NOT EXISTS (SELECT FROM {maps} AS p "
                          "WHERE p.model_key = c.model_key AND p.fold_id = c.fold_id)", ["text"], [key])[0]["folds"]
    if dropped:
        notes.append(f"cuts rows of folds {dropped} have no map rows: not imported")
    no_cuts = _rows(plpy, f"SELECT count(*) FILTER (WHERE c1 IS NULL OR c2 IS NULL) AS n FROM {cuts} "
                          "WHERE model_key = $1", ["text"], [key])[0]["n"]
    if no_cuts:
        notes.append("NULL presentation cuts: every vision row present_hi, as the trainer's views read them")
    # every learned row has a dsold value: that band's sums are each fit's totals (NaN when unknown,
    # and then the final fit's base rate is the registry's)
    plpy.execute(plpy.prepare(f"""
INSERT INTO {CUTS} (model_key, fold_id, thresholds, c1, c2, base_rate, base_logit, n_learned)
SELECT c.model_key, c.fold_id, jsonb_build_object('dsold_t1', $2, 'dsold_t2', $3, 'dsold_t3', $4, 'dsold_t4', $5,
           'c1', coalesce(c.c1, '-Infinity'), 'c2', coalesce(c.c2, '-Infinity')),
       coalesce(c.c1, '-Infinity'), coalesce(c.c2, '-Infinity'), f.rate,
       CASE WHEN f.rate = 'NaN' THEN 'NaN'
            ELSE ln(greatest(least(f.rate, 1 - {P_CLAMP!r}), {P_CLAMP!r})
                    / (1 - greatest(least(f.rate, 1 - {P_CLAMP!r}), {P_CLAMP!r}))) END,
       CASE WHEN t.pos + t.neg <> 'NaN' THEN round(t.pos + t.neg)::bigint ELSE 0 END
FROM {cuts} AS c
JOIN {REGISTRY} AS r ON r.model_key = c.model_key
LEFT JOIN LATERAL (SELECT coalesce(sum(p.sum_w_pos), 0) AS pos, coalesce(sum(p.sum_w_neg), 0) AS neg
                   FROM {MAPS} AS p
                   WHERE p.model_key = c.model_key AND p.fold_id IS NOT DISTINCT FROM c.fold_id
                     AND p.band_name = 'dsold') AS t ON true
-- (PostgreSQL orders NaN above every number and equal to itself: tested as a value)
CROSS JOIN LATERAL (SELECT CASE WHEN c.fold_id IS NULL AND (t.pos + t.neg = 'NaN' OR t.pos + t.neg <= 0)
                                THEN r.base_rate
                                ELSE coalesce(t.pos / nullif(t.pos + t.neg, 0), 0.5) END AS rate) AS f
WHERE c.model_key = $1
  AND (c.fold_id IS NULL OR EXISTS (SELECT FROM {MAPS} AS p
                                    WHERE p.model_key = c.model_key AND p.fold_id = c.fold_id))""",
        ["text", "float8", "float8", "float8", "float8"]), [key, *thresholds])
    plpy.execute(plpy.prepare(f"UPDATE {REGISTRY} AS r SET n_learned = c.n_learned FROM {CUTS} AS c "
                              "WHERE c.model_key = r.model_key AND c.fold_id IS NULL AND r.model_key = $1",
                              ["text"]), [key])
    part = score_partition(plpy, row["model_id"])
    plpy.execute(plpy.prepare(f"""
CREATE TABLE {part} AS
SELECT s.model_key::text AS model_key, s.generation::int AS generation, s.listing_id::bigint AS listing_id,
       s.t0::timestamptz AS t0, CASE WHEN s.fold_id >= 0 THEN s.fold_id END::int AS fold_id,
       coalesce(s.is_oof AND s.fold_id >= 0, false) AS is_oof,
       coalesce(s.woe_logit, CASE WHEN s.woe_p > 0 AND s.woe_p < 1 THEN ln(s.woe_p / (1 - s.woe_p))
                                  ELSE sign(s.woe_p - 0.5) * 'Infinity'::float8 END)::float8 AS woe_logit,
       coalesce(s.woe_p, {passes.sigmoid_sql('s.woe_logit')})::float8 AS woe_p
FROM {scores} AS s JOIN {registry} AS r ON r.model_key = s.model_key
WHERE s.model_key = {quote_literal(key)} AND {fresh} AND NOT (s.woe_logit IS NULL AND s.woe_p IS NULL)"""))
    plpy.execute(passes.constrain_scores_sql(part, key))
    owner = _rows(plpy, "SELECT pg_get_userbyid(extowner) AS o FROM pg_extension WHERE extname = 'woe_anchor'")[0]["o"]
    plpy.execute(f"ALTER TABLE {part} OWNER TO {quote_ident(owner)}")
    plpy.execute(f"ALTER TABLE {SCORES} ATTACH PARTITION {part} FOR VALUES IN ({quote_literal(key)})")
    return notes
