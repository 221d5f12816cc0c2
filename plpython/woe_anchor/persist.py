"""The one writer of a model's artifacts: woe_anchor_internal.persist, a SECURITY DEFINER entry point.

The fit runs with its caller's rights: it reads the source as the caller may,
learns the model and writes its scores with one CREATE TABLE AS into a
staging schema opened for it (woe_anchor_internal.open_staging: CREATE for this
caller, in this transaction only). Trainers have no rights to write the
artifact tables and no CREATE anywhere the extension later acts
(docs/security.md). This function runs as the extension's owner and checks
everything it is given, because a trainer can call it directly: the caller is
who its ticket says, a replaced model must be one the caller may manage, a
staging table must be a plain table of the caller's staging schema with
exactly the score columns and nothing attached (so taking it over runs no code
of anyone's), the band schema must be the stored one, and the columns a
caller must not set (id, owner, code hash, version, activity) are set here.
The staging table becomes the model's partition: no row is copied.
"""
from __future__ import annotations

import json
import math
import time
import uuid

from . import errors, passes, policy, schemas
from .errors import Refusal
from .catalog import CUTS, MAPS, REGISTRY, SCORES
from .sqlgen import quote_ident, quote_literal

# registry columns a fit reports (the rest are set here), with their SQL types
REPORTED = {
    "train_cutoff_ts": "timestamptz", "half_life_days": "float8", "eps": "float8", "n_folds": "int",
    "band_schema_version": "int", "band_schema": "jsonb", "base_rate": "float8", "base_logit": "float8",
    "dsold_t1": "float8", "dsold_t2": "float8", "dsold_t3": "float8", "dsold_t4": "float8",
    "slow_threshold_hours": "float8", "min_duration_hours": "float8", "oof": "boolean",
    "weight_ref_ts": "float8", "dsold_source": "text", "n_train_sold": "bigint", "n_learned": "bigint",
    "n_learned_has_assets": "bigint", "n_days": "int", "n_folds_with_rows": "int", "n_scored_oof": "bigint",
    "source_relation": "text", "parameters": "jsonb", "timings_ms": "jsonb", "oof_auc": "float8",
    "oof_logloss": "float8", "insample_auc": "float8", "insample_logloss": "float8", "eval_auc": "float8",
    "eval_logloss": "float8", "n_eval": "bigint", "band_quality": "jsonb", "score_bins": "jsonb",
}
# what a REPEATABLE READ fit that lost a race is told (only a snapshot older than the registry lock
# can miss a fit committed meanwhile)
RETRY = "Retry in a new transaction (a superuser may LOCK the registry before the fit's snapshot is taken)."
# a staging table's columns: what the fit's score statement writes (passes.Statements.scores)
STAGING_COLUMNS = (("generation", "integer"), ("listing_id", "bigint"), ("t0", "timestamp with time zone"),
                   ("fold_id", "integer"), ("is_oof", "boolean"), ("woe_logit", "double precision"),
                   ("woe_p", "double precision"))

# A staging table (of a staging schema this caller opened in this transaction) becomes a partition
# the extension owns, and is read as its owner, only if that can run no code of anyone's: a
# permanent heap table, the caller's, of no composite type, with no storage options, exactly the
# score columns and nothing attached (an index expression or predicate, a statistics object, a
# check constraint, a default, a policy, a trigger, a rule, an inheritance child or parent would
# all be planned or run as the reader). What may depend on it is its row type, and a TOAST table.
# Grants its owner's default privileges gave it are revoked once it is taken over.
_STAGING_SQL = """
SELECT c.relkind = 'r' AND c.relpersistence = 'p' AND NOT c.relrowsecurity
           AND c.reloftype = 0 AND c.reloptions IS NULL
           AND c.relam = (SELECT a.oid FROM pg_catalog.pg_am AS a WHERE a.amname = 'heap')
           AND c.relowner = (SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname = $2)
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS d
                           LEFT JOIN pg_catalog.pg_class AS t ON d.classid = 'pg_catalog.pg_class'::regclass
                                                              AND t.oid = d.objid
                           WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = c.oid
                             AND d.classid <> 'pg_catalog.pg_type'::regclass AND t.relkind IS DISTINCT FROM 't')
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_inherits AS i WHERE c.oid IN (i.inhrelid, i.inhparent))
           AS plain,
       (SELECT array_agg(a.attname::text || ' ' || pg_catalog.format_type(a.atttypid, NULL) ORDER BY a.attnum)
        FROM pg_catalog.pg_attribute AS a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
FROM pg_catalog.pg_class AS c WHERE c.oid = $1
"""
# the caller's name of a staging table, resolved to a table of a staging schema opened for the
# caller in this transaction (those are invisible to every other transaction)
_MINE_SQL = """
SELECT c.oid, n.nspname, c.relname
FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN ml._woe_anchor_staging AS s ON s.schema_name = n.nspname
WHERE c.oid = pg_catalog.to_regclass($1) AND s.role_name = $2 AND s.xact = pg_catalog.pg_current_xact_id()
"""


