"""Model lifecycle and monitoring: the activation gate and log, rollback, notes and what prune keeps,
drift, realized performance, and the alerts of a monitor run."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import psycopg
import pytest

import cases
import reference
from conftest import compiling_at_any_cost, fit, routine_config, skip_without_jit

POLICY = {"min_oof_auc": 0.55, "max_auc_drop": 0.02, "min_train_sold": 1000}
# 40 of the 50 days: the 7 days after it hold enough sales of both classes to measure an AUC
CUTOFF = "2026-04-11 00:00+00"


@pytest.fixture
def lifecycle(conn):
    """A source with signal and the same rows with their labels shuffled; no model (of any test: what
    served before decides a rollback), no policy."""
    conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1")
    conn.execute("DELETE FROM ml.woe_anchor_policy")
    rows = cases.make_rows(n=20_000, n_days=50, seed=404)
    cases.load(conn, "lc_src", rows)
    shuffled = dict(rows)
    order = np.random.default_rng(404).permutation(len(rows["duration_hours"]))
    for column in ("duration_hours", "final_status"):
        shuffled[column] = np.asarray(rows[column], dtype=object)[order]
    cases.load(conn, "lc_shuffled", shuffled)
    yield
    conn.execute("DELETE FROM ml.woe_anchor_policy")
    conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE model_key LIKE 'lc\\_%'")


def _active(conn):
    return conn.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1 WHERE is_active").fetchone()[0]


def _last_log(conn):
    return conn.execute("SELECT by_role, from_model, to_model, action, reason FROM ml.woe_anchor_activations "
                        "ORDER BY id DESC LIMIT 1").fetchone()


def test_the_gate_refuses_a_degraded_model_and_the_active_one_stays(conn, lifecycle):
    good = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_good")
    for name, value in POLICY.items():
        conn.execute("SELECT ml.woe_anchor_set_policy(%s, %s)", [name, value])
    conn.notices.clear()
    bad = fit(conn, "lc_shuffled", cutoff=CUTOFF, model_key="lc_bad")
    assert _active(conn) == good, "the degraded model does not serve"
    assert any("the gate refused this model" in n for n in conn.notices), conn.notices
    by_role, from_model, to_model, action, reason = _last_log(conn)
    assert (by_role, from_model, to_model, action) == ("postgres", good, bad, "refused")
    checks = reason["gate"]["checks"]
    oof_auc, n_train_sold = conn.execute("SELECT oof_auc, n_train_sold FROM ml.woe_anchor_model_registry_v1 "
                                         "WHERE model_key = %s", [bad]).fetchone()
    assert checks["min_oof_auc"] == {"limit": 0.55, "value": oof_auc, "passed": False}
    assert checks["min_train_sold"] == {"limit": 1000, "value": n_train_sold, "passed": True}
    # the drop is measured on the new model's eval window, as ml.woe_anchor_compare measures it
    compared = {r[0]: r[1:3] for r in conn.execute("SELECT metric, a, b FROM ml.woe_anchor_compare(%s, %s, 'lc_shuffled')",
                                                   [good, bad])}
    drop = checks["max_auc_drop"]
    assert drop["active_auc"] == pytest.approx(compared["auc"][0], abs=1e-12)
    assert drop["value"] == pytest.approx(compared["auc"][0] - compared["auc"][1], abs=1e-12)
    assert drop["passed"] == (drop["value"] <= 0.02)
    # a refit of good data passes and activates, with the verdict logged
    better = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_better")  # the same data again: nothing dropped
    assert _active(conn) == better
    by_role, from_model, to_model, action, reason = _last_log(conn)
    assert (from_model, to_model, action) == (good, better, "activate") and reason["gate"]["passed"] is True
    assert reason["gate"]["checks"]["max_auc_drop"]["value"] == pytest.approx(0.0, abs=1e-12)


def test_a_refused_model_never_replaces_the_active_one_of_its_key(conn, lifecycle):
    good = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_same")
    conn.execute("SELECT ml.woe_anchor_set_policy('min_oof_auc', 0.55)")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="the gate refused the new model"):
        fit(conn, "lc_shuffled", cutoff=CUTOFF, model_key="lc_same", replace=True)
    assert _active(conn) == good
    assert conn.execute("SELECT n_train_sold FROM ml.woe_anchor_model_registry_v1 WHERE model_key = 'lc_same'"
                        ).fetchone()[0] > 0


def test_rollback_restores_the_model_that_served_before_and_prune_keeps_it(conn, lifecycle):
    first = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_first")
    second = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_second", half_life_days=30.0)
    assert _last_log(conn)[1:4] == (first, second, "activate")
    assert conn.execute("SELECT ml.woe_anchor_rollback()").fetchone()[0] == first
    assert _active(conn) == first
    assert _last_log(conn)[1:] == (second, first, "rollback", {"rollback_from": second})
    assert conn.execute("SELECT ml.woe_anchor_rollback()").fetchone()[0] == second, "a rollback of a rollback"
    third = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_third", activate=False, half_life_days=90.0)
    dropped = [r[0] for r in conn.execute("SELECT ml.woe_anchor_prune(0)")]
    assert third in dropped and first not in dropped, "prune keeps the active model and the one before it"
    assert {first, second} <= {r[0] for r in conn.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1")}
    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [first])
    with pytest.raises(psycopg.errors.NoDataFound, match="no model to roll back to"):
        conn.execute("SELECT ml.woe_anchor_rollback()")
    assert _active(conn) == second


def test_an_activation_by_update_is_logged_for_rollback_and_prune(conn, lifecycle):
    """The trainer's way to switch models, two UPDATEs of is_active (a superuser's), is logged like
    ml.woe_anchor_activate: rollback restores the model it replaced, and prune keeps that one."""
    first = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_upd_first")
    second = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_upd_second", activate=False, half_life_days=30.0)
    with conn.transaction():
        conn.execute("UPDATE ml.woe_anchor_model_registry_v1 SET is_active = false WHERE is_active")
        conn.execute("UPDATE ml.woe_anchor_model_registry_v1 SET is_active = true WHERE model_key = %s", [second])
    assert _last_log(conn) == ("postgres", first, second, "activate", {"direct_update": True})
    assert [r[0] for r in conn.execute("SELECT ml.woe_anchor_prune(0)")] == []
    assert conn.execute("SELECT ml.woe_anchor_rollback()").fetchone()[0] == first
    assert _last_log(conn)[1:4] == (second, first, "rollback"), "ml.woe_anchor_activate logs once"
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_activations WHERE to_model = %s", [first]).fetchone()[0] == 2


def test_the_policy_takes_known_checks_with_finite_values(conn, lifecycle):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown policy: 'min_auc'"):
        conn.execute("SELECT ml.woe_anchor_set_policy('min_auc', 0.7)")
    with pytest.raises(psycopg.errors.NullValueNotAllowed):
        conn.execute("SELECT ml.woe_anchor_set_policy(NULL, 0.7)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="finite number"):
        conn.execute("SELECT ml.woe_anchor_set_policy('min_oof_auc', 'NaN')")
    # retention a fit could not apply (an int of models, an age after the first timestamptz)
    # and checks no model could pass or fail (an AUC past 1, a negative count)
    for name, value in (("keep_models", 1e308), ("keep_models", 2.0 ** 31), ("keep_models", 2.5),
                        ("keep_days", 1e300), ("keep_days", -1), ("min_oof_auc", 2), ("min_eval_auc", -1),
                        ("max_auc_drop", 1.5), ("min_train_sold", -5), ("min_train_sold", 10.5)):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=f"policy {name} must be"):
            conn.execute("SELECT ml.woe_anchor_set_policy(%s, %s)", [name, value])
    for name, value in (("keep_models", 2.0 ** 31 - 1), ("keep_days", 1e6)):
        assert conn.execute("SELECT value FROM ml.woe_anchor_set_policy(%s, %s)", [name, value]).fetchone()[0] == value
        fit(conn, "lc_src", model_key=f"lc_keep_{name}", activate=False)   # the fit's pruning takes it
        conn.execute("SELECT count(*) FROM ml.woe_anchor_set_policy(%s, NULL)", [name])
    rows = conn.execute("SELECT name, value FROM ml.woe_anchor_set_policy('min_oof_auc', 0.7)").fetchall()
    assert rows == [("min_oof_auc", 0.7)]
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_set_policy('min_oof_auc', NULL)").fetchone()[0] == 0


def _reference_psi(conn, key, start, end) -> dict:
    """Band PSI computed apart: the window's rows as stored (a `real` column reads as its float8
    value), banded by tests/reference.py with the model's stored thresholds; the training counts
    from the final map; numpy for the rest."""
    registry = conn.execute("SELECT dsold_t1, dsold_t2, dsold_t3, dsold_t4 FROM ml.woe_anchor_model_registry_v1 "
                            "WHERE model_key = %s", [key]).fetchone()
    c1, c2 = conn.execute("SELECT c1, c2 FROM ml.woe_anchor_cuts_v1 WHERE model_key = %s AND fold_id IS NULL",
                          [key]).fetchone()
    columns = ", ".join(f"{name}::int::float8" if cases.COLUMN_TYPES[name] == "boolean" else f"{name}::float8"
                        for name in reference.FEATURE_COLUMNS)
    window = conn.execute(f"SELECT t0, {columns} FROM lc_src WHERE t0 >= %s AND t0 < %s", [start, end]).fetchall()
    c = {name: np.array([np.nan if r[i + 1] is None else r[i + 1] for r in window], dtype=np.float64)
         for i, name in enumerate(reference.FEATURE_COLUMNS)}
    t0 = np.array([r[0].replace(tzinfo=None) for r in window], dtype="datetime64[us]")
    ic = c["image_count"]
    labels = reference.compute_bands(c, t0, ~np.isnan(ic) & (ic > 0), tuple(registry), (c1, c2))
    trained = {}
    for band, value, n in conn.execute("SELECT band_name, band_value, n_rows FROM ml.woe_anchor_map_v1 "
                                       "WHERE model_key = %s AND fold_id IS NULL", [key]):
        trained.setdefault(band, {})[value] = n
    out = {}
    for band, values in labels.items():
        live = {}
        for v in values[values != None]:  # noqa: E711 (object array: None outside the subset)
            live[v] = live.get(v, 0) + 1
        names = sorted(set(trained.get(band, {})) | set(live))
        t = np.array([trained.get(band, {}).get(v, 0) for v in names], dtype=float)
        w = np.array([live.get(v, 0) for v in names], dtype=float)
        ts, ws = np.maximum(t / t.sum(), 1e-4), np.maximum(w / w.sum(), 1e-4)
        out[band] = float(np.sum((ws - ts) * np.log(ws / ts)))
    return out


def test_drift_reads_a_planted_shift_as_major_and_matches_numpy(conn, lifecycle):
    key = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_drift")
    start, end = "2026-04-11 00:00+00", "2026-04-21 00:00+00"

    def drift():
        return {(r[0], r[1]): r[2:] for r in conn.execute(
            "SELECT * FROM ml.woe_anchor_drift('lc_src', %s, %s, %s)", [start, end, key])}

    calm = drift()
    psi = {band: next(v[5] for k, v in calm.items() if k[0] == band) for band, _ in calm}
    assert psi == pytest.approx(_reference_psi(conn, key, start, end), abs=1e-9)
    assert all(v[6] == "stable" for v in calm.values()), psi
    # every listing of the window now in top condition: the cond band moves, nothing else does
    conn.execute("UPDATE lc_src SET condition_score = 0.97 WHERE t0 >= %s AND t0 < %s", [start, end])
    shifted = drift()
    psi = {band: next(v[5] for k, v in shifted.items() if k[0] == band) for band, _ in shifted}
    assert psi == pytest.approx(_reference_psi(conn, key, start, end), abs=1e-9)
    assert shifted[("cond", "cond_hi")][6] == "major" and psi["cond"] > 0.25
    assert all(v[6] == "stable" for k, v in shifted.items() if k[0] != "cond")
    assert shifted[("cond", "cond_hi")][1] == sum(v[1] for k, v in shifted.items() if k[0] == "cond")
    assert shifted[("cond", "cond_hi")][3] == 1.0
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute("SELECT * FROM ml.woe_anchor_drift('lc_src', %s, %s, 'nope')", [start, end])
    # a window without rows has no shares to compare: no PSI, and a monitor of it raises one alert that
    # says so rather than a major drift of every band
    empty = conn.execute("SELECT psi_term, band_psi, reading FROM ml.woe_anchor_drift('lc_src', '1990-01-01', "
                         "'1990-01-08', %s)", [key]).fetchall()
    assert empty and set(empty) == {(None, None, "no rows")}
    raised = conn.execute("SELECT kind, value FROM ml.woe_anchor_monitor('lc_src', %s, window_days => 1e-6, "
                          "psi_limit => 1e-9, channel => NULL) WHERE kind <> 'realized_auc'", [key]).fetchall()
    assert raised == [("no_rows", 0.0)]


def test_notes_describe_tag_and_pin_and_a_pin_outlives_every_prune(conn, lifecycle):
    keys = [fit(conn, "lc_src", cutoff=CUTOFF, model_key=f"lc_n{i}", activate=(i == 0), half_life_days=30.0 + i)
            for i in range(4)]
    note = conn.execute("SELECT description, tags, pinned FROM ml.woe_anchor_annotate(%s, 'the launch model', "
                        "ARRAY['launch', 'q2'], true)", [keys[1]]).fetchone()
    assert note == ("the launch model", ["launch", "q2"], True)
    kept = conn.execute("SELECT description, tags, pinned FROM ml.woe_anchor_annotate(%s, tags => ARRAY['q3'])",
                        [keys[1]]).fetchone()
    assert kept == ("the launch model", ["q3"], True), "NULL keeps what is there"
    listed = {r[0]: r[1:] for r in conn.execute("SELECT model_key, description, tags, pinned FROM ml.woe_anchor_models()")}
    assert listed[keys[1]] == ("the launch model", ["q3"], True) and listed[keys[2]] == (None, [], False)
    dropped = {r[0] for r in conn.execute("SELECT ml.woe_anchor_prune(0)")}
    assert {keys[2], keys[3]} <= dropped and not {keys[0], keys[1]} & dropped, "the active and the pinned one stay"
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute("SELECT ml.woe_anchor_annotate('lc_none', 'x')")
    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [keys[1]])
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_model_notes WHERE model_key = %s",
                        [keys[1]]).fetchone()[0] == 0, "the notes go with the model"


def _settled(conn, key):
    """(week, logit, label) of every settled listing created since the cutoff, from the scoring
    function and the source's own columns (NaN durations read as unknown, as the fit reads them)."""
    return conn.execute(
        "SELECT (date_trunc('week', s.t0 AT TIME ZONE 'UTC'))::date::text, sc.woe_logit, "
        "coalesce(nullif(s.duration_hours, 'NaN') >= 504, false) OR coalesce(s.final_status = 'older21days', false) "
        "FROM lc_src AS s JOIN ml.woe_anchor_score('lc_src'::regclass, %s) AS sc USING (generation, listing_id, t0) "
        "WHERE s.t0 >= %s AND (s.sold_time IS NOT NULL OR coalesce(nullif(s.duration_hours, 'NaN') >= 504, false) "
        "OR coalesce(s.final_status = 'older21days', false))", [key, CUTOFF]).fetchall()


