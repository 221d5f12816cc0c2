"""Simultaneous fits serialize at the registry lock; readers keep seeing one complete model."""
from __future__ import annotations

import threading

import psycopg

import artifacts
import cases
from conftest import fit, drop_live_views


def _run_all(dsn, source, keys):
    """Start one fit per key at the same moment; return their results (key or exception)."""
    barrier, results = threading.Barrier(len(keys)), {}

    def one(i, key):
        try:
            with psycopg.connect(dsn, autocommit=True) as c:
                barrier.wait()
                results[i] = fit(c, source, **({"model_key": key} if key else {}))
        except Exception as e:  # reported by the caller's assertions
            results[i] = e

    threads = [threading.Thread(target=one, args=(i, k)) for i, k in enumerate(keys)]
    for t in threads:
        t.start()
    return threads, results


def test_three_simultaneous_fits_and_a_reader(conn, dsn):
    rows = cases.make_rows(seed=61, n=4000)
    drop_live_views(conn)
    cases.load(conn, "cc_src", rows)
    first = fit(conn, "cc_src", model_key="cc_first", replace=True)
    conn.execute("SELECT ml.woe_anchor_create_views('cc_src')")
    seen, failures, stop = [], [], threading.Event()

    def reader():
        # a read that raises (the view refuses 0 or 2 active models) must fail the test, not
        # end the thread with a warning while the reads before it pass
        try:
            with psycopg.connect(dsn, autocommit=True) as r:
                while not stop.is_set():
                    seen.append(r.execute("SELECT count(*), count(DISTINCT model_key), min(model_key) "
                                          "FROM ml.woe_anchor_scores_live_train_v").fetchone())
        except Exception as e:
            failures.append(e)

    watcher = threading.Thread(target=reader)
    watcher.start()
    threads, results = _run_all(dsn, "cc_src", ["cc_a", "cc_b", "cc_c"])
    for t in threads:
        t.join()
    stop.set()
    watcher.join()

    assert not failures, f"the reader failed: {failures}"
    assert sorted(results.values()) == ["cc_a", "cc_b", "cc_c"], results
    assert len(artifacts.active_keys(conn)) == 1 and artifacts.active_keys(conn)[0] in results.values()
    for key in results.values():
        reg = artifacts.registry(conn, key)
        counts = artifacts.rows_of(conn, key)
        assert counts["woe_anchor_scores_v1"] == reg["n_train_sold"]
        assert counts["woe_anchor_cuts_v1"] == reg["n_folds_with_rows"] + 1 and counts["woe_anchor_map_v1"] > 0
    assert seen, "the reader ran"
    keys_seen = {s[2] for s in seen}
    assert all(s[0] == len(rows["t0"]) and s[1] == 1 for s in seen), "every read saw one whole model"
    assert first in keys_seen or keys_seen <= set(results.values())


def test_simultaneous_fits_without_a_key_get_distinct_keys(conn, dsn):
    cases.load(conn, "cc_src2", cases.make_rows(seed=62, n=1500))
    threads, results = _run_all(dsn, "cc_src2", [None, None, None])
    for t in threads:
        t.join()
    keys = list(results.values())
    assert all(isinstance(k, str) and k.startswith("woe_anchor_v1_") for k in keys), keys
    assert len(set(keys)) == 3
