"""Simultaneous fits serialize at the registry lock; readers keep seeing one complete model."""
from __future__ import annotations

import threading
import time

import psycopg
import pytest

import artifacts
import cases
import sessions
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


def test_a_pin_written_while_a_prune_waits_keeps_its_model(conn, dsn):
    """The pin and the prune serialize at the registry's lock: whichever commits first, a model
    whose pin committed is never pruned."""
    drop_live_views(conn)
    cases.load(conn, "cc_pin", cases.make_rows(seed=63, n=1500))
    keys = [fit(conn, "cc_pin", model_key=f"cc_pin_{i}", replace=True) for i in range(4)]
    try:
        with psycopg.connect(dsn) as pinning:
            pinning.execute("SELECT ml.woe_anchor_annotate(%s, pinned => true)", [keys[0]])
            pruning, out = sessions.in_thread(dsn, "SELECT ml.woe_anchor_prune(0)", [])
            sessions.waits_for_a_lock(conn, out["pid"])
            pinning.commit()
        pruning.join()
        assert "error" not in out, out
        # the newest (active) and the one a rollback restores stay, the pinned one too
        assert [r[0] for r in out["rows"] if r[0].startswith("cc_pin_")] == [keys[1]]
        assert {r[0] for r in conn.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1 "
                                           "WHERE model_key LIKE 'cc\\_pin\\_%'")} == {keys[0], keys[2], keys[3]}
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE model_key LIKE 'cc\\_pin\\_%'")


def test_dropping_a_model_activated_while_the_drop_waited_warns(conn, dsn):
    drop_live_views(conn)
    cases.load(conn, "cc_drop", cases.make_rows(seed=64, n=1500))
    first = fit(conn, "cc_drop", model_key="cc_drop_1", replace=True)
    fit(conn, "cc_drop", model_key="cc_drop_2", replace=True)  # the active one, until the first comes back
    try:
        with psycopg.connect(dsn) as activating:
            activating.execute("SELECT ml.woe_anchor_activate(%s)", [first])
            dropping, out = sessions.in_thread(dsn, "SELECT ml.woe_anchor_drop_model(%s)", [first])
            sessions.waits_for_a_lock(conn, out["pid"])
            activating.commit()
        dropping.join()
        assert out.get("rows") == [(True,)], out
        assert any("was the active one" in n for n in out.get("notices", [])), out
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE model_key LIKE 'cc\\_drop\\_%'")


def test_a_monitor_run_records_nothing_for_a_model_replaced_while_it_ran(conn, dsn):
    """Drift, realized and the record are one model's: a fit that replaces the model under its key
    while the run reads the source makes the run fail (40001), not mix two models' figures."""
    drop_live_views(conn)
    rows = cases.make_rows(seed=65, n=2000)
    cases.load(conn, "cc_mon", rows)
    cases.load(conn, "cc_mon_other", cases.make_rows(seed=66, n=2000))
    key = fit(conn, "cc_mon", model_key="cc_mon_k", activate=False, replace=True)
    try:
        with psycopg.connect(dsn) as holding:
            holding.execute("LOCK TABLE cc_mon IN ACCESS EXCLUSIVE MODE")
            monitoring, out = sessions.in_thread(dsn, "SELECT * FROM ml.woe_anchor_monitor('cc_mon', 'cc_mon_k', "
                                              "window_days => 3650, channel => NULL)", [])
            sessions.waits_for_a_lock(conn, out["pid"])
            fit(conn, "cc_mon_other", model_key=key, activate=False, replace=True, half_life_days=20.0)
            holding.commit()
        monitoring.join()
        assert isinstance(out.get("error"), psycopg.errors.SerializationFailure), out
        assert conn.execute("SELECT (SELECT count(*) FROM ml.woe_anchor_psi WHERE model_key = %(k)s) "
                            "+ (SELECT count(*) FROM ml.woe_anchor_realized WHERE model_key = %(k)s)",
                            {"k": key}).fetchone()[0] == 0
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE model_key = 'cc_mon_k'")


