"""Objects a caller puts earlier in its search_path, and session settings, change no artifact."""
from __future__ import annotations

import os

import psycopg
import pytest

import artifacts
import cases
from conftest import fit
from woe_anchor_harness import install

SETTINGS = {
    "plain": [],
    "odd_session": ["SET DateStyle = 'SQL, DMY'", "SET TimeZone = 'Asia/Kolkata'", "SET lc_numeric = 'C'",
                    "SET extra_float_digits = -10", "SET IntervalStyle = 'sql_standard'"],
    "forced_parallel": ["SET parallel_setup_cost = 0", "SET parallel_tuple_cost = 0",
                        "SET min_parallel_table_scan_size = 0", "SET max_parallel_workers_per_gather = 4"],
    "no_parallel": ["SET max_parallel_workers_per_gather = 0", "SET extra_float_digits = 3"],
}


@pytest.fixture
def hostile_src(conn):
    cases.load(conn, "hostile_src", cases.make_rows(seed=91, n=2500))
    return "hostile_src"


def test_session_settings_change_no_artifact(conn, hostile_src):
    results = {}
    for name, statements in SETTINGS.items():
        for s in statements:
            conn.execute(s)
        key = fit(conn, hostile_src, model_key=f"settings_{name}", activate=False, replace=True)
        conn.execute("RESET ALL")  # read back in the client's usual settings
        results[name] = artifacts.comparable(conn, key)
    first = results.pop("plain")
    for name, got in results.items():
        assert got == first, name


def test_hostile_objects_in_the_search_path_change_nothing(conn, hostile_src):
    clean = artifacts.comparable(conn, fit(conn, hostile_src, model_key="clean", activate=False, replace=True))
    conn.execute("DROP SCHEMA IF EXISTS hostile CASCADE")
    conn.execute("CREATE SCHEMA hostile")
    conn.execute("CREATE FUNCTION hostile.ln(float8) RETURNS float8 LANGUAGE sql AS 'SELECT 0::float8'")
    conn.execute("CREATE FUNCTION hostile.exp(float8) RETURNS float8 LANGUAGE sql AS 'SELECT 1::float8'")
    conn.execute("CREATE FUNCTION hostile.always(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true'")
    conn.execute("CREATE OPERATOR hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = hostile.always)")
    conn.execute("CREATE TABLE hostile.woe_anchor_model_registry_v1 (model_key text, is_active boolean)")
    conn.execute("CREATE TABLE hostile.woe_anchor_map_v1 (model_key text)")
    conn.execute("CREATE TABLE public.woe_anchor_model_registry_v1 (model_key text, is_active boolean)")
    conn.execute("CREATE TABLE public.woe_anchor_cuts_v1 (model_key text)")
    conn.execute("SET search_path = hostile, public")
    try:
        key = fit(conn, "public.hostile_src", model_key="o'hostile\"; DROP TABLE x; --", activate=False)
        for fake in ("hostile.woe_anchor_model_registry_v1", "public.woe_anchor_model_registry_v1",
                     "public.woe_anchor_cuts_v1"):
            assert conn.execute(f"SELECT count(*) FROM {fake}").fetchone()[0] == 0, fake
        got = artifacts.comparable(conn, key)
        scored = conn.execute("SELECT count(*), sum(woe_logit) FROM ml.woe_anchor_score('public.hostile_src', %s)",
                              [key]).fetchone()
    finally:
        conn.execute("RESET search_path")
        conn.execute("DROP SCHEMA hostile CASCADE")
        conn.execute("DROP TABLE public.woe_anchor_model_registry_v1, public.woe_anchor_cuts_v1")
    assert got == clean
    want = conn.execute("SELECT count(*), sum(woe_logit) FROM ml.woe_anchor_score('hostile_src', 'clean')").fetchone()
    assert scored[0] == want[0] and abs(scored[1] - want[1]) < 1e-9


def test_install_refuses_an_ml_schema_a_non_superuser_owns(server):
    name, role = f"woe_anchor_owner_{os.getpid()}", f"woe_owner_{os.getpid()}"
    dsn = install.fresh_database(server, name, extension=False)
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"DROP ROLE IF EXISTS {role}")
            c.execute(f"CREATE ROLE {role} NOLOGIN")
            c.execute(f"CREATE SCHEMA ml AUTHORIZATION {role}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="owned by"):
                c.execute("CREATE EXTENSION woe_anchor CASCADE")
            c.execute("DROP SCHEMA ml")
    finally:
        install.drop_database(server, name)
        with psycopg.connect(server.dsn_for("postgres"), autocommit=True) as c:
            c.execute(f"DROP ROLE IF EXISTS {role}")