def persist(plpy, version: str, code_sha256: str, ticket: str, payload_text: str) -> str:
    """Entry point of woe_anchor_internal.persist; returns JSON: the key, the id, and what a replace left on shards."""
    return errors.reported(plpy, _persist, plpy, version, code_sha256, ticket, payload_text)


def _one(plpy, sql, types=(), args=()):
    rows = plpy.execute(plpy.prepare(sql, list(types)), list(args))
    return rows[0] if rows else None


# the payload's members and their JSON types (what fit.py hands over); "gate" may be absent
PAYLOAD = {"model_key": (str, type(None)), "replace": bool, "activate": bool, "registry": dict, "thresholds": str,
           "fits": dict, "maps": dict, "staging": list, "shard_tables": list, "gate": (dict, type(None))}


def _payload(text) -> dict:
    """The fit's payload, refused with a message (never a traceback) unless it has the fit's shape."""
    try:
        p = json.loads(text)
    except (TypeError, ValueError):
        p = None
    wrong = (["(not a JSON object)"] if not isinstance(p, dict) else
             [k for k, kind in PAYLOAD.items() if not isinstance(p.get(k), kind) and (k in p or k != "gate")])
    if not wrong:
        version = p["registry"].get("band_schema_version")
        wrong = ([] if all(isinstance(t, str) for t in p["staging"]) else ["staging"]) \
            + ([] if all(isinstance(t, dict) for t in p["shard_tables"]) else ["shard_tables"]) \
            + ([] if isinstance(version, int) and not isinstance(version, bool) else ["band_schema_version"])
    if wrong:
        raise Refusal(errors.INVALID_PARAMETER_VALUE, f"not a payload of ml.fit_woe_anchor: {', '.join(wrong)}",
                       hint="Fit with CALL ml.fit_woe_anchor(...); this entry point takes what the fit hands it.")
    return p


