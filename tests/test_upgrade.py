"""ALTER EXTENSION woe_anchor UPDATE from the released 0.1.0 (its frozen script) to this version.

An upgraded database must be the same as a fresh install, object for object, and
must apply this version's privilege model to what 0.1.0 left: score partitions
its trainers owned (and may have altered), the rights 0.1.0 granted them, and
live views that read their source with their owner's rights (docs/security.md).
"""
from __future__ import annotations

import os
import re
import subprocess
import threading
import time

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import artifacts
import cases
from conftest import REPO, fit
from woe_anchor_harness import install

pytestmark = pytest.mark.local_server  # the frozen 0.1.0 script is installed into this machine's share directory

CURRENT = re.search(r"default_version = '(.+)'", (REPO / "woe_anchor.control").read_text())[1]

# Every object of the extension with its definition, privileges and comment.
CATALOG = """
SELECT pg_describe_object(d.classid, d.objid, 0) AS object,
       CASE d.classid
         WHEN 'pg_proc'::regclass THEN pg_get_functiondef(d.objid) || coalesce(p.proacl::text, '')
         WHEN 'pg_class'::regclass THEN concat_ws(' | ',
           (SELECT string_agg(format('%s %s %s %s', a.attname, format_type(a.atttypid, a.atttypmod),
                                     a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid)), ', ' ORDER BY a.attnum)
            FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
            WHERE a.attrelid = d.objid AND a.attnum > 0 AND NOT a.attisdropped),
           (SELECT string_agg(pg_get_constraintdef(c.oid), '; ' ORDER BY c.conname)
            FROM pg_constraint c WHERE c.conrelid = d.objid),
           (SELECT string_agg(pg_get_indexdef(i.indexrelid), '; ' ORDER BY 1) FROM pg_index i WHERE i.indrelid = d.objid),
           (SELECT string_agg(pg_get_triggerdef(t.oid), '; ' ORDER BY t.tgname)
            FROM pg_trigger t WHERE t.tgrelid = d.objid AND NOT t.tgisinternal),
           (SELECT string_agg(col_description(d.objid, a.attnum), '; ' ORDER BY a.attnum)
            FROM pg_attribute a WHERE a.attrelid = d.objid AND a.attnum > 0),
           r.relacl::text)
         ELSE '' END AS definition,
       obj_description(d.objid, (SELECT relname FROM pg_class WHERE oid = d.classid)) AS comment
FROM pg_depend d
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'woe_anchor'
LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
LEFT JOIN pg_class r ON d.classid = 'pg_class'::regclass AND r.oid = d.objid
WHERE d.deptype = 'e'
ORDER BY 1
"""


def _partition_rows(conn, key):
    """A model's rows in the scores table itself (both versions keep local scores there)."""
    return conn.execute("SELECT * FROM ml.woe_anchor_scores_v1 WHERE model_key = %s ORDER BY 2, 3, 4",
                        [key]).fetchall()


def _catalog(dsn):
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(CATALOG).fetchall()
    # the inlined package is keyed by version and code hash, the same code either way
    return [tuple(re.sub(r"woe_anchor/[^']+'", "woe_anchor/KEY'", str(v)) for v in r) for r in rows]


@pytest.fixture
def databases(server):
    names = [f"woe_anchor_upgraded_{os.getpid()}", f"woe_anchor_fresh_{os.getpid()}"]
    yield [install.fresh_database(server, n, extension=False) for n in names]
    for n in names:
        install.drop_database(server, n)