def test_realized_performance_per_week_matches_numpy(conn, lifecycle):
    key = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_real")
    got = {r[0]: r[1:] for r in conn.execute(
        "SELECT week::text, n_rows, n_slow21, auc, logloss, mean_p, observed_rate FROM ml.woe_anchor_realized('lc_src', %s)",
        [key])}
    rows = _settled(conn, key)
    assert got and sum(v[0] for v in got.values()) == len(rows)
    for week in got:
        s = np.array([r[1] for r in rows if r[0] == week])
        y = np.array([r[2] for r in rows if r[0] == week])
        pos, neg = s[y], s[~y]
        auc = (np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])) / (len(pos) * len(neg))
        p = 1 / (1 + np.exp(-s))
        pc = np.clip(p, 1e-15, 1 - 1e-15)
        loss = -np.mean(np.where(y, np.log(pc), np.log1p(-pc)))
        assert got[week][:2] == (len(y), int(y.sum()))
        assert got[week][2:] == pytest.approx((auc, loss, p.mean(), y.mean()), abs=1e-9), week


def test_monitoring_workers_change_no_figure_and_the_sessions_setting_stays(conn, lifecycle):
    """Drift and realized hold max_parallel_workers_per_gather to the cores their busy leader
    leaves, for their own statement only: the caller's value is there after each call and after a
    failed one, and every figure is the same with parallel plans forced and with no worker."""
    key = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_workers")
    drift = ("SELECT * FROM ml.woe_anchor_drift('lc_src', %s, %s, %s)", ["2026-04-11", "2026-04-21", key])
    realized = ("SELECT * FROM ml.woe_anchor_realized('lc_src', %s)", [key])

    def figures():
        return [conn.execute(q, args).fetchall() for q, args in (drift, realized)]

    with conn.transaction():
        for forced in ("parallel_setup_cost = 0", "parallel_tuple_cost = 0", "min_parallel_table_scan_size = 0",
                       "max_parallel_workers_per_gather = 64"):
            conn.execute(f"SET LOCAL {forced}")
        wide = figures()
        assert conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0] == "64"
        with pytest.raises(psycopg.errors.NoDataFound), conn.transaction():
            conn.execute("SELECT * FROM ml.woe_anchor_realized('lc_src', 'nope')")
        assert conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0] == "64"
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        alone = figures()
        assert conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0] == "0"
    assert wide == alone and all(wide)


