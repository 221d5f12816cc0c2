"""The live views over a user's source, and source views that adapt a user's relations to the contract.

The live views read the active model's artifacts at query time and the
source with their reader's rights (security_invoker). woe_anchor records the
views it creates in ml.woe_anchor_views and replaces or drops no other view:
a view of the same name that is not recorded is someone else's, such as a
view of the Python trainer's pipeline (README, "Migrating from the Python
trainer").
"""
from __future__ import annotations

import json
import re

from . import bands, errors, packs, passes, schemas, source
from .errors import Refusal
from .catalog import BANDS_VIEW, CUTS, MAPS, REGISTRY, SCORES_VIEW, TRAIN_VIEW
from .inference import untrusted_code
from .sqlgen import Compiler, quote_ident, quote_literal

# what each live view shows; ml.woe_anchor_views records those woe_anchor made
LIVE_VIEWS = {"bands": "band values of the active WOE anchor model",
              "scores": "active WOE anchor model scores, joined from the final map",
              "train": "active WOE anchor model scores; every query fails unless the model is ready"}
# the default set keeps the names the Python trainer's pipeline reads
TRAINER_VIEW_NAMES = {"bands": BANDS_VIEW, "scores": SCORES_VIEW, "train": TRAIN_VIEW}
# the per-row scoring functions of a set, and what each gives
ROW_FUNCTIONS = {"scores_of": "the score row", "logit": "the WOE logit", "p": "P(slow21)"}
# a set's name goes into ml.woe_anchor_<name>_scores_of: a plain identifier that fits in 63 bytes
SET_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,41}")


def set_names(set_name: str | None) -> dict[str, str]:
    """kind -> qualified name of a set's views (bands, scores, train) and per-row functions
    (scores_of, logit, p): ml.woe_anchor_<set>_<kind>; without a name, the Python trainer's view
    names and ml.woe_anchor_<kind>. Each function name has one signature: a row of the set's
    source, so a call never resolves to another set's function."""
    if set_name is None:
        return TRAINER_VIEW_NAMES | {kind: f"ml.woe_anchor_{kind}" for kind in ROW_FUNCTIONS}
    if not SET_NAME_RE.fullmatch(set_name):
        raise Refusal(errors.INVALID_PARAMETER_VALUE,
                      f"views name {set_name!r} must be a lower-case identifier of at most 42 characters",
                      hint="For example name => 'listings' makes ml.woe_anchor_listings_scores.")
    return {kind: f"ml.woe_anchor_{set_name}_{kind}" for kind in [*LIVE_VIEWS, *ROW_FUNCTIONS]}


_EXISTING_VIEW_SQL = """
SELECT c.oid, pg_catalog.pg_get_userbyid(c.relowner) AS owner, c.relkind::text AS relkind,
       EXISTS (SELECT FROM ml.woe_anchor_views AS v
               WHERE v.view_name = pg_catalog.format('%I.%I', n.nspname, c.relname)) AS ours,
       (SELECT string_agg(DISTINCT d.ev_class::regclass::text, ', ')
        FROM pg_catalog.pg_depend AS x JOIN pg_catalog.pg_rewrite AS d ON d.oid = x.objid
        WHERE x.classid = 'pg_catalog.pg_rewrite'::regclass AND x.refobjid = c.oid AND d.ev_class <> c.oid
          AND d.ev_class::regclass::text <> ALL ($2::text[])) AS dependents
FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.oid = pg_catalog.to_regclass($1)
"""