def _persist(plpy, version, code_sha256, ticket, payload_text: str) -> str:
    who = _one(plpy, "SELECT woe_anchor_internal.caller($1) AS who", ["uuid"], [ticket])["who"]
    p = _payload(payload_text)
    registry = p["registry"]
    if set(registry) - set(REPORTED):
        raise Refusal(errors.INVALID_PARAMETER_VALUE, f"unknown registry columns: {sorted(set(registry) - set(REPORTED))}")
    staging = [_staging_table(plpy, name, who) for name in p["staging"]]
    _check_schema(plpy, registry, who)
    _check_thresholds(p["thresholds"])
    # short critical section: registry writes serialize, readers never wait. The scores table's
    # lock comes first (lock_registry): the one ATTACH PARTITION takes, or, to replace a model, the
    # one dropping its partition takes, which waits for readers of stored scores before the
    # registry's is held
    replaced = p["model_key"] is not None and _one(
        plpy, f"SELECT fitted_by FROM {REGISTRY} WHERE model_key = $1", ["text"], [p["model_key"]])
    replacing = bool(p["replace"] and replaced)
    if replacing:
        _require_replaceable(plpy, who, p["model_key"], replaced["fitted_by"])  # before it waits for readers
    _one(plpy, "SELECT woe_anchor_internal.lock_registry($1)", ["text"],
         ["ACCESS EXCLUSIVE" if replacing else "SHARE UPDATE EXCLUSIVE"])
    key = p["model_key"] or default_key(plpy)
    old = _one(plpy, f"SELECT is_active, fitted_by, model_id FROM {REGISTRY} WHERE model_key = $1", ["text"], [key])
    left_on_shards = []
    if old is not None:
        if not p["replace"]:
            raise exists(key)
        if not replacing and not _scores_lock_now(plpy):
            raise Refusal("40001", f"model {key!r} was stored by a concurrent fit while this one wrote its own, and "
                                   "its stored scores are being read", hint=RETRY)
        _require_replaceable(plpy, who, key, old["fitted_by"])
        # the old model's shard tables go only once the new model is written: a failure keeps them
        left_on_shards = [dict(r) for r in plpy.execute(plpy.prepare(
            "SELECT * FROM woe_anchor_internal.delete_models(ARRAY[$1]) WHERE server IS NOT NULL", ["text"]), [key])]
    model_id = _one(plpy, "SELECT nextval('ml.woe_anchor_model_id_seq') AS id")["id"]
    try:
        _insert_registry(plpy, dict(registry, model_key=key, model_id=model_id, fitted_by=who,
                                    code_sha256=code_sha256, extension_version=version))
        _insert_fits(plpy, key, p["fits"], p["maps"], p["thresholds"])
    except plpy.spiexceptions.UniqueViolation:
        raise Refusal("40001", f"a concurrent fit committed model {key!r} after this transaction's snapshot "
                                "was taken", hint=RETRY)
    timings = _write_partition(plpy, key, model_id, staging, who)
    plpy.execute(plpy.prepare(f"UPDATE {REGISTRY} SET timings_ms = timings_ms || $2::jsonb "
                              "|| jsonb_build_object('total', (timings_ms ->> 'total')::float8 + $3) "
                              "WHERE model_key = $1", ["text", "text", "float8"]),
                 [key, json.dumps(timings), sum(timings.values())])
    plan = plpy.prepare("INSERT INTO ml.woe_anchor_shard_scores (model_key, server, remote_table, n_rows) "
                        "SELECT $1, s.srvname, $3, $4 FROM pg_catalog.pg_foreign_server AS s WHERE s.srvname = $2",
                        ["text", "name", "text", "bigint"])
    for t in p["shard_tables"]:
        if plpy.execute(plan, [key, t["server"], t["remote_table"], t["n_rows"]]).nrows() != 1:
            raise Refusal(errors.UNDEFINED_OBJECT, f"foreign server {t['server']!r} does not exist")
    # the gate judges a model that will serve: settled here on the figures stored (policy.py), the
    # drop against the active model as the fit measured it; a refusal is logged
    rules = policy.read(plpy)
    will_serve = p["activate"] or bool(old and old["is_active"])
    verdict = policy.settle(rules, registry, p.get("gate")) if will_serve and policy.checks(rules) else None
    refused = verdict is not None and not verdict["passed"]
    if refused and old and old["is_active"]:
        raise Refusal(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                      f"the gate refused the new model {key!r}, and it would replace the active model of that key",
                      hint="Fit it under another model_key: the active model stays as it is.")
    # replacing the active model keeps it active, so serving never loses its model
    activate = (p["activate"] and not refused) or bool(old and old["is_active"])
    reason = json.dumps({"fit": True, "gate": verdict})
    if activate:
        try:
            replaced = old["model_id"] if old and old["is_active"] else None
            _one(plpy, "SELECT woe_anchor_internal.set_active($1, $2, 'activate', $3::jsonb, $4)",
                 ["text", "name", "text", "bigint"], [key, who, reason, replaced])
        except plpy.spiexceptions.UniqueViolation:
            raise Refusal("40001", f"a concurrent fit activated a model after this transaction's snapshot of "
                                    f"model {key!r} was taken",
                           hint=RETRY)
    elif refused:
        plpy.execute(plpy.prepare(
            "INSERT INTO ml.woe_anchor_activations (by_role, from_model, from_model_id, to_model, to_model_id, "
            f"action, reason) SELECT $1, a.model_key, a.model_id, $2, $3, 'refused', $4::jsonb "
            f"FROM (SELECT) AS one LEFT JOIN {REGISTRY} AS a ON a.is_active",
            ["name", "text", "bigint", "text"]), [who, key, model_id, reason])
    # the retention policy, over the models this role fitted (the new one is the newest)
    keep = {name: value for name, value in rules.items() if name in policy.RETENTION}
    retention = [who, int(keep.get("keep_models", 0)), keep.get("keep_days")] if keep else None
    doomed = retention and _one(plpy, "SELECT woe_anchor_internal.prunable($1, $2, $3, true) AS keys",
                                ["name", "int", "float8"], retention)["keys"]
    pruned, deferred = [], False
    if doomed:
        # never waits for the scores table with the registry's lock held (readers of stored scores,
        # another fit), nor fails the fit for its retention (a REPEATABLE READ snapshot that
        # missed an activation): this fit prunes nothing then, and the next one does
        try:
            with plpy.subtransaction():
                plpy.execute(SCORES_LOCK_NOW)
                pruned = [dict(r) for r in plpy.execute(plpy.prepare(
                    "SELECT * FROM woe_anchor_internal.prune_models($1, $2, $3, true)", ["name", "int", "float8"]),
                    retention)]
        except (plpy.spiexceptions.LockNotAvailable, plpy.spiexceptions.SerializationFailure):
            deferred = True
    return json.dumps({"model_key": key, "model_id": model_id, "activated": activate,
                       "left_on_shards": left_on_shards + [r for r in pruned if r["server"] is not None],
                       "pruned": sorted({r["model_key"] for r in pruned}), "retention_deferred": deferred})