MONITORING_ROUTINES = ("woe_anchor_internal.drift(oid, timestamptz, timestamptz, text)",
                       "woe_anchor_internal.realized(oid, text, timestamptz)")


def test_drift_and_realized_compiled_give_the_same_bits(conn, lifecycle):
    """Past a planned cost (the routines' jit_above_cost, about 700k rows) drift's and realized's
    statements run compiled by the JIT. With that cost lowered to 0 here, both compile on these
    few rows, as auto_explain shows, and every figure is the same float8 as interpreted."""
    skip_without_jit(conn)
    key = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_compiled")
    queries = [("SELECT * FROM ml.woe_anchor_drift('lc_src', %s, %s, %s)", ["2026-04-11", "2026-04-21", key]),
               ("SELECT * FROM ml.woe_anchor_realized('lc_src', %s)", [key])]

    def figures():
        return [conn.execute(q, args).fetchall() for q, args in queries]

    interpreted = figures()
    configs = [routine_config(conn, f) for f in MONITORING_ROUTINES]
    with compiling_at_any_cost(conn, *MONITORING_ROUTINES):
        compiled = figures()
    plans = [n for n in conn.notices if "JIT:" in n and "Optimization true" in n]
    assert any("GROUPING SETS" in n for n in plans) and any("date_bin" in n for n in plans), len(plans)
    assert compiled == interpreted and all(interpreted)
    assert [routine_config(conn, f) for f in MONITORING_ROUTINES] == configs