def create_views(plpy, source_oid, version, guard: str | None, replace_views: bool,
                 set_name: str | None = None) -> None:
    """(Re)create the live views over the caller's source for band schema ``version``, and its
    per-row scoring functions.

    The views and functions read the active model's thresholds and map rows
    at query time, so activating another model of the same schema changes
    what they return without recreating them. They score the active model
    only while its schema is ``version`` (default: the active model's); the
    train view fails otherwise, the functions give no score. A model of
    another schema needs another call. Everything reads the source, and the
    artifacts, with its reader's rights (security_invoker).

    ``set_name`` names the set (ml.woe_anchor_<name>_bands, _scores, _train and
    its functions); without it the views take the names the Python trainer's
    pipeline reads. A name serves one source; a source may have several sets
    (one per band schema, say).

    ``guard`` is an administrator's SQL expression that every query of the
    train view runs first (its own fail-closed check, such as a certification
    guard; NULL keeps the one recorded, '' removes it). A view of one of these
    names that woe_anchor did not make is replaced only with ``replace_views``;
    a view of someone else's that depends on one is never dropped.
    """
    everything = set_names(set_name)
    names = {kind: everything[kind] for kind in LIVE_VIEWS}
    if version is None:
        active = plpy.execute(f"SELECT band_schema_version AS v FROM {REGISTRY} WHERE is_active")
        version = active[0]["v"] if active else 1
    _, schema = schemas.load(plpy, version)
    src = source.resolve(plpy, source_oid, schema, labels=False)
    if src.temporary:
        raise Refusal(errors.INVALID_PARAMETER_VALUE,
                      f"{src.qualified} is temporary: views over it would be temporary too, and gone with this session",
                      hint="Create the live views over a permanent table or view (score a temporary table with "
                           "ml.woe_anchor_score).")
    if set_name is not None:
        taken = plpy.execute(plpy.prepare("SELECT source FROM ml.woe_anchor_views WHERE kind = 'scores' "
                                          "AND set_name = $1 AND source <> $2", ["text", "text"]),
                             [set_name, src.qualified])
        if taken:
            raise Refusal(errors.DUPLICATE_OBJECT,
                          f"the live views {set_name!r} serve {taken[0]['source']}",
                          hint="Choose another name, or drop that set first: SELECT ml.woe_anchor_drop_views("
                               f"{quote_literal(taken[0]['source'])}).")
    if guard is None:
        recorded = plpy.execute(plpy.prepare("SELECT guard FROM ml.woe_anchor_views WHERE kind = 'train' "
                                             "AND set_name IS NOT DISTINCT FROM $1", ["text"]), [set_name])
        guard = recorded[0]["guard"] if recorded else ""
    if guard.strip():
        try:  # parsed and planned, not run: its errors name the guard, not the view around it
            with plpy.subtransaction():
                plpy.prepare(f"SELECT {guard}")
        except plpy.SPIError as e:
            raise Refusal(errors.INVALID_PARAMETER_VALUE, f"guard {guard[:200]!r} is not a select list PostgreSQL "
                          f"reads: {e.args[0] if e.args else e}",
                          hint="A call that raises to refuse a query, e.g. guard => 'audit.require_certified()'.") \
                from None
    c = Compiler(schema, src.reads, live="m")
    exprs = [c.band(band, as_label=True) for band in schema.bands]
    exprs += [c.subset(name) for name in schema.subsets]
    for band, _ in bands.scored_sums(schema):
        # a ladder over a weighted sum also shows the sum (schema 1: presentation_score)
        score = c.input(band.rules[0].tests[0].input)
        exprs.append(f"CASE WHEN {c.subset(band.subset)} THEN {score} END" if band.subset else score)
    columns = list(zip(exprs, bands.view_columns(schema)))
    column_sql = ",\n       ".join(f"{expr} AS {quote_ident(name)}" for expr, name in columns)
    # The active model's final map as one row: per band, its values and their WOE as two arrays.
    # One join instead of one per band keeps planning cheap (a point query is mostly planning).
    pivot = ",\n           ".join(
        f"array_agg(w.band_value ORDER BY w.band_value) FILTER (WHERE w.band_name = {quote_literal(band.name)}) "
        f"AS v{i}, array_agg(w.woe ORDER BY w.band_value) FILTER (WHERE w.band_name = {quote_literal(band.name)}) "
        f"AS w{i}" for i, band in enumerate(schema.bands))
    woe_of = [f"coalesce(w.w{i}[array_position(w.v{i}, b.{quote_ident(band.column)})], 0::float8)"
              for i, band in enumerate(schema.bands)]
    # the WOE added pack by pack, in the compiled scoring's order: the same bits on both paths
    terms = ["b.base_logit"] + ["(" + " + ".join(woe_of[i] for i in group) + ")" for group in packs.groups(schema)]
    gate = f"CROSS JOIN LATERAL (SELECT {guard}) AS guard\n" if guard.strip() else ""
    # the guard's row is read, never filtered on: the planner drops a subquery's unread output
    # unless it is volatile, and a STABLE guard that raises must still run
    guard_used = " AND pg_catalog.num_nulls(guard) >= 0" if guard.strip() else ""

    def band_rows(rows: str, serving: str) -> str:
        # ``rows`` (alias s) with the band values of the model(s) ``serving`` picks from the registry r
        return f"""
SELECT s.generation, s.listing_id, s.t0, m.model_key, m.base_logit,
       {column_sql}
FROM {rows}
CROSS JOIN (SELECT r.model_key, r.base_logit, k.thresholds
            FROM {REGISTRY} AS r
            JOIN {CUTS} AS k ON k.model_key = r.model_key AND k.fold_id IS NULL
            WHERE {serving} AND r.band_schema_version = {int(version)}) AS m"""

    def scored(bands_sql: str, serving: str) -> str:
        # the rows of ``bands_sql`` (alias b) scored with their model's final map
        return f"""
SELECT q.generation, q.listing_id, q.t0, q.model_key, q.woe_logit,
       {passes.sigmoid_sql('q.woe_logit')} AS woe_anchor_p_slow21
FROM (SELECT b.generation, b.listing_id, b.t0, b.model_key, {' + '.join(terms)} AS woe_logit
      FROM {bands_sql} AS b
      JOIN (SELECT w.model_key,
           {pivot}
            FROM {MAPS} AS w JOIN {REGISTRY} AS r ON r.model_key = w.model_key AND {serving}
            WHERE w.fold_id IS NULL
            GROUP BY w.model_key) AS w ON w.model_key = b.model_key) AS q"""

    # the serving model as a key (at most one model is active): the registry and the map are read
    # through their keys, so a query costs one model's rows however many models are stored
    active = f"(SELECT a.model_key FROM {REGISTRY} AS a WHERE a.is_active)"
    bodies = {
        "bands": band_rows(f"{src.qualified} AS s", f"r.model_key = {active}"),
        "scores": scored(names["bands"], f"r.model_key = {active}"),
        "train": f"""
SELECT s.* FROM {names['scores']} AS s
{gate}WHERE ml.woe_anchor_assert_ready({int(version)}){guard_used}""",
    }
    # the per-row function: its argument s as the one row, the model it names or the active one
    key = f"{everything['scores_of'].split('.')[1]}.model_key"  # a parameter, named by its function
    serving = f"woe_anchor_internal.serves({key}, {int(version)}) AND r.model_key = coalesce({key}, {active})"
    # a NULL row (an outer join's missing side) has no score; the test stays out of the map's pivot,
    # which would otherwise depend on the row and be aggregated again for every row of a LATERAL join
    row_body = scored(f"({band_rows('(SELECT) AS one', 'NOT (s IS NULL) AND ' + serving)})", serving)
    outside = [d for view in names.values() for d in _claim(plpy, view, replace_views, list(names.values()))]
    record = dict(set_name=set_name, source=src.qualified, version=int(version))
    try:
        with plpy.subtransaction():
            _create_live_views(plpy, names, bodies, guard, record)
    except (plpy.spiexceptions.InvalidTableDefinition, plpy.spiexceptions.UndefinedColumn):
        # CREATE OR REPLACE keeps grants and dependents but cannot change columns (nor name one the
        # view below does not have yet): drop, unless that would drop views of someone else's
        if outside:
            raise Refusal(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                           f"the live views change columns, and views woe_anchor did not make depend on them: "
                           f"{', '.join(sorted(set(outside)))}",
                           hint="Drop those views, call this again, then re-create them.")
        plpy.execute(f"DROP VIEW IF EXISTS {names['train']}, {names['scores']}, {names['bands']}")
        _create_live_views(plpy, names, bodies, guard, record)
    _create_row_functions(plpy, source_oid, everything, row_body, record)
    untrusted = untrusted_code(plpy, source_oid)
    if untrusted:
        plpy.notice(f"readers of the live views run code of {src.qualified} with their own rights, "
                     f"and it uses objects of other roles: {untrusted}")