def test_statements_built_for_a_model_fail_once_it_is_replaced(conn):
    """The statements behind ml.woe_anchor_training_features, _reasons and _stored_scores hold the
    model's cutoff and mapping and read what it stored by key: run after a replacement, they would
    mix the two (training features: in-sample scores for rows the new model did not store). They
    fail instead."""
    drop_live_views(conn)
    cases.load(conn, "cc_tf", cases.make_rows(seed=67, n=1500))
    key = fit(conn, "cc_tf", model_key="cc_tf_k", activate=False, replace=True)
    try:
        built = [conn.execute(sql, [key]).fetchone()[0] for sql in (
            "SELECT woe_anchor_internal.training_features_sql(%s, 'cc_tf'::regclass)",
            "SELECT woe_anchor_internal.reasons_sql('cc_tf'::regclass, %s)",
            "SELECT woe_anchor_internal.stored_scores_sql(%s)")]
        assert [conn.execute(f"SELECT count(*) FROM ({b}) AS f").fetchone()[0] > 0 for b in built] == [True] * 3
        fit(conn, "cc_tf", model_key=key, activate=False, replace=True, n_folds=3)
        for statement in built:
            with pytest.raises(psycopg.errors.SerializationFailure, match="dropped or replaced"):
                conn.execute(f"SELECT count(*) FROM ({statement}) AS f")
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE model_key = 'cc_tf_k'")


def test_a_prune_waiting_for_readers_of_stored_scores_holds_up_no_activation(conn, dsn):
    """Dropping partitions waits for readers of stored scores; it waits before it holds the
    registry's lock, so fits and activations go on, and a reader that activates in its transaction
    does not deadlock with it."""
    drop_live_views(conn)
    cases.load(conn, "cc_lk", cases.make_rows(seed=68, n=1500))
    keys = [fit(conn, "cc_lk", model_key=f"cc_lk_{i}", replace=True) for i in range(4)]
    try:
        with psycopg.connect(dsn) as reading:
            reading.execute("SET statement_timeout = '20s'")
            assert reading.execute("SELECT count(*) FROM ml.woe_anchor_stored_scores(%s)", [keys[3]]).fetchone()[0]
            pruning, out = sessions.in_thread(dsn, "SELECT ml.woe_anchor_prune(0)", [])
            sessions.waits_for_a_lock(conn, out["pid"])
            with psycopg.connect(dsn, autocommit=True) as other:
                other.execute("SET statement_timeout = '20s'")
                other.execute("SELECT ml.woe_anchor_activate(%s)", [keys[0]])
            reading.execute("SELECT ml.woe_anchor_activate(%s)", [keys[2]])
            reading.commit()
        pruning.join()
        assert "error" not in out, out
        # keys[2] serves, keys[0] served before it (other tests' models go too: the prune is the superuser's)
        assert sorted(r[0] for r in out["rows"] if r[0].startswith("cc_lk_")) == [keys[1], keys[3]]
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE model_key LIKE 'cc\\_lk\\_%'")


def test_retention_waits_for_no_reader_of_stored_scores(conn, dsn):
    """A fit's retention never waits for readers of stored scores with the registry's lock held: it
    prunes nothing then, and the next fit does."""
    drop_live_views(conn)
    conn.execute("DELETE FROM ml.woe_anchor_policy")
    cases.load(conn, "cc_ret", cases.make_rows(seed=69, n=1500))
    keys = [fit(conn, "cc_ret", model_key=f"cc_ret_{i}", activate=False, replace=True) for i in range(2)]
    try:
        conn.execute("SELECT ml.woe_anchor_set_policy('keep_models', 1)")
        with psycopg.connect(dsn) as reading:
            reading.execute("SELECT count(*) FROM ml.woe_anchor_stored_scores(%s)", [keys[0]]).fetchone()
            conn.notices.clear()
            conn.execute("SET statement_timeout = '20s'")
            keys.append(fit(conn, "cc_ret", model_key="cc_ret_2", activate=False, replace=True))
            assert any("nothing pruned now" in n for n in conn.notices), conn.notices
        assert {r[0] for r in conn.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1 "
                                           "WHERE model_key LIKE 'cc\\_ret\\_%'")} == set(keys)
        keys.append(fit(conn, "cc_ret", model_key="cc_ret_3", activate=False, replace=True))
        assert {r[0] for r in conn.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1 "
                                           "WHERE model_key LIKE 'cc\\_ret\\_%'")} == {keys[3]}
    finally:
        conn.execute("RESET statement_timeout")
        conn.execute("DELETE FROM ml.woe_anchor_policy")
        conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE model_key LIKE 'cc\\_ret\\_%'")