def _require_replaceable(plpy, who: str, key: str, fitted_by: str) -> None:
    if not _one(plpy, "SELECT woe_anchor_internal.may_manage($1, $2) AS ok", ["name", "name"], [who, fitted_by])["ok"]:
        raise Refusal("42501", f"permission denied to replace model {key!r}: it was fitted by {fitted_by}",
                      hint="Choose another model_key.")


# the lock a drop of partitions needs, taken only if it is free right now
SCORES_LOCK_NOW = f"LOCK TABLE ONLY {SCORES} IN ACCESS EXCLUSIVE MODE NOWAIT"


def _scores_lock_now(plpy) -> bool:
    """SCORES_LOCK_NOW: false while some transaction reads stored scores."""
    try:
        with plpy.subtransaction():
            plpy.execute(SCORES_LOCK_NOW)
        return True
    except plpy.spiexceptions.LockNotAvailable:
        return False


def exists(key) -> Refusal:
    return Refusal(errors.DUPLICATE_OBJECT, f"model {key!r} already exists",
                    hint="Pass replace => true to replace it, or choose another model_key.")


def key_exists(plpy, key) -> bool:
    return _one(plpy, f"SELECT EXISTS (SELECT FROM {REGISTRY} WHERE model_key = $1) AS e", ["text"], [key])["e"]


def default_key(plpy) -> str:
    """woe_anchor_v1_ + UTC YYYYMMDD_HH24MISS, with a suffix if that second is taken."""
    base = _one(plpy, "SELECT 'woe_anchor_v1_' || to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                      "'YYYYMMDD_HH24MISS') AS k")["k"]
    key, n = base, 1
    while key_exists(plpy, key):
        n += 1
        key = f"{base}_{n}"
    return key


def partition_name(plpy, model_id: int) -> str:
    """The model's partition of the scores table, unqualified: the rule is the SQL function's."""
    return _one(plpy, f"SELECT woe_anchor_internal.score_partition_name({int(model_id)}) AS n")["n"]


def score_partition(plpy, model_id: int) -> str:
    return _qualified("woe_anchor_scores", partition_name(plpy, model_id))


def staging_table(plpy) -> str:
    """A fresh name for the scores of this fit, in a staging schema opened for the caller."""
    schema = _one(plpy, "SELECT woe_anchor_internal.open_staging(woe_anchor_internal.ticket()) AS s")["s"]
    return f"{schema}.{quote_ident('woe_anchor_staging_' + uuid.uuid4().hex[:16])}"


def write_scores_here(plpy, st, packs: list, fold: str, lookups, fold_ids, phases):
    """The scores of every TRAIN SOLD row in one CREATE TABLE AS into a staging table of the
    caller's, on this server: (staging tables, shard tables: none, rows written)."""
    staging = staging_table(plpy)
    with passes.compiled_pass(plpy):
        n_scored = plpy.execute(st.scores(packs, staging, fold, *lookups, fold_ids)).nrows()
    phases.done("scores_write")
    return [staging], [], n_scored


def thresholds_json(learned: dict) -> str:
    """Learned thresholds as JSON that reads back exactly: shortest round-trip numbers, infinities as text."""
    return json.dumps({k: v if math.isfinite(v) else str(v).replace("inf", "Infinity")
                       for k, v in learned.items()})


