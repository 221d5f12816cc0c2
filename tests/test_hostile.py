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


def _in_every_session(conn, run) -> dict:
    """``run(name)`` under each of SETTINGS, by name; the session is reset after each."""
    results = {}
    for name, statements in SETTINGS.items():
        for s in statements:
            conn.execute(s)
        try:
            results[name] = run(name)
        finally:
            conn.execute("RESET ALL")
    return results


def _as_in_the_plain_session(results: dict):
    """Every session's result equals the plain one's; returns the plain one's."""
    first = results.pop("plain")
    for name, got in results.items():
        assert got == first, name
    return first


def test_session_settings_change_no_artifact(conn, hostile_src):
    keys = _in_every_session(conn, lambda name: fit(conn, hostile_src, model_key=f"settings_{name}",
                                                    activate=False, replace=True))
    # read back in the client's usual settings
    _as_in_the_plain_session({name: artifacts.comparable(conn, key) for name, key in keys.items()})


def test_session_settings_change_no_monitoring_figure(conn, hostile_src):
    """Drift, realized, compare and monitor take their windows as timestamptz, which reach PL/Python
    as text in the session's style: DateStyle SQL in Asia/Kolkata prints IST, which read back alone
    means Israel's time, 3.5 hours off. Every figure must be the same bits in every session."""
    cutoff = "2026-03-30 00:00+00"   # 28 of the 40 days: sales after it to compare the models on
    key = fit(conn, hostile_src, model_key="settings_monitor", activate=False, replace=True, cutoff=cutoff)
    other = fit(conn, hostile_src, model_key="settings_monitor_b", activate=False, replace=True, cutoff=cutoff,
                half_life_days=7.0)
    cutoff, start, end = conn.execute(
        "SELECT train_cutoff_ts, train_cutoff_ts - interval '5 days 7 hours', train_cutoff_ts + interval '2 days' "
        "FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s", [key]).fetchone()
    # a copy whose newest listings are an hour old: monitor's window is the last few hours before now()
    conn.execute("DROP TABLE IF EXISTS hostile_now")
    conn.execute("CREATE TABLE hostile_now AS SELECT * FROM hostile_src")
    conn.execute("UPDATE hostile_now SET t0 = now() - interval '1 hour' WHERE t0 >= %s", [start])
    queries = [("SELECT * FROM ml.woe_anchor_drift('hostile_src', %s, %s, %s)", [start, end, key]),
               ("SELECT * FROM ml.woe_anchor_realized('hostile_src', %s, %s)", [key, start]),
               # sales after both cutoffs, up to an instant no midnight
               ("SELECT * FROM ml.woe_anchor_compare(%s, %s, 'hostile_src', %s, %s + interval '6 days 5 hours')",
                [key, other, cutoff, cutoff]),
               ("SELECT kind, subject, value, threshold FROM ml.woe_anchor_monitor('hostile_now', %s, "
                "window_days => 0.1, psi_limit => 100, auc_drop => 1, channel => NULL) ORDER BY 1, 2", [key])]
    # binary results: extra_float_digits and DateStyle shape only the text a client reads
    results = _in_every_session(conn, lambda name: [conn.cursor(binary=True).execute(q, args).fetchall()
                                                    for q, args in queries])
    drift, weeks, compared, alerts = _as_in_the_plain_session(results)
    assert sum(r[3] for r in drift if r[0] == drift[0][0]) > 0 and weeks and compared
    assert alerts == []   # the window holds the copy's newest rows: no "no_rows" alert


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