def test_a_drop_waiting_for_readers_of_stored_scores_and_a_fit_both_finish(conn, dsn):
    """The drop waits for the reader with neither lock of the fit's held, and the fit waits for the
    drop with no lock of the registry held: no deadlock, and activations go on meanwhile."""
    drop_live_views(conn)
    cases.load(conn, "cc_df", cases.make_rows(seed=70, n=1500))
    keys = [fit(conn, "cc_df", model_key=f"cc_df_{i}", replace=True) for i in range(2)]
    try:
        with psycopg.connect(dsn) as reading:
            reading.execute("SELECT count(*) FROM ml.woe_anchor_stored_scores(%s)", [keys[1]]).fetchone()
            dropping, dropped = sessions.in_thread(dsn, "SELECT ml.woe_anchor_drop_model(%s)", [keys[0]])
            sessions.waits_for_a_lock(conn, dropped["pid"])
            fitting, fitted = sessions.in_thread(dsn, "CALL ml.fit_woe_anchor('cc_df', model_key => 'cc_df_2', "
                                              "activate => false, replace => true)", [])
            sessions.waits_for_a_lock(conn, fitted["pid"])
            with psycopg.connect(dsn, autocommit=True) as other:
                other.execute("SET statement_timeout = '20s'")
                other.execute("SELECT ml.woe_anchor_activate(%s)", [keys[1]])
            reading.commit()
        dropping.join()
        fitting.join()
        assert dropped.get("rows") == [(True,)], dropped
        assert fitted.get("rows") == [("cc_df_2",)], fitted
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE model_key LIKE 'cc\\_df\\_%'")


def test_a_snapshot_older_than_a_replacement_is_told_to_run_again(conn, dsn):
    drop_live_views(conn)
    cases.load(conn, "cc_rr", cases.make_rows(seed=71, n=1500))
    key = fit(conn, "cc_rr", model_key="cc_rr_k", activate=False, replace=True)
    try:
        with psycopg.connect(dsn) as old:
            old.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            old.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1").fetchone()  # the snapshot
            fit(conn, "cc_rr", model_key=key, activate=False, replace=True, n_folds=3)
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as told:
                old.execute("SELECT count(*) FROM ml.woe_anchor_stored_scores(%s)", [key])
            assert "Run it again" in told.value.diag.message_hint
            assert "dropped or replaced" in told.value.diag.message_detail
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE model_key = 'cc_rr_k'")


def test_a_repeatable_read_prune_keeps_the_model_a_rollback_now_restores(conn, dsn):
    """A REPEATABLE READ snapshot taken before the rollback target changed (its model dropped) would
    prune the model that serves before the active one now; the prune fails (40001) instead."""
    drop_live_views(conn)
    cases.load(conn, "cc_rb", cases.make_rows(seed=72, n=1500))
    keys = [fit(conn, "cc_rb", model_key=f"cc_rb_{i}", replace=True) for i in range(3)]  # [2] serves, [1] before
    try:
        with psycopg.connect(dsn) as old:
            old.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            old.execute("SELECT count(*) FROM ml.woe_anchor_models()").fetchone()  # the snapshot
            conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [keys[1]])  # keys[0] serves before now
            with pytest.raises(psycopg.errors.SerializationFailure):
                old.execute("SELECT ml.woe_anchor_prune(0)")
        assert conn.execute("SELECT ml.woe_anchor_rollback()").fetchone()[0] == keys[0]
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE model_key LIKE 'cc\\_rb\\_%'")


def test_lock_timeout_bounds_a_fit_waiting_behind_busy_activations(conn, dsn):
    """Activations one after another keep the registry busy: a fit's wait for it is one plain wait,
    which lock_timeout ends (55P03), not a retry that starts the clock again."""
    drop_live_views(conn)
    cases.load(conn, "cc_busy", cases.make_rows(seed=73, n=1500))
    keys = [fit(conn, "cc_busy", model_key=f"cc_busy_{i}", replace=True) for i in range(2)]
    stop, errors = threading.Event(), []

    def activating(key):
        try:
            with psycopg.connect(dsn) as a:
                while not stop.is_set():
                    a.execute("SELECT ml.woe_anchor_activate(%s)", [key])
                    a.execute("SELECT pg_sleep(0.3)")
                    a.commit()
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=activating, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    try:
        conn.execute("SET lock_timeout = '1s'")
        conn.execute("SET statement_timeout = '20s'")
        started = time.monotonic()
        try:
            fit(conn, "cc_busy", model_key="cc_busy_x", activate=False, replace=True)
        except psycopg.errors.LockNotAvailable:
            pass  # bounded by lock_timeout: what this test is about
        assert time.monotonic() - started < 15, "the wait outlived lock_timeout many times over"
    finally:
        stop.set()
        for t in threads:
            t.join()
        conn.execute("RESET lock_timeout")
        conn.execute("RESET statement_timeout")
        conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE model_key LIKE 'cc\\_busy\\_%'")
    assert not errors, errors