_RECORD_SQL = (
    "INSERT INTO ml.woe_anchor_views (view_name, kind, set_name, source, band_schema_version, guard) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (view_name) DO UPDATE SET kind = EXCLUDED.kind, "
    "set_name = EXCLUDED.set_name, source = EXCLUDED.source, band_schema_version = EXCLUDED.band_schema_version, "
    "guard = EXCLUDED.guard, created_by = current_user, created_at = now()")


def _record(plpy, name: str, kind: str, record: dict, guard: str | None = None) -> None:
    plpy.execute(plpy.prepare(_RECORD_SQL, ["text", "text", "text", "text", "int", "text"]),
                 [name, kind, record["set_name"], record["source"], record["version"], guard])


def _create_live_views(plpy, names: dict, bodies: dict, guard: str, record: dict) -> None:
    # A query of the train view locks train, then scores, then bands: replacing them in that order
    # makes a reader wait instead of deadlocking. A first creation goes the other way (each view
    # names the one below it), when no reader can hold any of them.
    exist = all(plpy.execute(plpy.prepare("SELECT to_regclass($1) IS NOT NULL AS e", ["text"]), [view])[0]["e"]
                for view in names.values())
    for kind in ("train", "scores", "bands") if exist else ("bands", "scores", "train"):
        view = names[kind]
        # prepared: one statement, whatever the administrator's guard text holds
        plpy.execute(plpy.prepare(f"CREATE OR REPLACE VIEW {view} WITH (security_invoker = true) AS {bodies[kind]}"))
        comment = f"woe_anchor: {LIVE_VIEWS[kind]} over {record['source']}, band schema {record['version']}"
        plpy.execute(f"COMMENT ON VIEW {view} IS {quote_literal(comment)}")
        _record(plpy, view, kind, record, guard if kind == "train" else None)


