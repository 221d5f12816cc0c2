"""Other sessions for the tests of what happens between sessions: a statement run on a thread of
its own, and waiting until a backend waits for a lock."""
from __future__ import annotations

import threading
import time

import psycopg


def in_thread(dsn, statement, args=()):
    """Run ``statement`` in a new session on a thread; returns (thread, result dict with its 'pid',
    and its 'rows' or 'error', and the 'notices' it got)."""
    out, ready = {}, threading.Event()

    def run():
        with psycopg.connect(dsn, autocommit=True) as c:
            c.add_notice_handler(lambda d: out.setdefault("notices", []).append(d.message_primary))
            out["pid"] = c.info.backend_pid
            ready.set()
            try:
                out["rows"] = c.execute(statement, args).fetchall()
            except Exception as e:  # reported by the caller's assertions
                out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    ready.wait()
    return t, out


def waits_for_a_lock(conn, pid) -> None:
    """Returns once backend ``pid`` waits for a heavyweight lock."""
    for _ in range(500):
        if conn.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0]:
            return
        time.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for a lock")
