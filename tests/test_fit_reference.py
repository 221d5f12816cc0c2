"""Every persisted value of a fit equals the independent numpy reference (tests/reference.py)."""
from __future__ import annotations

import numpy as np
import pytest

import artifacts
import cases
import reference
from conftest import fit

TOL = 1e-9


def close(a, b) -> bool:
    return abs(a - b) <= TOL * max(1.0, abs(b))


def assert_matches(conn, key, ref):
    reg = artifacts.registry(conn, key)
    final = ref["fits"][None]
    assert reg["n_train_sold"] == ref["n_train_sold"]
    assert reg["n_learned"] == ref["n_learned"]
    assert reg["n_days"] == ref["n_days"]
    # timestamps to the microsecond: a float tolerance on epoch seconds would allow about 2 s
    assert cases.epoch_us(reg["weight_ref_ts"]) == ref["ref_us"]
    assert cases.epoch_us(reg["train_cutoff_ts"]) == int(ref["cutoff"].astype(np.int64))
    assert close(reg["base_rate"], final["base_rate"])
    assert close(reg["base_logit"], final["base_logit"])
    got_t = (reg["dsold_t1"], reg["dsold_t2"], reg["dsold_t3"], reg["dsold_t4"])
    assert got_t == pytest.approx(ref["dsold_thresholds"], rel=TOL, abs=TOL)

    cuts = artifacts.cuts(conn, key)
    assert set(cuts) == set(ref["fits"]), "one cuts row per fit: final and every fold with rows"
    for fold, fit_ref in ref["fits"].items():
        c1, c2, base_rate, base_logit, n_learned = cuts[fold]
        assert close(c1, ref["cuts"][0]) and close(c2, ref["cuts"][1])
        assert close(base_rate, fit_ref["base_rate"]) and close(base_logit, fit_ref["base_logit"])
        assert n_learned == fit_ref["n_learned"]

    got_map = artifacts.maps(conn, key)
    want_map = {(fold, band, value): v for fold, f in ref["fits"].items() for (band, value), v in f["map"].items()}
    assert set(got_map) == set(want_map)
    bad = [(k, got_map[k], want_map[k]) for k in want_map
           if not all(close(g, w) for g, w in zip(got_map[k][:3], want_map[k][:3]))
           or got_map[k][3] != want_map[k][3]]
    assert not bad, f"{len(bad)} map rows differ, e.g. {bad[:3]}"

    got_scores = artifacts.scores(conn, key)
    assert set(got_scores) == set(ref["scores"])
    bad = [(k, got_scores[k], v) for k, v in ref["scores"].items()
           if got_scores[k][:2] != v[:2] or not close(got_scores[k][2], v[2]) or not close(got_scores[k][3], v[3])]
    assert not bad, f"{len(bad)} scores differ, e.g. {bad[:3]}"


SCENARIOS = {
    "defaults_far_timezone_cutoff_at_a_sale": dict(data=dict(seed=1), tz="Pacific/Kiritimati",
                                                   cutoff="at_sale", params={}),
    "nok_scale_default_cutoff": dict(data=dict(seed=2, nok_scale=True), tz="America/Adak", cutoff=None,
                                     params=dict(n_folds=4, half_life_days=30.0, eps=1.0)),
    "oof_off": dict(data=dict(seed=3), tz="UTC", cutoff="at_sale", params=dict(oof=False)),
    "one_fold": dict(data=dict(seed=4), tz="Asia/Kathmandu", cutoff=None, params=dict(n_folds=1)),
    "given_thresholds_no_decay_fewer_days_than_folds": dict(
        data=dict(seed=5, n_days=3, n=800), tz="UTC", cutoff=None,
        params=dict(n_folds=5, half_life_days=None, dsold_thresholds=[-0.2, -0.01, 0.01, 0.2],
                    slow_threshold_hours=400.0, min_duration_hours=24.0)),
    "twenty_folds_short_half_life": dict(data=dict(seed=6), tz="UTC", cutoff=None,
                                         params=dict(n_folds=20, half_life_days=3.0)),
    "far_more_folds_than_days": dict(data=dict(seed=7, n=1500), tz="Europe/Berlin", cutoff=None,
                                     params=dict(n_folds=100000)),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_fit_matches_reference(conn, name):
    sc = SCENARIOS[name]
    rows = cases.make_rows(**sc["data"])
    table = f"src_{name}"
    cases.load(conn, table, rows)
    cutoff = cases.cutoff_at_a_sale(rows) if sc["cutoff"] == "at_sale" else None
    conn.execute(f"SET TimeZone = '{sc['tz']}'")
    params = dict(sc["params"])
    if cutoff is not None:
        params["cutoff"] = cases.to_datetime(cutoff)
    key = fit(conn, table, model_key=f"ref_{name}", **params)
    ref = reference.fit_reference(
        cases.as_reference(rows), cutoff=None if cutoff is None else np.datetime64(cutoff, "us"),
        **{k: v for k, v in params.items() if k != "cutoff"})
    if cutoff is not None:
        # the row sold exactly at the cutoff is TRAIN SOLD
        assert (rows["sold_time"] == cutoff).sum() >= 1
    assert_matches(conn, key, ref)


def test_edge_cases_are_present():
    """The generated data really contains what docs/contract.md asks the tests to cover."""
    rows = cases.make_rows(seed=1)
    assert (rows["duration_hours"] == 48.0).any() and (rows["duration_hours"] == 504.0).any()
    assert (rows["final_status"] == "older21days").any()
    assert np.isin(rows["damage_severity_ai"], [0.5, 1.5, 2.5]).any()
    assert np.isnan(rows["delta_vs_sold_median_30d"]).any() and np.isnan(rows["box_present"]).any()
    near_midnight = (rows["t0"] - cases.START_US) % cases.DAY_US
    assert ((near_midnight < cases.US) | (near_midnight > cases.DAY_US - cases.US)).any()
    assert np.isinf(rows["battery_pct_effective"]).any()
    nok = cases.make_rows(seed=2, nok_scale=True)
    assert np.nanmedian(np.abs(nok["delta_vs_sold_median_30d"])) >= 5

def test_default_cutoff_is_seven_utc_days_across_a_dst_change(conn):
    """max(sold_time) - 7 days is 168 hours even where the session's clocks sprang forward."""
    rows = cases.make_rows(seed=8, n=600, n_days=20)
    latest = int(np.datetime64("2026-04-01T12:00:00", "us").astype(np.int64))  # Berlin moved on Mar 29
    sold = rows["sold_time"]
    sold[sold > latest] = latest - cases.HOUR_US
    sold[np.flatnonzero(sold >= 0)[:2]] = [latest, latest - 167 * cases.HOUR_US - 30 * 60 * cases.US]
    cases.load(conn, "dst_src", rows)
    conn.execute("SET TimeZone = 'Europe/Berlin'")
    key = fit(conn, "dst_src", model_key="dst", replace=True, activate=False)
    ref = reference.fit_reference(cases.as_reference(rows))
    assert ref["cutoff"] == np.datetime64(latest - 168 * cases.HOUR_US, "us")
    assert_matches(conn, key, ref)