# ---------------------------------------------------------------- per-row scoring functions

_ROW_TYPE_SQL = "SELECT c.reltype, c.reltype::regtype::text AS t FROM pg_catalog.pg_class AS c WHERE c.oid = $1"
# the functions of these names that take another row type: a set moved to another source
_MOVED_SQL = """
SELECT p.oid::regprocedure::text AS f FROM pg_catalog.pg_proc AS p
WHERE p.pronamespace = 'ml'::regnamespace AND p.proargtypes[0] <> $2
  AND pg_catalog.format('ml.%I', p.proname) = ANY ($1)
  AND EXISTS (SELECT FROM ml.woe_anchor_views AS v WHERE v.kind = 'function'
              AND v.view_name = pg_catalog.format('ml.%I', p.proname))
"""


def _create_row_functions(plpy, source_oid, names: dict, body: str, record: dict) -> None:
    """The set's per-row functions scores_of(row, model_key), logit(row, model_key) and
    p(row, model_key), for the source's row type.

    scores_of is the score view's statement over one row: a set-returning SQL
    function with one SELECT and a SQL-standard body (its names bound here,
    under the pinned search_path), so a LATERAL call is inlined into the
    caller's query and the model is read once per query, not once per row.
    logit and p take one row at a time, anywhere an expression goes: PL/pgSQL
    around scores_of, whose generic plan each session plans once (a SQL
    function would plan its statement again in every query that calls it).
    Nothing but the artifacts is read, with the caller's rights. When the set
    served another source before, its functions for that row type go.
    """
    row = plpy.execute(plpy.prepare(_ROW_TYPE_SQL, ["oid"]), [source_oid])[0]
    functions = [names[kind] for kind in ROW_FUNCTIONS]
    moved = [r["f"] for r in plpy.execute(plpy.prepare(_MOVED_SQL, ["text[]", "oid"]), [functions, row["reltype"]])]
    if moved:
        plpy.execute(f"DROP FUNCTION {', '.join(moved)}")
    scores_of, args = names["scores_of"], f"s {row['t']}, model_key text DEFAULT NULL"
    plpy.execute(f"CREATE OR REPLACE FUNCTION {scores_of}({args}) RETURNS SETOF ml.woe_anchor_score_row "
                 f"LANGUAGE sql STABLE PARALLEL SAFE ROWS 1 BEGIN ATOMIC {body}; END")
    for kind, column in (("logit", "woe_logit"), ("p", "woe_anchor_p_slow21")):
        plpy.execute(f"CREATE OR REPLACE FUNCTION {names[kind]}({args}) RETURNS float8 LANGUAGE plpgsql STABLE "
                     f"PARALLEL SAFE SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan "
                     f"AS $woe_anchor$ BEGIN RETURN (SELECT x.{column} FROM {scores_of}(s, model_key) AS x); END "
                     f"$woe_anchor$")
    for kind, what in ROW_FUNCTIONS.items():
        signature = f"{names[kind]}({row['t']}, text)"
        plpy.execute(f"COMMENT ON FUNCTION {signature} IS "
                     + quote_literal(f"woe_anchor: {what} of a {record['source']} row, band schema "
                                     f"{record['version']} (model_key NULL: the active model)"))
        # like every routine of the extension: granted deliberately (ml.woe_anchor_grant), not to PUBLIC
        plpy.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        _record(plpy, names[kind], "function", record)


