"""Fits interrupted at several points of their run leave nothing, and the active model keeps serving.

Each interruption point is reached deterministically: another session holds a lock the fit
needs at that point, the test waits until the fit is blocked on it, then cancels or
terminates the fit's backend (or lets statement_timeout / lock_timeout fire).
"""
from __future__ import annotations

import threading
import time

import psycopg
import pytest

import artifacts
import cases
from conftest import fit, drop_live_views

# where in the fit -> the relation a blocker session locks to stop the fit there, and how
POINTS = {
    "source_read": ("faults_src", "ACCESS EXCLUSIVE"),
    "registry_lock": ("ml.woe_anchor_model_registry_v1", "EXCLUSIVE"),
    "cuts_insert": ("ml.woe_anchor_cuts_v1", "ACCESS EXCLUSIVE"),
    "map_insert": ("ml.woe_anchor_map_v1", "ACCESS EXCLUSIVE"),
    # the lock a fit takes on the scores table before the registry's (for its ATTACH PARTITION)
    "scores_lock": ("ml.woe_anchor_scores_v1", "ACCESS EXCLUSIVE"),
    # the activation log: the fit has written its registry, cuts and map rows and attached its
    # partition by then
    "after_attach": ("ml.woe_anchor_activations", "EXCLUSIVE"),
}


def _hold(blocker, point):
    """Lock the point's relation in the blocker's transaction (held until it ends)."""
    relation, mode = POINTS[point]
    blocker.execute(f"LOCK TABLE {relation} IN {mode} MODE")


@pytest.fixture
def serving(conn):
    cases.load(conn, "faults_src", cases.make_rows(seed=81, n=2000))
    key = fit(conn, "faults_src", model_key="faults_active", replace=True)
    return key


def _blocked(conn, pid, point, timeout=30.0):
    """Wait until backend ``pid`` waits for the lock on the point's relation (not any lock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.execute("SELECT EXISTS (SELECT FROM pg_locks WHERE pid = %s AND NOT granted "
                        "AND relation = %s::regclass)", [pid, POINTS[point][0]]).fetchone()[0]:
            return True
        time.sleep(0.02)
    return False


def _fit_in_background(dsn, settings=()):
    """Start a fit on its own connection; returns (thread, result dict with 'pid' and 'error')."""
    out, started = {}, threading.Event()

    def run():
        try:
            with psycopg.connect(dsn, autocommit=True) as c:
                out["pid"] = c.info.backend_pid
                for s in settings:
                    c.execute(s)
                started.set()
                fit(c, "faults_src", model_key="faults_interrupted")
        except Exception as e:
            out["error"] = e
        finally:
            started.set()

    t = threading.Thread(target=run)
    t.start()
    started.wait(10)
    return t, out


def _assert_untouched(conn, before, active):
    assert artifacts.stored_counts(conn) == before
    assert not any(artifacts.rows_of(conn, "faults_interrupted").values())
    assert artifacts.active_keys(conn) == [active]
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_score('faults_src')").fetchone()[0] == 2000


@pytest.mark.parametrize("how", ["cancel", "terminate"])
@pytest.mark.parametrize("point", list(POINTS))
def test_interrupted_fit_leaves_nothing(conn, dsn, serving, point, how):
    before = artifacts.stored_counts(conn)
    with psycopg.connect(dsn) as blocker:
        _hold(blocker, point)
        thread, out = _fit_in_background(dsn)
        assert _blocked(conn, out["pid"], point), f"the fit never blocked at {point}"
        conn.execute(f"SELECT pg_{how}_backend(%s)", [out["pid"]])
        thread.join(30)
        blocker.rollback()
    expected = psycopg.errors.QueryCanceled if how == "cancel" else psycopg.OperationalError
    assert isinstance(out.get("error"), expected), out
    _assert_untouched(conn, before, serving)


def test_an_interrupted_fit_that_read_in_chunks_leaves_nothing(conn, dsn, serving):
    """The same with the rows read in chunks kept on disk (the smallest woe_anchor.fit_memory)."""
    before = artifacts.stored_counts(conn)
    with psycopg.connect(dsn) as blocker:
        _hold(blocker, "after_attach")
        thread, out = _fit_in_background(dsn, ["SET woe_anchor.fit_memory = '64kB'"])
        assert _blocked(conn, out["pid"], "after_attach"), "the fit never blocked"
        conn.execute("SELECT pg_cancel_backend(%s)", [out["pid"]])
        thread.join(30)
        blocker.rollback()
    assert isinstance(out.get("error"), psycopg.errors.QueryCanceled), out
    _assert_untouched(conn, before, serving)


@pytest.mark.parametrize("setting, error", [("statement_timeout", psycopg.errors.QueryCanceled),
                                            ("lock_timeout", psycopg.errors.LockNotAvailable)])
def test_timeouts_while_blocked_at_the_registry_leave_nothing(conn, dsn, serving, setting, error):
    """A lock wait is visible in pg_locks and bounded by lock_timeout / statement_timeout. The
    timeout is long enough for the 2,000-row fit to reach the registry first: the test fails,
    rather than passing on a cancellation elsewhere, if it does not."""
    before = artifacts.stored_counts(conn)
    with psycopg.connect(dsn) as blocker:
        _hold(blocker, "registry_lock")
        thread, out = _fit_in_background(dsn, [f"SET {setting} = '3s'"])
        assert _blocked(conn, out["pid"], "registry_lock"), "the fit never blocked at the registry"
        thread.join(30)
        blocker.rollback()
    assert isinstance(out.get("error"), error) and setting.replace("_", " ") in str(out["error"]), out
    _assert_untouched(conn, before, serving)


def test_readers_see_the_old_model_until_the_new_one_commits(conn, dsn, serving):
    drop_live_views(conn)
    conn.execute("SELECT ml.woe_anchor_create_views('faults_src')")
    view = "SELECT count(*), min(model_key), max(model_key) FROM ml.woe_anchor_scores_live_train_v"
    with psycopg.connect(dsn) as blocker:
        _hold(blocker, "after_attach")
        thread, out = _fit_in_background(dsn)
        assert _blocked(conn, out["pid"], "after_attach")
        with psycopg.connect(dsn, autocommit=True) as reader:
            assert reader.execute(view).fetchone() == (2000, serving, serving)
        blocker.rollback()
        thread.join(60)
    assert "error" not in out, out
    assert conn.execute(view).fetchone() == (2000, "faults_interrupted", "faults_interrupted")
    conn.execute("SELECT ml.woe_anchor_drop_model('faults_interrupted')")
    conn.execute("SELECT ml.woe_anchor_activate(%s)", [serving])
