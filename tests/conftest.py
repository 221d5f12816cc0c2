"""Fixtures: a real PostgreSQL server with plpython3u, the extension installed, a throwaway database.

WOE_ANCHOR_DSN names a server to use as is (the extension must already be installed
there); otherwise the harness's private local cluster, created and started on demand.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "harness"), str(REPO / "plpython"), str(REPO / "tests")]

from woe_anchor_harness import install, server as servers  # noqa: E402


def _local_server():
    srv = servers.from_env_or_local()
    if "WOE_ANCHOR_DSN" not in os.environ:
        install.make_install(srv)
    return srv


@pytest.fixture(scope="session")
def server():
    return _local_server()


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


def fit(conn, source: str, **params) -> str:
    """CALL ml.fit_woe_anchor with named parameters; returns the model key."""
    names = ", ".join(f"{k} => %({k})s" for k in params)
    query = f"CALL ml.fit_woe_anchor(source => %(source)s{', ' + names if names else ''})"
    return conn.execute(query, dict(params, source=source)).fetchone()[0]
