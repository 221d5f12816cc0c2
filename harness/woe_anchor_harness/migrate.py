"""`woe-anchor migrate`: take over a database the Python trainer and its SQL package run on.

The trainer's four tables (ml.woe_anchor_*_v1) hold its models, and the
user's pipeline reads views built on them: the banding and scoring views, a
certification entrypoint, and a fail-closed view guarded by the user's audit
layer. Moving the tables away would leave those views reading the moved
copies (views bind by OID) and serving the old model forever. So migrate:

1. inspects what depends on the tables (views and materialized views, all
   the way down; functions that name them; foreign keys) and what the
   import will map, and refuses by default, listing them;
2. with ``--recreate-views``, in one transaction: saves every dependent
   view's definition, owner, grants and options (in the legacy schema, for
   ``--rollback``), drops them, moves the tables into the legacy schema,
   creates the extension, creates the live views under the same names over
   the extension's artifacts, with the user's guard kept in the train view,
   re-creates the user's other views from their own definitions (they now
   reach the extension's views and tables by name), registers the
   activation hook, and imports the models, whose activation runs it;
3. ``--dry-run`` prints that plan and changes nothing; ``--rollback`` puts
   the trainer's tables and views back.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

TABLES = ("woe_anchor_model_registry_v1", "woe_anchor_cuts_v1", "woe_anchor_map_v1", "woe_anchor_scores_v1")
# the live views woe_anchor creates under these names (the trainer's package uses them too)
LIVE = {"ml.v_woe_anchor_bands_live_v1": "bands", "ml.woe_anchor_scores_live_v1": "scores",
        "ml.woe_anchor_scores_live_train_v": "train"}
SOURCE_VIEW = "ml.woe_anchor_source_v1"
SAVED = "migrated_views"  # the legacy schema's table of the views migrate replaced
EXTENSIONS = "migrated_extensions"  # and of the extensions CREATE EXTENSION woe_anchor CASCADE installed
LOCK_TIMEOUT = "5s"  # how long migrate waits for the trainer's tables (readers queue behind it meanwhile)
# what migrate copies from the trainer's fail-closed view into woe_anchor's: schema.function(...) with
# string constants cast to plain types, nothing else (the text is spliced into a view definition)
GUARD_CALL = re.compile(r"^[a-z_][a-z0-9_$]*\.[a-z_][a-z0-9_$]*\("
                        r"(\s*'(?:[^'\\]|'')*'::[a-z ]+(?:\[\])?\s*(?:,(?!\s*\)))?)*\s*\)$")
# the trainer's fail-closed view, as PostgreSQL prints it (search_path pg_catalog), with its guard
# call taken out: the scoring view's six columns cross-joined laterally with one call, nothing else.
# A view of any other shape (a filter, a join, a guard behind a view or in a WHERE) may fail
# closed in ways woe_anchor's view would not keep.
_ALIAS = r'(?:[a-z_][a-z0-9_$]*|"(?:[^"]|"")+")'
TRAIN_SHAPE = re.compile(
    rf"\s*SELECT (?P<s>{_ALIAS})\.generation,\s+(?P=s)\.listing_id,\s+(?P=s)\.t0,\s+(?P=s)\.model_key,"
    rf"\s+(?P=s)\.woe_logit,\s+(?P=s)\.woe_anchor_p_slow21\s+"
    rf"FROM \(ml\.woe_anchor_scores_live_v1 (?P=s)\s+CROSS JOIN LATERAL <guard>(?: {_ALIAS}(?:\({_ALIAS}\))?)?\);?\s*")


class MigrateError(Exception):
    """A reason not to migrate, with what to do about it."""


@dataclass
class View:
    name: str            # schema-qualified, as format('%I.%I') gives it
    kind: str            # 'v' or 'm'
    definition: str
    owner: str
    acl: list            # (grantee, privilege) pairs
    options: list        # reloptions
    comment: str | None
    depth: int           # 1: reads a trainer table directly, 2: reads such a view, ...
    indexes: list = field(default_factory=list)  # a materialized view's CREATE INDEX statements
    # what else of the view is restored with it: column grants, grant options, column comments,
    # triggers and rules, as the statements that make them
    extras: list = field(default_factory=list)


@dataclass
class Plan:
    legacy_schema: str
    views: list[View] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    foreign_keys: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)
    guard: str | None = None
    relations: list[str] = field(default_factory=list)
    columns: dict = field(default_factory=dict)
    source: str | None = None
    hook: str | None = None
    readers: list[str] = field(default_factory=list)  # quoted role names that become woe_anchor readers
    public: bool = False  # PUBLIC could read a replaced view


# every view or materialized view that reads the trainer's tables, however indirectly, with its depth
_DEPENDENTS_SQL = """
WITH RECURSIVE reads (view, depth) AS (
    SELECT DISTINCT w.ev_class, 1 FROM pg_depend AS d JOIN pg_rewrite AS w ON w.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = ANY (%(tables)s::regclass[]) AND w.ev_class <> d.refobjid
    UNION
    SELECT w.ev_class, r.depth + 1 FROM reads AS r
    JOIN pg_depend AS d ON d.classid = 'pg_rewrite'::regclass AND d.refobjid = r.view
    JOIN pg_rewrite AS w ON w.oid = d.objid AND w.ev_class <> r.view
)
SELECT format('%%I.%%I', n.nspname, c.relname) AS name, c.relkind::text AS kind, pg_get_viewdef(c.oid) AS definition,
       pg_get_userbyid(c.relowner) AS owner,
       coalesce((SELECT array_agg(ARRAY[CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                                        a.privilege_type])
                 FROM aclexplode(c.relacl) AS a WHERE a.grantee <> c.relowner), '{}') AS acl,
       coalesce(c.reloptions, '{}') AS options, obj_description(c.oid, 'pg_class') AS comment, max(r.depth) AS depth,
       coalesce((SELECT array_agg(pg_get_indexdef(i.indexrelid)) FROM pg_index AS i WHERE i.indrelid = c.oid), '{}')
           AS indexes,
       array(SELECT x.statement FROM (
           SELECT 1 AS k, format('GRANT %%s ON %%s TO %%s WITH GRANT OPTION', a.privilege_type, c.oid::regclass,
                                 CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END)
                 AS statement
           FROM aclexplode(c.relacl) AS a WHERE a.grantee <> c.relowner AND a.is_grantable
           UNION ALL
           SELECT 2, format('GRANT %%s (%%I) ON %%s TO %%s%%s', a.privilege_type, t.attname, c.oid::regclass,
                            CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                            CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
           FROM pg_attribute AS t, aclexplode(t.attacl) AS a
           WHERE t.attrelid = c.oid AND t.attnum > 0 AND NOT t.attisdropped AND a.grantee <> c.relowner
           UNION ALL
           SELECT 3, format('COMMENT ON COLUMN %%s.%%I IS %%L', c.oid::regclass, t.attname, col_description(c.oid, t.attnum))
           FROM pg_attribute AS t
           WHERE t.attrelid = c.oid AND t.attnum > 0 AND NOT t.attisdropped AND col_description(c.oid, t.attnum) IS NOT NULL
           UNION ALL
           SELECT 4, pg_get_triggerdef(g.oid) FROM pg_trigger AS g WHERE g.tgrelid = c.oid AND NOT g.tgisinternal
           UNION ALL
           SELECT 5, pg_get_ruledef(w.oid) FROM pg_rewrite AS w WHERE w.ev_class = c.oid AND w.rulename <> '_RETURN'
       ) AS x ORDER BY x.k, x.statement) AS extras
FROM reads AS r JOIN pg_class AS c ON c.oid = r.view JOIN pg_namespace AS n ON n.oid = c.relnamespace
GROUP BY c.oid, n.nspname, c.relname ORDER BY max(r.depth), 1
"""


def _legacy_tables(conn) -> list[str]:
    return [f"ml.{t}" for t in TABLES
            if conn.execute("SELECT to_regclass(%s)", [f"ml.{t}"]).fetchone()[0] is not None]


def inspect(conn, legacy_schema: str, relations=None, columns=None, source=None, hook=None, guard=None) -> Plan:
    """What migrating this database involves; nothing is changed. ``guard`` replaces the one found."""
    conn.execute("SET search_path = pg_catalog")  # view definitions come back schema-qualified
    plan = Plan(legacy_schema, source=source, hook=hook, columns=dict(columns or {}))
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'woe_anchor'").fetchone():
        raise MigrateError("woe_anchor is already installed in this database: nothing to migrate")
    tables = _legacy_tables(conn)
    if len(tables) != len(TABLES):
        raise MigrateError(f"the trainer's tables are not all in schema ml: found {', '.join(tables) or 'none'}")
    if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [legacy_schema]).fetchone():
        raise MigrateError(f"schema {legacy_schema} exists already: choose another --legacy-schema")
    for row in conn.execute(_DEPENDENTS_SQL, {"tables": tables}).fetchall():
        plan.views.append(View(row[0], row[1], row[2], row[3], [tuple(a) for a in row[4]], list(row[5]), row[6],
                               row[7], list(row[8]), list(row[9])))
    plan.functions = [r[0] for r in conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.prosrc ~ %s ORDER BY 1",
        ["woe_anchor_(model_registry|cuts|map|scores)_v1"]).fetchall()]
    # a function with an SQL-standard body (BEGIN ATOMIC) binds the relations it reads as a view does:
    # it would keep reading the moved tables (or block dropping the views it reads)
    bound = [r[0] for r in conn.execute(
        "SELECT DISTINCT d.objid::regprocedure::text FROM pg_depend AS d WHERE d.classid = 'pg_proc'::regclass "
        "AND d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY (%s::regclass[]) ORDER BY 1",
        [tables + [v.name for v in plan.views]]).fetchall()]
    if bound:
        plan.blockers.append(f"functions with SQL-standard bodies (BEGIN ATOMIC) read the trainer's tables or the "
                             f"views over them, bound like views: {', '.join(bound)}; drop them, migrate, then "
                             "create them again (they will read woe_anchor's tables and views)")
    # anything else bound to the views (a function returning their rows, a column of their row type)
    # would keep them from being dropped
    held = [r[0] for r in conn.execute(
        "SELECT DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_depend AS d "
        "JOIN pg_class AS c ON (d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid) "
        "OR (d.refclassid = 'pg_type'::regclass AND d.refobjid = c.reltype) "
        "WHERE c.oid = ANY (%(views)s::regclass[]) AND d.deptype = 'n' AND NOT (d.classid = 'pg_rewrite'::regclass "
        "AND d.objid IN (SELECT w.oid FROM pg_rewrite AS w WHERE w.ev_class = ANY (%(views)s::regclass[]))) ORDER BY 1",
        {"views": [v.name for v in plan.views]}).fetchall()]
    if held:
        plan.blockers.append(f"objects depend on the views the migration re-creates, and would keep them from being "
                             f"dropped: {', '.join(held)}; drop them, migrate, then create them again")
    plan.foreign_keys = [r[0] for r in conn.execute(
        "SELECT format('%%s on %%s', c.conname, c.conrelid::regclass) FROM pg_constraint AS c "
        "WHERE c.contype = 'f' AND c.confrelid = ANY (%s::regclass[]) AND NOT c.conrelid = ANY (%s::regclass[]) "
        "ORDER BY 1", [tables, tables]).fetchall()]
    if plan.foreign_keys:
        plan.blockers.append(f"foreign keys reference the trainer's tables: {', '.join(plan.foreign_keys)}; drop "
                             "them (woe_anchor's registry has the same key, model_key, if you re-create them after)")
    owner = conn.execute("SELECT r.rolname, r.rolsuper FROM pg_namespace AS n JOIN pg_roles AS r ON r.oid = n.nspowner "
                         "WHERE n.nspname = 'ml'").fetchone()
    if not owner[1]:
        plan.blockers.append(f"schema ml is owned by {owner[0]}, who is not a superuser: ALTER SCHEMA ml OWNER TO "
                             "a superuser (woe_anchor's callers resolve names there, docs/security.md)")
    creators = conn.execute("SELECT string_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
                            "ELSE pg_get_userbyid(a.grantee) END, ', ') FROM pg_namespace AS n, aclexplode(n.nspacl) AS a "
                            "LEFT JOIN pg_roles AS r ON r.oid = a.grantee WHERE n.nspname = 'ml' "
                            "AND a.privilege_type = 'CREATE' AND NOT coalesce(r.rolsuper, false)").fetchone()[0]
    if creators:
        plan.blockers.append(f"roles that are not superusers may create objects in schema ml ({creators}): "
                             "REVOKE CREATE ON SCHEMA ml FROM them")
    by_name = {v.name: v for v in plan.views}
    train = by_name.get("ml.woe_anchor_scores_live_train_v")
    plan.guard = guard if guard is not None else (_guard_of(conn, train) if train is not None else None)
    bands = by_name.get("ml.v_woe_anchor_bands_live_v1")
    if not plan.source and not plan.relations:
        plan.relations = relations or (_relations_of(conn, bands.name, tables) if bands else [])
    if not plan.source and plan.relations and "t0" not in plan.columns:
        base = set(_columns(conn, plan.relations[0]))
        if "edited_date" in base:  # the trainer's feature store: t0 is COALESCE(t0, edited_date)
            plan.columns["t0"] = ["t0", "edited_date"] if "t0" in base else "edited_date"
    for v in plan.views:
        acting = [x for x in v.extras if not _read_only(x) and not x.startswith("GRANT ")]
        if v.name in LIVE and acting:
            plan.blockers.append(f"{v.name} carries rules or triggers ({'; '.join(x[:120] for x in acting)}): "
                                 "woe_anchor's view of that name is its owner's, and would run them with those "
                                 "rights; drop them, migrate, then put what you need on views of your own")
    _check_what_the_run_would(conn, plan)
    # who read the replaced views, and the owners of the user's views re-created over woe_anchor's tables:
    # they become woe_anchor readers (its live views run with their reader's rights), so the pipeline
    # keeps serving them
    readers = {grantee for v in plan.views for grantee, privilege in v.acl if privilege == "SELECT"}
    readers |= {r[0] for r in conn.execute(
        "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END "
        "FROM pg_attribute AS t, aclexplode(t.attacl) AS a WHERE t.attrelid = ANY (%s::regclass[]) "
        "AND a.privilege_type = 'SELECT' AND a.grantee <> (SELECT relowner FROM pg_class WHERE oid = t.attrelid)",
        [[v.name for v in plan.views]]).fetchall()}
    readers |= set(conn.execute("SELECT coalesce(array_agg(quote_ident(o)), '{}') FROM unnest(%s::text[]) AS o",
                                [[v.owner for v in plan.views if v.name not in LIVE]]).fetchone()[0])
    plan.public = "PUBLIC" in readers
    supers = {r[0] for r in conn.execute("SELECT quote_ident(rolname) FROM pg_roles WHERE rolsuper").fetchall()}
    plan.readers = sorted(readers - supers - {"PUBLIC"})
    return plan


def _check_what_the_run_would(conn, plan: Plan) -> None:
    """Blockers for what the migration itself would refuse, so that a dry run says so: a guard
    PostgreSQL cannot read, a mapped column no relation has, a role that is not a superuser."""
    if not conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
        plan.blockers.append("migrate runs as a superuser (it moves the trainer's tables, creates the extension and "
                             "re-creates views other roles own)")
    if plan.guard:
        try:
            with conn.transaction():  # parsed and planned, not run
                conn.execute(sql.SQL("PREPARE woe_anchor_migrate_guard AS SELECT {}").format(sql.SQL(plan.guard)))
                conn.execute("DEALLOCATE woe_anchor_migrate_guard")
        except psycopg.Error as e:
            plan.blockers.append(f"the guard {plan.guard[:200]} is not a select list PostgreSQL reads: "
                                 f"{e.diag.message_primary}")
    if not plan.source and plan.relations:
        have = {c for r in plan.relations for c in _columns(conn, r)}
        for contract, names in plan.columns.items():
            missing = [n for n in ([names] if isinstance(names, str) else names) if n not in have]
            if missing:
                plan.blockers.append(f"--map {contract}: no relation of {', '.join(plan.relations)} has a column "
                                     f"{', '.join(missing)}")


def _columns(conn, relation: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                                       "AND NOT attisdropped ORDER BY attnum", [relation]).fetchall()]


def _relations_of(conn, view: str, tables: list[str]) -> list[str]:
    """The user's relations the trainer's banding view reads, the one with t0 (or edited_date) first."""
    found = [r[0] for r in conn.execute(
        "SELECT DISTINCT format('%%I.%%I', n.nspname, c.relname) FROM pg_rewrite AS w "
        "JOIN pg_depend AS d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid "
        "JOIN pg_class AS c ON c.oid = d.refobjid AND c.relkind IN ('r', 'v', 'm', 'p', 'f') "
        "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE w.ev_class = %s::regclass AND c.oid <> w.ev_class AND NOT c.oid = ANY (%s::regclass[]) ORDER BY 1",
        [view, tables]).fetchall()]
    return sorted(found, key=lambda r: not ({"t0", "edited_date"} & set(_columns(conn, r))))


def _guard_of(conn, train: View) -> str | None:
    """The user's guard call in the trainer's fail-closed view: each function it calls outside the catalog."""
    names = [r[0] for r in conn.execute(
        "SELECT DISTINCT format('%%I.%%I', n.nspname, p.proname) FROM pg_rewrite AS w "
        "JOIN pg_depend AS d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid "
        "JOIN pg_proc AS p ON d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid "
        "JOIN pg_namespace AS n ON n.oid = p.pronamespace "
        "WHERE w.ev_class = %s::regclass AND n.nspname NOT IN ('pg_catalog', 'ml')", [train.name]).fetchall()]
    calls = [c for c in (_call_in(train.definition, n) for n in names) if c]
    odd = [c for c in calls if not GUARD_CALL.fullmatch(c)]
    if odd:
        raise MigrateError(f"the guard of {train.name} is not a plain call with constant arguments: {odd[0][:200]}; "
                           "pass it yourself with --guard")
    if len(calls) != 1 or not TRAIN_SHAPE.fullmatch(train.definition.replace(calls[0], "<guard>", 1)):
        found = f"found {len(calls)} guard calls" if len(calls) != 1 else f"found the guard {calls[0]}"
        raise MigrateError(f"{train.name} is not the trainer's fail-closed view (the scoring view's columns "
                           f"cross-joined laterally with one guard call, nothing else; {found}): woe_anchor's "
                           "view keeps only a guard, and cannot tell what else of yours makes it fail closed. "
                           "Pass the guard woe_anchor's view must run with --guard '<select list>' (a call that "
                           "raises to refuse a query; nothing else of the old view is kept; --guard '' for none)")
    return calls[0]  # a select list: woe_anchor's train view runs (SELECT <guard>) first


def _call_in(text: str, function: str) -> str | None:
    """``function(...)`` as written in a view definition: up to its closing parenthesis, quotes respected."""
    start = text.find(function + "(")
    if start < 0:
        return None
    depth, quoted = 0, False
    for i in range(start + len(function), len(text)):
        ch = text[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
    return None


def describe(plan: Plan) -> str:
    """The plan in words: what moves, what is re-created, what the user must still do."""
    out = [f"1. move the trainer's tables {', '.join('ml.' + t for t in TABLES)} into schema {plan.legacy_schema} "
           "(kept there; --rollback puts them back)",
           "2. CREATE EXTENSION woe_anchor, then import the trainer's models (the summary says what it maps)"]
    if plan.views:
        out.append(f"3. views that read the trainer's tables ({len(plan.views)}), dropped and re-created in the "
                   "same transaction:")
        for v in plan.views:
            what = {"bands": "woe_anchor's banding view", "scores": "woe_anchor's scoring view",
                    "train": "woe_anchor's fail-closed view" + (f", guarded by {plan.guard}" if plan.guard else "")
                    }.get(LIVE.get(v.name), "its own definition, now reading woe_anchor's views and tables by name")
            out.append(f"   - {v.name}: {what}" + (f"; restored with it: {len(v.extras)} column grants, grant "
                                                    "options, column comments, triggers or rules" if v.extras else ""))
        if plan.source:
            out.append(f"   the live views read {plan.source}")
        elif plan.relations:
            out.append(f"   the live views read {SOURCE_VIEW}, a source view over {', '.join(plan.relations)} "
                       f"(columns mapped: {plan.columns or 'none'})")
    if plan.hook:
        out.append(f"4. every activation (fit, activate, schedule, the import) runs {plan.hook} in its transaction")
    if plan.functions:
        out.append("functions that name the trainer's tables now read woe_anchor's tables of the same names: "
                   + ", ".join(plan.functions))
    if plan.readers:
        out.append(f"roles that read the replaced views become woe_anchor readers (ml.woe_anchor_grant: they may "
                   f"then read every model's artifacts and the lifecycle tables): {', '.join(plan.readers)}; the "
                   "live views read their source with their reader's rights: grant them SELECT on the source if "
                   "they lack it")
    if plan.public:
        out.append("PUBLIC could read a replaced view: woe_anchor's live views need a reader's rights "
                   "(ml.woe_anchor_grant(reader => ...) for each role that reads them)")
    if plan.blockers:
        out.append("cannot migrate yet:")
        out += [f"   - {b}" for b in plan.blockers]
    return "\n".join(out)


def run(conn, plan: Plan, recreate_views: bool) -> list[tuple]:
    """Migrate in the connection's transaction (the caller commits); returns the import's summary."""
    if plan.blockers:
        raise MigrateError("cannot migrate yet:\n" + "\n".join(f"  - {b}" for b in plan.blockers))
    if plan.views and not recreate_views:
        raise MigrateError(
            f"{len(plan.views)} views read the trainer's tables: {', '.join(v.name for v in plan.views)}. Moving the "
            "tables would leave them serving the trainer's last model. Re-run with --recreate-views to re-create them "
            "over woe_anchor (see the plan with --dry-run), or drop them yourself.")
    if plan.views and not (plan.source or plan.relations) and any(LIVE.get(v.name) for v in plan.views):
        raise MigrateError("cannot tell which relations the live views should read: pass --source or --relations")
    ident = sql.Identifier
    # the trainer's tables first, and briefly: a trainer run in flight holds them, and every reader of
    # the pipeline's views would queue behind a migration that waits for it
    timeout = conn.execute("SELECT current_setting('lock_timeout')").fetchone()[0]
    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
    try:
        # the views first, outermost first, then the tables: the order in which a reader of any of
        # them takes its locks, so that a reader in flight and the migration wait, never deadlock.
        # A view is locked by an ALTER that changes nothing: LOCK TABLE on a view also locks what it
        # reads, checking its owner's right to write there (a reader's view would stop the migration)
        for v in sorted(plan.views, key=lambda v: -v.depth):
            conn.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(
                sql.SQL("MATERIALIZED VIEW" if v.kind == "m" else "VIEW"), sql.SQL(v.name), ident(v.owner)))
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.SQL(", ").join(sql.SQL("ml.{}").format(ident(t)) for t in TABLES)))
    except psycopg.errors.LockNotAvailable:
        raise MigrateError(f"the trainer's tables are in use (a trainer run or a long query held them for over "
                           f"{LOCK_TIMEOUT}): stop the trainer and its readers' long queries, then retry") from None
    conn.execute("SELECT set_config('lock_timeout', %s, true)", [timeout])
    legacy = ident(plan.legacy_schema)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(legacy))
    conn.execute(sql.SQL("CREATE TABLE {}.{} (name text PRIMARY KEY, kind text, definition text, owner text, "
                         "acl text[], options text[], comment text, depth int, indexes text[], extras text[])").format(
        legacy, ident(SAVED)))
    for v in plan.views:
        conn.execute(sql.SQL("INSERT INTO {}.{} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)").format(
            legacy, ident(SAVED)), [v.name, v.kind, v.definition, v.owner, [f"{g} {p}" for g, p in v.acl], v.options,
                                    v.comment, v.depth, v.indexes, v.extras])
    for v in sorted(plan.views, key=lambda v: -v.depth):
        conn.execute(sql.SQL("DROP {} {}").format(sql.SQL("MATERIALIZED VIEW" if v.kind == "m" else "VIEW"),
                                                  sql.SQL(v.name)))
    for table in TABLES:
        conn.execute(sql.SQL("ALTER TABLE ml.{} SET SCHEMA {}").format(ident(table), legacy))
    extensions = "SELECT coalesce(array_agg(extname::text), '{}') FROM pg_extension"
    before = set(conn.execute(extensions).fetchone()[0])
    conn.execute("CREATE EXTENSION woe_anchor CASCADE")
    # what CASCADE installed with it (plpython3u, where it was not yet): a rollback removes it again
    conn.execute(sql.SQL("CREATE TABLE {}.{} AS SELECT unnest(%s::text[]) AS name").format(legacy, ident(EXTENSIONS)),
                 [sorted(set(conn.execute(extensions).fetchone()[0]) - before - {"woe_anchor"})])
    if any(LIVE.get(v.name) for v in plan.views):
        source = plan.source or conn.execute(
            "SELECT ml.woe_anchor_create_source_view(%s, %s::regclass[], %s::jsonb)",
            [SOURCE_VIEW, plan.relations, psycopg.types.json.Jsonb(plan.columns)]).fetchone()[0]
        conn.execute("SELECT ml.woe_anchor_create_views(%s::regclass, 1, guard => %s)", [source, plan.guard or ""])
    for v in sorted(plan.views, key=lambda v: v.depth):
        if v.name not in LIVE:
            try:
                _create(conn, v)
            except psycopg.Error as e:  # e.g. a column the trainer's tables had and woe_anchor's lack
                raise MigrateError(f"{v.name} cannot be re-created over woe_anchor's tables and views: "
                                   f"{e.diag.message_primary}. Nothing was changed: adapt or drop it, then "
                                   "migrate") from None
        _restore_access(conn, v, owned=v.name not in LIVE)
    for reader in plan.readers:
        conn.execute("SELECT ml.woe_anchor_grant(reader => %s::regrole)", [reader])
    if plan.hook:
        # the hook runs with its owner's rights: it reads woe_anchor's artifacts and views as a reader
        conn.execute("SELECT ml.woe_anchor_grant(reader => p.proowner::regrole) FROM pg_proc AS p "
                     "WHERE p.oid = %s::regprocedure", [plan.hook])
        conn.execute("SELECT ml.woe_anchor_add_activation_hook(%s::regprocedure)", [plan.hook])
    summary = conn.execute("SELECT * FROM ml.woe_anchor_import_trainer(%s)", [plan.legacy_schema]).fetchall()
    _refresh(conn, plan.views)
    return summary


def _create(conn, v: View) -> None:
    """A saved view again; a materialized view empty, owned by its owner, with its indexes (CREATE INDEX
    evaluates their expressions as the owner). ``_refresh`` fills it."""
    what = sql.SQL("MATERIALIZED VIEW" if v.kind == "m" else "VIEW")
    conn.execute(sql.SQL("CREATE {} {}{} AS {}{}").format(
        what, sql.SQL(v.name), sql.SQL(f" WITH ({', '.join(v.options)})" if v.options else ""),
        sql.SQL(v.definition.rstrip().rstrip(";")), sql.SQL(" WITH NO DATA" if v.kind == "m" else "")))
    if v.kind == "m":
        conn.execute(sql.SQL("ALTER MATERIALIZED VIEW {} OWNER TO {}").format(sql.SQL(v.name), sql.Identifier(v.owner)))
        for index in v.indexes:
            conn.execute(sql.SQL(index))


def _refresh(conn, views: list[View]) -> None:
    """Fill the re-created materialized views, once what they read is there: REFRESH runs a view's query
    with its owner's rights (creating it WITH DATA would run it with ours)."""
    for v in sorted(views, key=lambda v: v.depth):
        if v.kind == "m":
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.SQL(v.name)))


