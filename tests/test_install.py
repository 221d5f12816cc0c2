"""Installing the extension the ways users do: PGXS installcheck, CREATE EXTENSION on odd databases."""
from __future__ import annotations

import os
import re
import subprocess

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from conftest import REPO
from woe_anchor_harness import install


@pytest.mark.local_server
def test_make_installcheck_passes(server):
    info = conninfo_to_dict(server.dsn)
    env = dict(os.environ, PGHOST=info.get("host", ""), PGPORT=str(info.get("port", "")),
               PGUSER=info.get("user", ""))
    result = subprocess.run(["make", "-s", "-C", str(REPO), "installcheck", f"PG_CONFIG={server.pg_config}"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All 1 tests passed" in result.stdout


@pytest.fixture
def scratch(server):
    name = f"woe_anchor_scratch_{os.getpid()}"
    dsn = install.fresh_database(server, name, extension=False)
    yield dsn
    install.drop_database(server, name)


def test_create_extension_without_ml_schema(scratch):
    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION woe_anchor CASCADE")
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0] \
            == re.search(r"default_version = '(.+)'", (REPO / "woe_anchor.control").read_text())[1]
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'plpython3u'").fetchone()[0] == 1


def test_create_extension_where_ml_holds_unrelated_objects(scratch):
    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA ml")
        conn.execute("CREATE TABLE ml.features (id int PRIMARY KEY, x float8)")
        conn.execute("INSERT INTO ml.features VALUES (1, 2.5)")
        conn.execute("CREATE FUNCTION ml.helper() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        conn.execute("CREATE EXTENSION woe_anchor CASCADE")
        assert conn.execute("SELECT x FROM ml.features").fetchone()[0] == 2.5
        assert conn.execute("SELECT ml.helper()").fetchone()[0] == 1
        conn.execute("DROP EXTENSION woe_anchor")
        assert conn.execute("SELECT x FROM ml.features").fetchone()[0] == 2.5, "drop leaves user objects alone"


def test_nothing_is_executable_by_public(conn):
    rows = conn.execute("""
        SELECT p.oid::regprocedure::text FROM pg_proc p
        JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
        JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'woe_anchor'
        WHERE has_function_privilege('public', p.oid, 'EXECUTE')""").fetchall()
    assert rows == []


def test_every_function_pins_search_path(conn):
    rows = conn.execute("""
        SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p
        JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
        JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'woe_anchor'""").fetchall()
    assert rows
    for name, config in rows:
        assert "search_path=pg_catalog, pg_temp" in (config or []), name


def test_only_the_documented_entry_points_are_security_definer(conn):
    rows = conn.execute("""
        SELECT p.proname FROM pg_proc p
        JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
        JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'woe_anchor'
        WHERE p.prosecdef ORDER BY 1""").fetchall()
    # docs/security.md, "Entry points": each learns its caller from a ticket
    assert [r[0] for r in rows] == ["_woe_anchor_activate", "_woe_anchor_drop", "_woe_anchor_edit_band_schema",
                                    "_woe_anchor_open_staging", "_woe_anchor_persist", "_woe_anchor_prune",
                                    "_woe_anchor_schedule", "_woe_anchor_unschedule"]