def test_realized_weeks_are_utc_mondays_at_their_edges(conn, lifecycle):
    """Settled rows on either side of a week's first microsecond, before and after the week
    expression's origin (2000-01-03) and in 1969, and at infinity, fall in the week a calendar gives
    (Python's datetime, independently of SQL), whatever the session's time zone."""
    key = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_weeks")
    edges = ["2000-01-02 23:59:59.999999+00", "2000-01-03 00:00:00+00", "1999-12-27 00:00:00+00",
             "1969-12-31 23:59:59.999999+00", "1970-01-05 00:00:00+00", "2026-04-12 23:59:59.999999+00",
             "2026-04-13 00:00:00+00", "2026-04-13 00:00:00.000001+00", "1900-01-01 00:00:00+00",
             "infinity"]
    conn.execute("DROP TABLE IF EXISTS lc_weeks")
    conn.execute("CREATE TABLE lc_weeks AS SELECT s.*, row_number() OVER () AS n FROM "
                 "(SELECT * FROM lc_src WHERE sold_time IS NOT NULL LIMIT %s) AS s", [len(edges)])
    conn.execute("UPDATE lc_weeks AS w SET t0 = e.t0::timestamptz "
                 "FROM unnest(%s::text[]) WITH ORDINALITY AS e (t0, n) WHERE w.n = e.n", [edges])
    conn.execute("SET TIME ZONE 'America/Los_Angeles'")
    try:
        got = {r[0]: r[1] for r in conn.execute(
            "SELECT week::text, n_rows FROM ml.woe_anchor_realized('lc_weeks', %s, '1800-01-01 00:00+00')", [key])}
    finally:
        conn.execute("RESET TIME ZONE")
    want: dict = {}
    for e in edges:
        if e == "infinity":
            week = "infinity"
        else:
            day = dt.datetime.fromisoformat(e).astimezone(dt.timezone.utc).date()
            week = (day - dt.timedelta(days=day.weekday())).isoformat()
        want[week] = want.get(week, 0) + 1
    assert got == want