def _restore_access(conn, v: View, owned: bool) -> None:
    """The grants a replaced view had, and with ``owned`` its owner and comment too (woe_anchor's live
    views keep their creator and their own comment)."""
    what, name = sql.SQL("MATERIALIZED VIEW" if v.kind == "m" else "VIEW"), sql.SQL(v.name)
    if owned:
        conn.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(what, name, sql.Identifier(v.owner)))
        if v.comment is not None:
            conn.execute(sql.SQL("COMMENT ON {} {} IS {}").format(what, name, sql.Literal(v.comment)))
    for grantee, privilege in v.acl:
        # woe_anchor's own views (not owned) are read-only: SELECT is all there is to give on them
        if owned or privilege == "SELECT":
            conn.execute(sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privilege), name, sql.SQL(grantee)))
    for statement in v.extras if owned else [x for x in v.extras if _read_only(x)]:
        try:
            with conn.transaction():
                conn.execute(sql.SQL(statement))
        except psycopg.Error as e:  # a column, say, that woe_anchor's view of that name lacks
            raise MigrateError(f"{statement[:200]} cannot be run again on the re-created {v.name}: "
                               f"{e.diag.message_primary}. Nothing was changed: drop it, migrate, then make it again "
                               "as suits the new view") from None


def _read_only(extra: str) -> bool:
    """Whether an extra of a replaced view may follow it onto woe_anchor's view of that name (owned
    by the extension's owner, where a rule or trigger would act with that owner's rights): a
    column comment, or a grant of SELECT (without the option to grant it on: the extension grants
    its views, and ml.woe_anchor_revoke would meet grants made with that option)."""
    return extra.startswith(("COMMENT ON COLUMN ", "GRANT SELECT ")) and not extra.endswith(" WITH GRANT OPTION")