def _claim(plpy, view: str, replace: bool, ours: list[str] = ()) -> list[str]:
    """Views outside ``ours`` that depend on ``view``; refuses a relation of that name woe_anchor did not make.

    ``replace`` takes over a view of someone else's (the Python trainer's pipeline, say).
    ``view`` may be quoted; ml.woe_anchor_views records names as format('%I.%I', schema, name).
    """
    row = plpy.execute(plpy.prepare(_EXISTING_VIEW_SQL, ["text", "text[]"]), [view, list(ours)])
    if not row:
        return []
    row = row[0]
    if row["relkind"] != "v" or not (row["ours"] or replace):
        raise Refusal(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                       f"{view} exists and woe_anchor did not create it (owner {row['owner']})",
                       hint=("It may be a view of your own pipeline. To serve woe_anchor's models under that name, "
                             "pass replace_views => true" + (" after dropping the views that depend on it: "
                                                             f"{row['dependents']}" if row["dependents"] else "")
                             + "; `woe-anchor migrate --recreate-views` does this for the Python trainer's views."))
    return row["dependents"].split(", ") if row["dependents"] else []


def _view_name(plpy, name: str) -> str:
    """A schema-qualified view name of plain identifiers, quoted, in a schema a superuser owns.

    woe_anchor records its views by name: in a schema of someone else's, its
    owner could swap the view for one of its own between two calls.
    """
    parts = (name or "").split(".")
    if len(parts) != 2 or not all(bands.COLUMN_RE.fullmatch(p) for p in parts):
        raise Refusal(errors.INVALID_PARAMETER_VALUE, f"view name {name!r} must be schema.name of plain identifiers")
    ok = plpy.execute(plpy.prepare("SELECT woe_anchor_internal.superusers_schema($1) AS ok", ["name"]),
                      [parts[0]])[0]["ok"]
    if ok is None:
        raise Refusal(errors.INVALID_SCHEMA_NAME, f"schema {parts[0]} does not exist")
    if not ok:
        raise Refusal(errors.INSUFFICIENT_PRIVILEGE, f"schema {parts[0]} must exist and be owned by a superuser",
                       hint="woe_anchor records the views it makes by name: only a superuser's schema keeps them "
                            "its own (ml is one).")
    return ".".join(quote_ident(p) for p in parts)


# the columns a source view joins its relations on, when a relation has them
JOIN_KEYS = ("generation", "listing_id", "t0")
_RELATION_SQL = """
SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS qualified,
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute AS a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{}') AS names
FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace WHERE c.oid = $1
"""