def test_monitor_records_weeks_and_alerts_a_planted_drift_by_notify(conn, dsn, lifecycle):
    key = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_watch")
    # the window is the last 7 days: put the listings' t0 there, every one in top condition
    conn.execute("UPDATE lc_src SET t0 = now() - interval '1 day' * random(), condition_score = 0.97 "
                 "WHERE t0 >= %s", [CUTOFF])
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN lc_alerts")
        alerts = conn.execute("SELECT kind, subject, value, threshold FROM ml.woe_anchor_monitor('lc_src', "
                              "channel => 'lc_alerts')").fetchall()
        heard = next(listener.notifies(timeout=10, stop_after=1), None)
    assert ("drift", "cond") in {(k, s) for k, s, _, _ in alerts}, alerts
    assert all(v > t for k, _, v, t in alerts if k == "drift")
    assert heard is not None and heard.channel == "lc_alerts"
    # any role that can connect may LISTEN: the payload names the recorded alerts, whose figures only
    # the roles that may read ml.woe_anchor_alerts see
    sent = json.loads(heard.payload)
    assert list(sent) == ["alert_ids"]
    recorded = conn.execute("SELECT kind, subject, by_role FROM ml.woe_anchor_alerts WHERE id = ANY(%s) "
                            "AND model_key = %s", [sent["alert_ids"], key]).fetchall()
    assert len(recorded) == len(sent["alert_ids"]) == len(alerts) and ("drift", "cond", "postgres") in recorded
    psi = dict(conn.execute("SELECT band_name, psi FROM ml.woe_anchor_psi WHERE model_key = %s", [key]).fetchall())
    assert len(psi) == 10 and psi["cond"] == next(v for k, s, v, _ in alerts if (k, s) == ("drift", "cond"))
    weeks = conn.execute("SELECT count(*) FROM ml.woe_anchor_realized WHERE model_key = %s", [key]).fetchone()[0]
    conn.execute("SELECT * FROM ml.woe_anchor_monitor('lc_src', channel => NULL)")
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_realized WHERE model_key = %s", [key]).fetchone()[0] == weeks
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="channel"):
        conn.execute("SELECT * FROM ml.woe_anchor_monitor('lc_src', channel => 'Bad Channel')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="min_rows must be a whole number >= 0"):
        conn.execute("SELECT * FROM ml.woe_anchor_monitor('lc_src', min_rows => NULL, channel => NULL)")
    # an empty key names no model: it is not the active one
    with pytest.raises(psycopg.errors.NoDataFound, match="model '' does not exist"):
        conn.execute("SELECT * FROM ml.woe_anchor_realized('lc_src', '')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="since must be a finite timestamp"):
        conn.execute("SELECT * FROM ml.woe_anchor_realized('lc_src', %s, '-infinity')", [key])


def test_retention_keeps_exactly_what_the_policy_says_across_ten_fits(conn, lifecycle):
    """keep_models 3: after each fit, the newest 3 of the fitter's models, the active one, the one a
    rollback restores and the pinned ones stay, and nothing else; keep_days keeps the young ones."""
    conn.execute("SELECT ml.woe_anchor_set_policy('keep_models', 3)")
    small = cases.make_rows(n=1500, n_days=20, seed=5)
    cases.load(conn, "lc_small", small)
    keys = []
    for i in range(10):
        keys.append(fit(conn, "lc_small", model_key=f"lc_r{i}", activate=i in (0, 4), half_life_days=10.0 + i))
        if i == 1:
            conn.execute("SELECT ml.woe_anchor_annotate(%s, pinned => true)", [keys[1]])
        stored = {r[0] for r in conn.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1")}
        active = 4 if i >= 4 else 0
        want = set(keys[-3:]) | {keys[active]} | set(keys[1:2]) | ({keys[0]} if i >= 4 else set())
        assert stored == want, (i, sorted(stored), sorted(want))
    conn.execute("SELECT ml.woe_anchor_set_policy('keep_days', 1)")  # every model is younger than a day
    fit(conn, "lc_small", model_key="lc_r10", activate=False)
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1").fetchone()[0] == 7
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="whole number"):
        conn.execute("SELECT ml.woe_anchor_set_policy('keep_models', 2.5)")


def test_retention_counts_models_in_the_order_they_were_stored(conn, dsn, lifecycle):
    """A fit whose transaction began before two others stored their models stores the newest model all
    the same: keep_models 2 keeps it and the later of the two (by when a fit began, it would drop its
    own model)."""
    conn.execute("SELECT ml.woe_anchor_set_policy('keep_models', 2)")
    cases.load(conn, "lc_small", cases.make_rows(n=1500, n_days=20, seed=6))
    with psycopg.connect(dsn, autocommit=True) as late:
        with late.transaction():
            late.execute("SELECT now()")  # the transaction, and the created_at of what it stores, begin here
            first = [fit(conn, "lc_small", model_key=f"lc_o{i}", activate=False) for i in range(2)]
            last = fit(late, "lc_small", model_key="lc_o_late", activate=False)
    stored = dict(conn.execute("SELECT model_key, created_at FROM ml.woe_anchor_model_registry_v1").fetchall())
    assert set(stored) == {first[1], last}
    assert stored[last] < stored[first[1]], "the late fit's model carries the earlier start"


def test_rollback_follows_models_not_keys(conn, lifecycle):
    """A key fitted again is another model: rollback never activates a refitted (here gate-refused)
    rollback target, and an active model replaced in place hands the rollback to the model before it."""
    first = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_k1")
    second = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_k2", half_life_days=40.0)
    conn.execute("SELECT ml.woe_anchor_set_policy('min_oof_auc', 0.55)")
    fit(conn, "lc_shuffled", cutoff=CUTOFF, model_key=first, replace=True)  # refused, stored under lc_k1
    with pytest.raises(psycopg.errors.NoDataFound, match="no model to roll back to"):
        conn.execute("SELECT ml.woe_anchor_rollback()")
    assert _active(conn) == second
    # refitting the active key in place, without asking to activate: judged all the same
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="the gate refused"):
        fit(conn, "lc_shuffled", cutoff=CUTOFF, model_key=second, replace=True, activate=False)
    conn.execute("DELETE FROM ml.woe_anchor_policy")
    third = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_k3", half_life_days=60.0)
    fit(conn, "lc_src", cutoff=CUTOFF, model_key=third, replace=True, half_life_days=70.0)  # replaced in place
    assert _active(conn) == third
    assert conn.execute("SELECT ml.woe_anchor_rollback()").fetchone()[0] == second, "the model before the replaced one"


def test_a_window_that_ends_before_it_starts_is_refused(conn, lifecycle):
    key = fit(conn, "lc_src", cutoff=CUTOFF, model_key="lc_window")
    for statement in ("SELECT count(*) FROM ml.woe_anchor_drift('lc_src', '2026-02-01', '2026-01-01', %s)",
                      "SELECT count(*) FROM ml.woe_anchor_compare(%s, %s, 'lc_src', '2026-02-01', '2026-01-01')"):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="is before window_start"):
            conn.execute(statement, [key] * statement.count("%s"))