def _staging_table(plpy, name: str, who: str) -> tuple[str, str]:
    """(schema, table) of a staging table, once it is shown to be one the persist may take over.

    ``name`` comes from the caller: it is only ever looked up, never put into SQL.
    """
    # only a table of the caller's own staging schema is locked: no other session can see those
    found = _one(plpy, _MINE_SQL, ["text", "name"], [name, who])
    if found is not None:
        plpy.execute(f"LOCK TABLE {_qualified(found['nspname'], found['relname'])} IN ACCESS EXCLUSIVE MODE")
    row = _one(plpy, _STAGING_SQL, ["oid", "name"], [found["oid"], who]) if found else None
    want = [f"{column} {kind}" for column, kind in STAGING_COLUMNS]
    if row is None or not row["plain"] or row["columns"] != want:
        raise Refusal("42501", f"{name} is not a staging table of role {who} in this transaction",
                       detail=f"A staging table is a plain table that role {who} created in a staging schema "
                              f"opened for it in this transaction (woe_anchor_internal.open_staging), with exactly "
                              f"the columns {', '.join(want)}, no storage options and nothing attached to it "
                              f"(no index, constraint, default, statistics, policy, trigger, rule, type or "
                              f"inheritance).")
    return found["nspname"], found["relname"]


def _check_schema(plpy, registry: dict, who: str) -> None:
    """The recorded band schema must be the stored one; its row stays locked until commit, so an
    edit waits for this model and then sees that a model uses the schema (and refuses). And the
    caller must be one who may fit with it (woe_anchor_internal.require_fittable)."""
    plpy.execute(plpy.prepare("SELECT FROM ml.woe_anchor_band_schemas WHERE version = $1 FOR SHARE", ["int"]),
                 [registry.get("band_schema_version")])
    plpy.execute(plpy.prepare("SELECT woe_anchor_internal.require_fittable($1, $2)", ["name", "int"]),
                 [who, registry.get("band_schema_version")])
    same = _one(plpy, "SELECT $1::jsonb = ml.woe_anchor_band_schema($2) AS same", ["text", "int"],
                [registry.get("band_schema"), registry.get("band_schema_version")])["same"]
    if not same:
        raise Refusal(errors.INVALID_PARAMETER_VALUE,
                       f"the band schema recorded with the model is not band schema "
                       f"{registry.get('band_schema_version')} as stored: did it change while the fit ran?",
                       hint="Retry the fit.")
    schema, problems = schemas.parse(registry["band_schema"])
    if problems:
        raise Refusal(errors.INVALID_PARAMETER_VALUE, f"band schema is invalid: {problems[0][1]}")


def _check_thresholds(thresholds: str) -> None:
    """Learned thresholds must read back as float8 numbers wherever the views and scoring use them."""
    for name, v in json.loads(thresholds).items():
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                or v in ("Infinity", "-Infinity")):
            raise Refusal(errors.INVALID_PARAMETER_VALUE, f"learned threshold {name!r} is not a number: {v!r}")


def _insert_registry(plpy, r: dict):
    cols = list(r)
    types = dict(REPORTED, model_key="text", model_id="bigint", fitted_by="name", code_sha256="text",
                 extension_version="text")
    values = [f"to_timestamp(${i + 1})" if c == "weight_ref_ts" else f"${i + 1}" for i, c in enumerate(cols)]
    plan = plpy.prepare(f"INSERT INTO {REGISTRY} ({', '.join(cols)}) VALUES ({', '.join(values)})",
                        [types[c] for c in cols])
    plpy.execute(plan, [r[c] for c in cols])


def _insert_fits(plpy, key, fits: dict, maps: dict, thresholds: str):
    """Cuts (one row per fit: the learned thresholds, shared) and map rows (every stored band value per fit)."""
    learned = json.loads(thresholds)
    plan = plpy.prepare(
        f"INSERT INTO {CUTS} (model_key, fold_id, c1, c2, thresholds, base_rate, base_logit, "
        "n_learned) SELECT $1, u.fold_id, $2, $3, $4, u.base_rate, u.base_logit, u.n_learned "
        "FROM unnest($5::int[], $6::float8[], $7::float8[], $8::bigint[]) AS u (fold_id, base_rate, "
        "base_logit, n_learned)",
        ["text", "float8", "float8", "jsonb", "int[]", "float8[]", "float8[]", "bigint[]"])
    plpy.execute(plan, [key, learned.get("c1"), learned.get("c2"), thresholds,
                        fits["fold_id"], fits["base_rate"], fits["base_logit"], fits["n_learned"]])
    plan = plpy.prepare(
        f"INSERT INTO {MAPS} (model_key, fold_id, band_name, band_value, woe, sum_w_pos, "
        "sum_w_neg, n_rows) SELECT $1, u.* FROM unnest($2::int[], $3::text[], $4::text[], $5::float8[], "
        "$6::float8[], $7::float8[], $8::bigint[]) AS u",
        ["text", "int[]", "text[]", "text[]", "float8[]", "float8[]", "float8[]", "bigint[]"])
    plpy.execute(plan, [key] + [maps[c] for c in ("fold_id", "band_name", "band_value", "woe", "sum_w_pos",
                                                  "sum_w_neg", "n_rows")])