def create_source_view(plpy, name: str, relation_oids: list, columns_doc: str, version: int,
                       replace_views: bool) -> str:
    """A view that gives the contract's columns from a user's own relations; returns its quoted name.

    ``relation_oids[0]`` is the base; each further relation is LEFT JOINed to
    it on the key columns (generation, listing_id, t0) both have. ``columns``
    maps a contract column to the relations' column that holds it, or to a list
    of them (the first not NULL): {"t0": ["t0", "edited_date"], "sold_time":
    "sold_date"}. Unmapped contract columns are looked up under their own
    name. The keys and every column band schema ``version`` reads must be
    found; the label columns are taken when found (a scoring-only source has
    none). Nothing in the mapping is SQL: names only, quoted.
    """
    _, schema = schemas.load(plpy, version)
    qualified = _view_name(plpy, name)
    mapping = json.loads(columns_doc or "{}")
    if not relation_oids or None in relation_oids:
        raise Refusal(errors.INVALID_PARAMETER_VALUE, "relations must name one or more relations, the base first, "
                      "and no NULL", hint="relations => '{public.listings}'")
    relations = [plpy.execute(plpy.prepare(_RELATION_SQL, ["oid"]), [oid]) for oid in relation_oids]
    if any(not r for r in relations):
        raise Refusal(errors.UNDEFINED_TABLE, "a relation of relations no longer exists")
    relations = [r[0] for r in relations]
    wanted = source.expected_types(schema)

    def names(v):
        return isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(x, str) for x in v))

    if not isinstance(mapping, dict) or not all(names(v) for v in mapping.values()):
        raise Refusal(errors.INVALID_PARAMETER_VALUE,
                       "columns must be a JSON object of the contract's column names to your columns' names "
                       "(a name, or a list of names: the first not NULL)",
                       hint='For example {"t0": ["t0", "edited_date"], "sold_time": "sold_date"}.')
    unknown = sorted(set(mapping) - set(wanted))
    if unknown:
        raise Refusal(errors.INVALID_PARAMETER_VALUE,
                       f"columns maps columns the contract does not have: {', '.join(unknown)}",
                       hint=f"The contract's columns for band schema {version}: {', '.join(wanted)}.")

    def find(column):
        for i, r in enumerate(relations):
            if column in r["names"]:
                return f"r{i}.{quote_ident(column)}"
        return None

    selected, missing = [], []
    for contract in wanted:
        given = mapping.get(contract, contract)
        names = given if isinstance(given, list) else [given]
        if not names or not all(isinstance(n, str) and bands.COLUMN_RE.fullmatch(n) for n in names):
            raise Refusal(errors.INVALID_PARAMETER_VALUE,
                           f"columns.{contract} must name a column, or list columns (the first not NULL)")
        found = [find(n) for n in names]
        if all(found):
            expr = found[0] if len(found) == 1 else f"coalesce({', '.join(found)})"
            selected.append(f"{expr} AS {quote_ident(contract)}")
        elif contract in mapping or contract not in bands.LABEL_COLUMNS:
            missing.append(f"{contract} (looked for {', '.join(n for n, f in zip(names, found) if not f)})")
    if missing:
        raise Refusal(errors.UNDEFINED_COLUMN,
                       f"the relations lack {len(missing)} column(s) the source needs: {'; '.join(missing)}",
                       hint="Map each to the column that holds it: columns => '{\"t0\": \"edited_date\"}'.")
    joins = []
    base = set(relations[0]["names"])
    for i, r in enumerate(relations[1:], start=1):
        keys = [k for k in JOIN_KEYS if k in base and k in r["names"]]
        if not keys:
            raise Refusal(errors.INVALID_PARAMETER_VALUE,
                           f"{r['qualified']} shares none of {', '.join(JOIN_KEYS)} with {relations[0]['qualified']}")
        on = " AND ".join(f"r{i}.{quote_ident(k)} = r0.{quote_ident(k)}" for k in keys)
        joins.append(f"LEFT JOIN {r['qualified']} AS r{i} ON {on}")
    _claim(plpy, qualified, replace_views)
    plpy.execute(f"CREATE OR REPLACE VIEW {qualified} WITH (security_invoker = true) AS\n"
                 f"SELECT {', '.join(selected)}\nFROM {relations[0]['qualified']} AS r0\n" + "\n".join(joins))
    created = plpy.execute(plpy.prepare("SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name "
                                        "FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                                        "WHERE c.oid = $1::regclass", ["text"]), [qualified])[0]
    oid, qualified = created["oid"], created["name"]
    source.resolve(plpy, oid, schema, labels=False)  # the types each column must have
    comment = f"woe_anchor: source view over {relations[0]['qualified']}"
    plpy.execute(f"COMMENT ON VIEW {qualified} IS {quote_literal(comment)}")
    spec = json.dumps({"relations": [r["qualified"] for r in relations], "columns": mapping})
    plpy.execute(plpy.prepare(
        "INSERT INTO ml.woe_anchor_views (view_name, kind, source, band_schema_version, spec) "
        "VALUES ($1, 'source', $2, $3, $4) ON CONFLICT (view_name) DO UPDATE SET source = EXCLUDED.source, "
        "band_schema_version = EXCLUDED.band_schema_version, spec = EXCLUDED.spec, created_by = current_user, "
        "created_at = now()", ["text", "text", "int", "jsonb"]), [qualified, relations[0]["qualified"], version, spec])
    return qualified