def test_the_update_from_0_1_0_gives_the_catalog_of_a_fresh_install(databases):
    upgraded, fresh = databases
    with psycopg.connect(upgraded, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION woe_anchor VERSION '0.1.0' CASCADE")
        conn.execute("ALTER EXTENSION woe_anchor UPDATE")
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0] \
            == CURRENT
    with psycopg.connect(fresh, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION woe_anchor CASCADE")
    got, want = _catalog(upgraded), _catalog(fresh)
    assert len(want) > 40
    assert got == want, [(a, b) for a, b in zip(got, want) if a != b][:3]


def test_no_table_of_the_extension_stops_pg_upgrade(databases):
    """pg_upgrade keeps no OID of a function, operator, text search object, schema or collation and
    refuses every database with a column of those reg* types (its "reg* data types" check)."""
    _, fresh = databases
    with psycopg.connect(fresh, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION woe_anchor CASCADE")
        refused = conn.execute(
            "SELECT a.attrelid::regclass::text, a.attname FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid "
            "WHERE c.relnamespace::regnamespace::text IN ('ml', 'woe_anchor_scores', 'woe_anchor_internal') "
            "AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid IN ('regproc'::regtype, 'regprocedure'::regtype, "
            "'regoper'::regtype, 'regoperator'::regtype, 'regconfig'::regtype, 'regdictionary'::regtype, "
            "'regnamespace'::regtype, 'regcollation'::regtype)").fetchall()
    assert refused == []


@pytest.fixture
def roles(databases):
    """A trainer and a reader of the upgraded database, dropped afterwards whatever happened."""
    names = (f"woe_up_t_{os.getpid()}", f"woe_up_r_{os.getpid()}")
    with psycopg.connect(databases[0], autocommit=True) as conn:
        for role in names:
            conn.execute(f"DROP ROLE IF EXISTS {role}")
            conn.execute(f"CREATE ROLE {role}")
    yield names
    with psycopg.connect(databases[0], autocommit=True) as conn:
        for role in names:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_the_update_applies_the_new_privilege_model_to_what_0_1_0_trainers_left(databases, roles):
    """Under 0.1.0 a trainer fitted (owning its partition), altered its partition and hung its code on it."""
    upgraded, _ = databases
    trainer, reader = roles
    with psycopg.connect(upgraded, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION woe_anchor VERSION '0.1.0' CASCADE")
        conn.execute("CREATE TABLE public.woe_pwned (who name, what text)")
        conn.execute("GRANT INSERT ON public.woe_pwned TO PUBLIC")
        cases.load(conn, "up_src", cases.make_rows(seed=97, n=800))
        conn.execute(f"GRANT SELECT ON up_src TO {trainer}, {reader}")
        conn.execute("SELECT ml.woe_anchor_grant(trainer => %s, reader => %s)", [trainer, reader])
        conn.execute(f"CREATE SCHEMA t AUTHORIZATION {trainer}")
        conn.execute(f"SET ROLE {trainer}")
        conn.execute("CREATE FUNCTION t.evil() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
                     "INSERT INTO public.woe_pwned VALUES (current_user, 'evil ran'); RETURN true; END $$")
        clean = fit(conn, "up_src", model_key="clean_0_1_0", activate=False)
        dirty = fit(conn, "up_src", model_key="dirty_0_1_0")
        renamed = fit(conn, "up_src", model_key="renamed_0_1_0", activate=False)
        # read now: once the trainer's traps are in, even planning a read of its partition runs them
        before = {k: _partition_rows(conn, k) for k in (clean, dirty, renamed)}
        scored = conn.execute("SELECT * FROM ml.woe_anchor_score('up_src') ORDER BY 1, 2, 3").fetchall()
        part = artifacts.partition(conn, dirty)
        conn.execute(f"ALTER TABLE {part} ADD CONSTRAINT planted CHECK (t.evil())")
        conn.execute("CREATE FUNCTION t.trig() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                     "PERFORM t.evil(); RETURN NEW; END $$")
        conn.execute(f"CREATE TRIGGER planted BEFORE INSERT ON {part} FOR EACH ROW EXECUTE FUNCTION t.trig()")
        conn.execute(f"CREATE VIEW t.on_partition AS SELECT * FROM {part}")
        # code that planning a read of the partition would evaluate, or a read would run
        conn.execute("CREATE FUNCTION t.evil_key(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS "
                     "$$ BEGIN PERFORM t.evil(); RETURN $1; END $$")
        conn.execute(f"CREATE INDEX planted_expression ON {part} ((t.evil_key(generation)))")
        conn.execute(f"CREATE INDEX planted_predicate ON {part} (listing_id) WHERE t.evil_key(1) = 1")
        conn.execute(f"CREATE STATISTICS t.planted_statistics ON (t.evil_key(generation)), listing_id FROM {part}")
        conn.execute(f"ALTER TABLE {part} ENABLE ROW LEVEL SECURITY")
        conn.execute(f"CREATE POLICY planted ON {part} USING (t.evil())")
        conn.execute(f"GRANT SELECT ON {part} TO PUBLIC")
        # a partition renamed and moved out of the way, with statistics calling the trainer, and a
        # table squatting on a future partition's name
        away = artifacts.partition(conn, renamed)
        conn.execute(f"ALTER TABLE {away} RENAME TO keep_me")
        conn.execute("ALTER TABLE woe_anchor_scores.keep_me SET SCHEMA t")
        conn.execute("CREATE STATISTICS t.on_keep_me ON (t.evil_key(generation)), listing_id FROM t.keep_me")
        conn.execute("CREATE TABLE woe_anchor_scores.woe_anchor_scores_v1_m99 (x int)")
        # a key into a partition: detaching or dropping it would plan the trainer's table, whose partial
        # index calls the trainer; a rule on the trainer's table that names the partition
        conn.execute(f"CREATE TABLE t.refers (generation int, listing_id bigint, t0 timestamptz, model_key text, "
                     f"FOREIGN KEY (generation, listing_id, t0, model_key) REFERENCES {part})")
        conn.execute("CREATE INDEX ON t.refers (generation) WHERE t.evil_key(1) = 1")
        conn.execute("CREATE TABLE t.ruled (x int)")
        conn.execute(f"CREATE RULE names_the_partition AS ON INSERT TO t.ruled DO ALSO DELETE FROM {part} WHERE false")
        # and the model-id sequence at its end, so that no fit could take an id
        conn.execute("SELECT setval('ml.woe_anchor_model_id_seq', 9223372036854775807)")
        conn.execute("RESET ROLE")
        conn.execute("SELECT ml.woe_anchor_create_views('up_src')")
        conn.execute("DELETE FROM public.woe_pwned")

        conn.execute("ALTER EXTENSION woe_anchor UPDATE")

        owner = conn.execute("SELECT pg_get_userbyid(extowner) FROM pg_extension "
                             "WHERE extname = 'woe_anchor'").fetchone()[0]
        partitions = conn.execute(
            "SELECT c.oid::regclass::text, pg_get_userbyid(c.relowner), "
            "(SELECT count(*) FROM pg_trigger g WHERE g.tgrelid = c.oid AND NOT g.tgisinternal AND g.tgparentid = 0) "
            "+ (SELECT count(*) FROM pg_statistic_ext x WHERE x.stxrelid = c.oid) "
            "+ (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) "
            "+ (SELECT count(*) FROM pg_index x WHERE x.indrelid = c.oid AND NOT x.indisprimary), "
            "c.relrowsecurity OR EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner), "
            # from 18 a column's NOT NULL is a constraint too, inherited from the parent's column
            "(SELECT array_agg(k.conname ORDER BY k.conname) FROM pg_constraint k WHERE k.conrelid = c.oid "
            " AND NOT (k.contype = 'n' AND k.coninhcount > 0)) "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'ml.woe_anchor_scores_v1'::regclass").fetchall()
        assert len(partitions) == 3
        assert conn.execute("SELECT to_regclass('t.keep_me'), to_regclass('woe_anchor_scores.woe_anchor_scores_v1_m99')"
                            ).fetchone() == (None, None)
        for name, part_owner, attached, secured, constraints in partitions:
            assert name.startswith("woe_anchor_scores.woe_anchor_scores_v1_m"), name
            assert (part_owner, attached, secured) == (owner, 0, False), name
            assert sorted(constraints) == sorted([name.split(".")[1] + "_pkey", "woe_anchor_scores_model_key_check",
                                                  "woe_anchor_scores_v1_fold_id_check"]), name
        assert conn.execute("SELECT to_regclass('t.on_partition')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE conrelid = 't.refers'::regclass "
                            "AND contype = 'f'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_rewrite WHERE ev_class = 't.ruled'::regclass").fetchone()[0] == 0
        assert {k: _partition_rows(conn, k) for k in (clean, dirty, renamed)} == before, "every score kept"
        assert conn.execute("SELECT * FROM ml.woe_anchor_score('up_src') ORDER BY 1, 2, 3").fetchall() == scored
        assert artifacts.active_keys(conn) == [dirty]
        assert conn.execute("SELECT count(*) FROM public.woe_pwned").fetchone()[0] == 0
        # 0.1.0's rights are gone, this version's are there
        for privilege, target in (("INSERT", "ml.woe_anchor_model_registry_v1"), ("DELETE", "ml.woe_anchor_map_v1"),
                                  ("UPDATE", "ml.woe_anchor_model_id_seq")):
            check = "has_sequence_privilege" if target.endswith("_seq") else "has_table_privilege"
            assert not conn.execute(f"SELECT {check}(%s, %s, %s)", [trainer, target, privilege]).fetchone()[0]
        assert not conn.execute("SELECT has_schema_privilege(%s, 'woe_anchor_scores', 'CREATE')",
                                [trainer]).fetchone()[0]
        assert conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'ml.woe_anchor_scores_live_v1'::regclass"
                            ).fetchone()[0] == ["security_invoker=true"]
        conn.execute(f"SET ROLE {trainer}")
        assert fit(conn, "up_src", model_key="after_update", activate=False) == "after_update"
        assert conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [clean]).fetchone()[0] is True
        conn.execute(f"SET ROLE {reader}")
        assert conn.execute("SELECT count(*) FROM ml.woe_anchor_scores_live_train_v").fetchone()[0] == 800
        conn.execute("RESET ROLE")


# every right a role holds on the extension's objects and the objects it makes (describe, role, privilege)
RIGHTS = """
SELECT o.what, a.grantee::regrole::text, a.privilege_type
FROM (SELECT pg_describe_object('pg_class'::regclass, c.oid, 0) AS what, c.relacl AS acl FROM pg_class AS c
      WHERE c.relnamespace::regnamespace::text IN ('ml', 'woe_anchor_scores', 'woe_anchor_internal')
      UNION ALL
      SELECT pg_describe_object('pg_proc'::regclass, p.oid, 0), p.proacl FROM pg_proc AS p
      WHERE p.pronamespace::regnamespace::text IN ('ml', 'woe_anchor_internal')
      UNION ALL
      SELECT n.nspname, n.nspacl FROM pg_namespace AS n WHERE n.nspname IN ('ml', 'woe_anchor_scores', 'woe_anchor_internal')
     ) AS o, aclexplode(o.acl) AS a
WHERE a.grantee <> 0 AND a.grantee <> (SELECT extowner FROM pg_extension WHERE extname = 'woe_anchor')
ORDER BY 1, 2, 3
"""


def test_a_dump_of_an_updated_database_keeps_every_roles_rights(server, databases, roles):
    """The update re-grants what roles held; run inside ALTER EXTENSION, those grants would be
    recorded as the extension's initial privileges, which pg_dump leaves out."""
    upgraded, _ = databases
    trainer, reader = roles
    with psycopg.connect(upgraded, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION woe_anchor VERSION '0.1.0' CASCADE")
        cases.load(conn, "up_src", cases.make_rows(seed=97, n=800))
        conn.execute(f"GRANT SELECT ON up_src TO {trainer}, {reader}")
        conn.execute("SELECT ml.woe_anchor_grant(trainer => %s, reader => %s)", [trainer, reader])
        conn.execute(f"SET ROLE {trainer}")
        fit(conn, "up_src", model_key="granted_0_1_0")
        conn.execute("RESET ROLE")
        conn.execute("SELECT ml.woe_anchor_create_views('up_src')")
        conn.execute("ALTER EXTENSION woe_anchor UPDATE")
        rights = conn.execute(RIGHTS).fetchall()
        assert {r[1] for r in rights} == {trainer, reader}
        assert conn.execute("SELECT count(*) FROM pg_init_privs AS i, aclexplode(i.initprivs) AS a "
                            "WHERE a.grantee::regrole::text IN (%s, %s)", [trainer, reader]).fetchone()[0] == 0
    name = conninfo_to_dict(upgraded)["dbname"]
    target = f"{name}_restored"
    restored = install.fresh_database(server, target, extension=False)
    info = conninfo_to_dict(server.dsn)
    env = dict(os.environ, PGHOST=info["host"], PGPORT=str(info["port"]), PGUSER=info["user"])
    try:
        dump = subprocess.run([*server.client("pg_dump"), "-Fc", "-d", name], env=env,
                              check=True, capture_output=True).stdout
        subprocess.run([*server.client("pg_restore"), "--exit-on-error", "-d", target], input=dump, env=env,
                       check=True, capture_output=True)
        with psycopg.connect(restored, autocommit=True) as conn:
            assert conn.execute(RIGHTS).fetchall() == rights
            conn.execute(f"SET ROLE {reader}")
            assert conn.execute("SELECT count(*) FROM ml.woe_anchor_scores_live_v1").fetchone()[0] == 800
            conn.execute(f"SET ROLE {trainer}")
            assert fit(conn, "up_src", model_key="after_restore", activate=False) == "after_restore"
    finally:
        install.drop_database(server, target)


def test_readers_of_the_live_views_wait_for_the_update_instead_of_deadlocking(databases):
    """The update alters 0.1.0's live views after their tables; readers lock a view before the
    views and tables it reads. The update takes the views first, outermost first as readers do."""
    upgraded, _ = databases
    with psycopg.connect(upgraded, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION woe_anchor VERSION '0.1.0' CASCADE")
        cases.load(conn, "dl_src", cases.make_rows(seed=98, n=3000))
        fit(conn, "dl_src", model_key="dl_0_1_0")
        conn.execute("SELECT ml.woe_anchor_create_views('dl_src')")
        queries = ["SELECT count(*) FROM ml.woe_anchor_scores_live_train_v",
                   "SELECT count(*) FROM ml.woe_anchor_scores_live_v1",
                   "SELECT count(*) FROM ml.v_woe_anchor_bands_live_v1"]
        stop, failures, reads = threading.Event(), [], []

        def read(query):
            with psycopg.connect(upgraded, autocommit=True, prepare_threshold=None) as r:
                while not stop.is_set():
                    try:
                        reads.append(r.execute(query).fetchone()[0])
                    except psycopg.Error as e:
                        failures.append((e.sqlstate, str(e).splitlines()[0]))
        readers = [threading.Thread(target=read, args=(q,)) for q in queries * 3]
        for t in readers:
            t.start()
        try:
            time.sleep(1.0)
            conn.execute("ALTER EXTENSION woe_anchor UPDATE")
            time.sleep(1.0)
        finally:
            stop.set()
            for t in readers:
                t.join()
        assert failures == [] and len(reads) > len(readers), failures[:3]

