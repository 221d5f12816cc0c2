"""Two PostgreSQL majors: one fit gives the same artifacts to the bit, and a dump of the host's
major restores on the other with every model.

`harness/run.sh test-matrix` runs the suite against each other major's server
with WOE_ANCHOR_HOST_DSN naming the host's own server and WOE_ANCHOR_ROOT the root the
other one runs from. (Each server's PL/Python brings its own
Python and numpy: the WOE and quality math uses the C library's log and exp,
not numpy's, which differ between numpy versions in the last bit.)
"""
from __future__ import annotations

import os
import subprocess

import psycopg
import pytest

import cases
from conftest import fit
from woe_anchor_harness import install, server as servers

HOST_DSN = os.environ.get("WOE_ANCHOR_HOST_DSN")
pytestmark = pytest.mark.skipif(not HOST_DSN, reason="runs in harness/run.sh test-matrix, beside the host's server")

# what differs between two fits by design: when, and how long each step took
VOLATILE = ("created_at", "timings_ms", "model_id")
ARTIFACTS = {
    "registry": "SELECT to_jsonb(r) - ARRAY[%s] FROM ml.woe_anchor_model_registry_v1 AS r WHERE model_key = %%s",
    "cuts": "SELECT to_jsonb(c) FROM ml.woe_anchor_cuts_v1 AS c WHERE model_key = %s ORDER BY fold_id NULLS FIRST",
    "map": ("SELECT to_jsonb(m) FROM ml.woe_anchor_map_v1 AS m WHERE model_key = %s "
            "ORDER BY fold_id NULLS FIRST, band_name, band_value"),
    "scores": ("SELECT generation, listing_id, t0, fold_id, is_oof, woe_logit, woe_p FROM ml.woe_anchor_scores_v1 "
               "WHERE model_key = %s ORDER BY generation, listing_id, t0"),
}


@pytest.fixture
def host_conn():
    host = servers.Server(dsn=HOST_DSN, bindir="", major=0)
    name = f"woe_anchor_majors_{os.getpid()}"
    dsn = install.fresh_database(host, name)
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            yield c
    finally:
        install.drop_database(host, name)


def _artifacts(conn, key: str) -> dict:
    volatile = ", ".join(f"'{c}'" for c in VOLATILE)
    return {name: conn.execute(query % volatile if name == "registry" else query, [key]).fetchall()
            for name, query in ARTIFACTS.items()}


@pytest.mark.parametrize("params", [{}, {"n_folds": 7, "half_life_days": 20.0}])
def test_one_fit_gives_the_same_artifacts_on_two_majors(conn, host_conn, params):
    rows = cases.skew_generations(cases.make_rows(n=20_000, n_days=60, seed=2027), 2027)
    versions = []
    stored = []
    for c in (host_conn, conn):
        cases.load(c, "mj_src", rows)
        key = fit(c, "mj_src", model_key="mj_model", replace=True, **params)
        versions.append(c.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone()[0])
        stored.append(_artifacts(c, key))
    assert versions[0] != versions[1], f"two majors: {versions}"
    host, other = stored
    assert len(host["scores"]) > 10_000 and len(host["map"]) > 100
    for name in ARTIFACTS:
        differ = [i for i, (a, b) in enumerate(zip(host[name], other[name])) if a != b]
        assert len(host[name]) == len(other[name]) and differ == [], \
            f"{name}: {len(differ)} of {len(host[name])} rows differ between PostgreSQL {versions[0]} and " \
            f"{versions[1]}; first: {_difference(host[name][differ[0]], other[name][differ[0]])}"


def _difference(a: tuple, b: tuple) -> str:
    """What differs between two rows (for a JSON row, its keys)."""
    if len(a) == 1 and isinstance(a[0], dict):
        return ", ".join(f"{k}: {a[0].get(k)!r} vs {b[0].get(k)!r}" for k in sorted(a[0].keys() | b[0].keys())
                         if a[0].get(k) != b[0].get(k))
    return f"{a} vs {b}"


def test_a_dump_of_the_host_major_restores_on_this_one_with_every_model(server, host_conn, tmp_path):
    """The upgrade path across majors: a dump of the host's server, restored by this major's
    pg_restore, brings back every artifact, the active model and the per-row scoring as they were.
    (The host's pg_dump writes it, not this major's as PostgreSQL advises: this machine's 15.20 build
    stores an attribute option `pg_attver` on every column, any table's, which its own pg_dump leaves
    out and newer ones copy into the dump, where their servers refuse it.)"""
    if server.major < host_conn.info.server_version // 10000:
        pytest.skip("a dump restores on the same or a newer major: this one is older than the host's")
    cases.load(host_conn, "mj_dump_src", cases.make_rows(n=5_000, seed=31))
    key = fit(host_conn, "mj_dump_src", model_key="mj_dump", replace=True)
    host_conn.execute("SELECT ml.woe_anchor_create_views('mj_dump_src')")
    want = _artifacts(host_conn, key)
    score = "SELECT l.generation, l.listing_id, l.t0, ml.woe_anchor_p(l) FROM mj_dump_src AS l ORDER BY 1, 2, 3"
    scored = host_conn.execute(score).fetchall()
    info, dump = host_conn.info, tmp_path / "mj.dump"
    done = subprocess.run([os.path.join(servers.host_bindir(), "pg_dump"), "-Fc", "-h", info.host, "-p", str(info.port), "-U", "postgres",
                           "-d", info.dbname, "-f", str(dump)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    name = f"woe_anchor_restored_{os.getpid()}"
    dsn = install.fresh_database(server, name, extension=False)
    try:
        done = subprocess.run([*server.client("pg_restore"), "--exit-on-error", "-d", dsn, str(dump)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        with psycopg.connect(dsn, autocommit=True) as restored:
            assert _artifacts(restored, key) == want
            assert restored.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1 WHERE is_active"
                                    ).fetchall() == [(key,)]
            assert restored.execute(score).fetchall() == scored
    finally:
        install.drop_database(server, name)