def _write_partition(plpy, key: str, model_id: int, staging: list[tuple[str, str]], who: str) -> dict:
    """The model's partition: the staging table taken over, keyed, checked and attached.

    The first staging table becomes the partition (the extension's, in schema
    woe_anchor_scores); the model's key is a column added with a default,
    which PostgreSQL records once rather than writing into every row. Other
    staging tables (a sharded source's local leaves) are copied into it.
    Returns the milliseconds of taking over and of the key and checks.
    """
    start = time.monotonic()
    unqualified = partition_name(plpy, model_id)
    part = _qualified("woe_anchor_scores", unqualified)
    columns = ", ".join(name for name, _ in STAGING_COLUMNS)
    if staging:
        schema, table = staging[0]
        plpy.execute(f"ALTER TABLE {_qualified(schema, table)} RENAME TO {quote_ident(unqualified)}")
        taken = _qualified(schema, unqualified)
        plpy.execute(f"ALTER TABLE {taken} OWNER TO CURRENT_USER")
        _revoke_grants(plpy, taken)
        plpy.execute(f"ALTER TABLE {taken} SET SCHEMA woe_anchor_scores")
        for other in staging[1:]:
            plpy.execute(f"INSERT INTO {part} ({columns}) SELECT {columns} FROM {_qualified(*other)}")
            plpy.execute(f"DROP TABLE {_qualified(*other)}")
    else:
        plpy.execute(f"CREATE TABLE {part} AS SELECT {columns} FROM {SCORES} WHERE false")
    plpy.execute(f"ALTER TABLE {part} ADD COLUMN model_key text NOT NULL DEFAULT {quote_literal(key)}")
    plpy.execute(f"ALTER TABLE {part} ALTER COLUMN model_key DROP DEFAULT")
    _close_staging(plpy, who)
    moved_at = time.monotonic()
    plpy.execute(passes.constrain_scores_sql(part, key))
    plpy.execute(f"ALTER TABLE {SCORES} ATTACH PARTITION {part} FOR VALUES IN ({quote_literal(key)})")
    return {"scores_take_over": round((moved_at - start) * 1000.0, 3),
            "scores_index": round((time.monotonic() - moved_at) * 1000.0, 3)}


def _qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def _revoke_grants(plpy, table: str) -> None:
    """Revokes whatever the staging table's creator granted others (ALTER DEFAULT PRIVILEGES)."""
    for g in plpy.execute(plpy.prepare(
            "SELECT DISTINCT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS role "
            "FROM pg_catalog.pg_class AS c, pg_catalog.aclexplode(c.relacl) AS a "
            "LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = a.grantee "
            "WHERE c.oid = $1::regclass AND a.grantee <> c.relowner", ["text"]), [table]):
        plpy.execute(f"REVOKE ALL ON {table} FROM {g['role']}")


def _close_staging(plpy, who: str) -> None:
    """Drops the caller's staging schemas of this transaction, which must be empty by now."""
    for row in plpy.execute(plpy.prepare(
            "DELETE FROM ml._woe_anchor_staging WHERE role_name = $1 AND xact = pg_catalog.pg_current_xact_id() "
            "RETURNING schema_name", ["name"]), [who]):
        try:
            with plpy.subtransaction():
                plpy.execute(f"DROP SCHEMA {quote_ident(row['schema_name'])} RESTRICT")
        except plpy.spiexceptions.DependentObjectsStillExist:
            raise Refusal("2BP01", f"staging schema {quote_ident(row['schema_name'])} holds objects besides "
                                    f"the fit's scores", hint="Nothing but the fit may create objects there.")