def rollback(conn, legacy_schema: str, force: bool = False) -> list[str]:
    """Undo a migration in the connection's transaction: the trainer's tables and views come back.

    Models fitted since the migration go with the extension: refused unless ``force``.
    """
    conn.execute("SET search_path = pg_catalog")  # as the saved definitions were printed
    legacy = sql.Identifier(legacy_schema)
    saved_views = sql.Identifier(legacy_schema, SAVED)  # quoted: the schema is any name the user chose
    if conn.execute("SELECT to_regclass(%s)", [saved_views.as_string(conn)]).fetchone()[0] is None:
        raise MigrateError(f"{saved_views.as_string(conn)} does not exist: this database was not migrated by "
                           "woe-anchor migrate (or was rolled back)")
    # a DROP EXTENSION woe_anchor CASCADE since took its models, its live views and the views over
    # them: what is left is put back all the same
    installed = conn.execute("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'woe_anchor')").fetchone()[0]
    # the models the migration imported say so; the legacy tables are not read (their owner's code
    # would run as us)
    since = [r[0] for r in conn.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1 "
                                        "WHERE extension_version <> 'imported' ORDER BY 1").fetchall()] if installed else []
    if since and not force:
        raise MigrateError(f"{len(since)} models were fitted since the migration and would be dropped: "
                           f"{', '.join(since)}. Dump them first (pg_dump) and pass --force.")
    # the trainer's tables serve what was active when they were moved (the import's activation); they
    # are not written here (their owner's triggers would run as us), so a model activated since would
    # be switched back without the activation hooks re-certifying it
    active, imported = conn.execute(
        "SELECT (SELECT model_key FROM ml.woe_anchor_model_registry_v1 WHERE is_active), "
        "(SELECT to_model FROM ml.woe_anchor_activations WHERE reason @> '{\"import\": true}' "
        "ORDER BY id DESC LIMIT 1)").fetchone() if installed else (None, None)
    if active != imported and not force:
        raise MigrateError(f"the active model is {active or 'none'}, but the trainer's tables serve "
                           f"{imported or 'no model'}, as at the migration: rolling back would switch the pipeline's "
                           "views without re-certifying. "
                           + (f"Activate {imported} (woe-anchor activate {imported}) first, or pass" if imported and active
                              else "Pass") + " --force and re-certify after.")
    saved = conn.execute(sql.SQL("SELECT name, kind, definition, owner, acl, options, comment, depth, indexes, extras "
                                 "FROM {} ORDER BY depth").format(saved_views)).fetchall()
    for name, kind, *_ in sorted(saved, key=lambda r: -r[7]):  # deepest first
        if name not in LIVE:
            conn.execute(sql.SQL("DROP {} IF EXISTS {}").format(
                sql.SQL("MATERIALIZED VIEW" if kind == "m" else "VIEW"), sql.SQL(name)))
    if installed:
        conn.execute("SELECT ml.woe_anchor_drop_views()")
        conn.execute("DROP EXTENSION woe_anchor")
    elif conn.execute("SELECT to_regclass(%s)", [SOURCE_VIEW]).fetchone()[0] is not None:
        # the source view migrate made, and the per-row functions over its rows, are no members of the
        # extension: they outlived the CASCADE
        functions = conn.execute(
            "SELECT string_agg(DISTINCT p.oid::regprocedure::text, ', ') FROM pg_proc AS p JOIN pg_depend AS d "
            "ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid WHERE d.refclassid = 'pg_type'::regclass "
            "AND d.refobjid = (SELECT reltype FROM pg_class WHERE oid = %s::regclass) "
            "AND p.pronamespace = 'ml'::regnamespace AND p.proname LIKE 'woe\\_anchor\\_%%'", [SOURCE_VIEW]).fetchone()[0]
        if functions:
            conn.execute(sql.SQL("DROP FUNCTION {}").format(sql.SQL(functions)))
        conn.execute(sql.SQL("DROP VIEW {}").format(sql.SQL(SOURCE_VIEW)))
    made = sql.Identifier(legacy_schema, EXTENSIONS)
    if conn.execute("SELECT to_regclass(%s)", [made.as_string(conn)]).fetchone()[0] is not None:
        for (name,) in conn.execute(sql.SQL("SELECT name FROM {} ORDER BY name").format(made)).fetchall():
            try:
                with conn.transaction():  # kept when something of the user's uses it now
                    conn.execute(sql.SQL("DROP EXTENSION IF EXISTS {}").format(sql.Identifier(name)))
            except psycopg.errors.DependentObjectsStillExist:
                pass
        conn.execute(sql.SQL("DROP TABLE {}").format(made))
    for table in TABLES:
        conn.execute(sql.SQL("ALTER TABLE {}.{} SET SCHEMA ml").format(legacy, sql.Identifier(table)))
    restored = []
    for name, kind, definition, owner, acl, options, comment, depth, indexes, extras in saved:
        view = View(name, kind, definition, owner, [tuple(a.split(" ", 1)) for a in acl], list(options), comment,
                    depth, list(indexes), list(extras or []))
        _create(conn, view)
        _restore_access(conn, view, owned=True)
        restored.append(view)
    _refresh(conn, restored)
    conn.execute(sql.SQL("DROP TABLE {}").format(saved_views))
    conn.execute(sql.SQL("DROP SCHEMA {}").format(legacy))
    return since
