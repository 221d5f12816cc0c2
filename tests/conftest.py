"""Fixtures: a real PostgreSQL server with plpython3u, the extension installed, a throwaway database.

Which server (``containers.server_kind``): WOE_ANCHOR_DSN names one to use as is (the
extension must already be installed there); WOE_ANCHOR_CONTAINERS=1 asks for a container of
docker/Dockerfile started by testcontainers; else the harness's private local cluster,
created and started on demand (what the README's test command and CI use). Tests marked
``local_server`` need this machine's own server files: they are skipped against a container,
as docs/install.md says, and run everywhere else.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "harness"), str(REPO / "plpython"), str(REPO / "tests")]

from woe_anchor_harness import containers, install, server as servers  # noqa: E402

SERVER_KIND = containers.server_kind()


def pytest_configure(config):
    config.addinivalue_line("markers", "local_server: needs this machine's PostgreSQL installation (pg_config, "
                                       "its share directory or throwaway clusters), not a container's")


def pytest_runtest_setup(item):
    if SERVER_KIND == "container" and item.get_closest_marker("local_server"):
        pytest.skip("needs a local PostgreSQL installation; the tests run against a container")


@pytest.fixture(scope="session")
def server():
    if SERVER_KIND == "dsn":
        yield servers.from_env_or_local()
    elif SERVER_KIND == "container":
        with containers.running(int(os.environ.get("WOE_ANCHOR_PG_MAJOR", "15"))) as srv:
            yield srv
    else:
        srv = servers.ensure_local()
        install.make_install(srv)
        yield srv


@pytest.fixture(scope="session")
def dsn(server):
    """A database of its own for this test session, with woe_anchor installed."""
    name = f"woe_anchor_test_{os.getpid()}"
    url = install.fresh_database(server, name)
    yield url
    install.drop_database(server, name)


@pytest.fixture
def conn(dsn):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.notices = []
        c.add_notice_handler(lambda d: c.notices.append(d.message_primary))
        yield c


def drop_live_views(conn) -> None:
    """Drop every set of live views and per-row functions (they keep their sources from being dropped)."""
    for (source,) in conn.execute("SELECT DISTINCT source FROM ml.woe_anchor_views "
                                  "WHERE kind <> 'source' AND to_regclass(source) IS NOT NULL").fetchall():
        conn.execute("SELECT ml.woe_anchor_drop_views(%s)", [source])
    conn.execute("DROP VIEW IF EXISTS ml.woe_anchor_scores_live_train_v, ml.woe_anchor_scores_live_v1, "
                 "ml.v_woe_anchor_bands_live_v1")
    conn.execute("DELETE FROM ml.woe_anchor_views WHERE kind <> 'source'")


def fit(conn, source: str, **params) -> str:
    """CALL ml.fit_woe_anchor with named parameters; returns the model key."""
    names = ", ".join(f"{k} => %({k})s" for k in params)
    query = f"CALL ml.fit_woe_anchor(source => %(source)s{', ' + names if names else ''})"
    return conn.execute(query, dict(params, source=source)).fetchone()[0]


def skip_without_jit(conn) -> None:
    """Skip the test on a server without a JIT provider (pg_jit_available() asks with jit on)."""
    if not conn.execute("SELECT pg_jit_available() FROM (SELECT set_config('jit', 'on', false)) AS s").fetchone()[0]:
        pytest.skip("this server has no JIT provider")


def plans_as_notices(conn) -> None:
    """auto_explain sends the plan of every statement the session runs, nested ones too, to it as a
    notice (the JIT's part included); ``SET auto_explain.log_min_duration = -1`` stops it."""
    conn.execute("LOAD 'auto_explain'")
    conn.execute("SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on; "
                 "SET auto_explain.log_level = notice")


def routine_config(conn, routine: str) -> list:
    """A routine's proconfig (its SET clauses), ``routine`` as regprocedure text."""
    return conn.execute("SELECT proconfig FROM pg_proc WHERE oid = %s::regprocedure", [routine]).fetchone()[0]


@contextlib.contextmanager
def compiling_at_any_cost(conn, *routines: str):
    """Inside, the routines compile past a planned cost of 0 (their jit_above_cost and
    jit_optimize_above_cost lowered), and every plan of the session comes as a notice
    (``plans_as_notices``, cleared on entry); on the way out both are undone, the costs set back
    to the routines' own values."""
    kept = {r: dict(item.split("=", 1) for item in routine_config(conn, r)) for r in routines}
    plans_as_notices(conn)
    try:
        for r in routines:
            conn.execute(f"ALTER FUNCTION {r} SET jit_above_cost = 0 SET jit_optimize_above_cost = 0")
        conn.notices.clear()
        yield
    finally:
        conn.execute("SET auto_explain.log_min_duration = -1")
        for r, config in kept.items():
            conn.execute(f"ALTER FUNCTION {r} SET jit_above_cost = {int(config['jit_above_cost'])} "
                         f"SET jit_optimize_above_cost = {int(config['jit_optimize_above_cost'])}")
