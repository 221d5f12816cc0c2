"""Model quality recorded at fit time equals a plain numpy computation on the same rows."""
from __future__ import annotations

import math

import numpy as np
import psycopg
import pytest

import artifacts
import cases
import reference
from conftest import fit
from woe_anchor_harness import datagen


def pairwise_auc(scores, y):
    """AUC by its definition: P(positive outscores negative) + half the ties."""
    s, y = np.asarray(scores), np.asarray(y, dtype=bool)
    diff = s[y][:, None] - s[~y][None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def log_loss(logits, y):
    p = np.clip(1 / (1 + np.exp(-np.asarray(logits))), 1e-15, 1 - 1e-15)
    y = np.asarray(y, dtype=float)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def test_recorded_quality_matches_numpy(conn):
    rows = cases.make_rows(seed=41, n=2500)
    cases.load(conn, "q_src", rows)
    cut = cases.cutoff_at_a_sale(rows, 0.7)  # leaves a real eval window after the cutoff
    key = fit(conn, "q_src", model_key="quality", replace=True, activate=False, cutoff=cases.to_datetime(cut))
    ref_rows = cases.as_reference(rows)
    ref = reference.fit_reference(ref_rows, cutoff=np.datetime64(cut, "us"))
    reg = artifacts.registry(conn, key)
    cutoff = int(ref["cutoff"].astype(np.int64))
    sold = rows["sold_time"]
    y = (rows["duration_hours"] >= 504) | (rows["final_status"] == "older21days")
    keys = list(zip(rows["generation"].tolist(), rows["listing_id"].tolist(), rows["t0"].tolist()))
    train = (sold >= 0) & (sold <= cutoff)
    evaluation = (sold > cutoff) & (sold <= cutoff + 7 * cases.DAY_US)
    assert evaluation.sum() > 20

    oof = [ref["scores"][keys[i]][2] for i in np.flatnonzero(train)]  # the reference's OOF logits
    final = reference.score_rows(ref_rows, ref)
    insample = [final[keys[i]] for i in np.flatnonzero(train)]
    on_eval = [final[keys[i]] for i in np.flatnonzero(evaluation)]
    want = {"oof_auc": pairwise_auc(oof, y[train]), "insample_auc": pairwise_auc(insample, y[train]),
            "eval_auc": pairwise_auc(on_eval, y[evaluation]), "oof_logloss": log_loss(oof, y[train]),
            "insample_logloss": log_loss(insample, y[train]), "eval_logloss": log_loss(on_eval, y[evaluation])}
    for name, value in want.items():
        assert reg[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert reg["n_eval"] == evaluation.sum()

    assert_score_bins(reg["score_bins"], {"oof": (oof, y[train]), "insample": (insample, y[train]),
                                          "eval": (on_eval, y[evaluation])})

    got = {(m, b): v for m, b, v in conn.execute("SELECT * FROM ml.woe_anchor_quality(%s)", [key]).fetchall()}
    assert got[("oof_auc", None)] == reg["oof_auc"]
    fmap = ref["fits"][None]["map"]
    for band in reference.BAND_NAMES_GLOBAL + reference.BAND_NAMES_VISION:
        entries = [v for (b, _), v in fmap.items() if b == band]
        t_pos, t_neg = sum(e[1] for e in entries), sum(e[2] for e in entries)
        iv = sum((e[1] / t_pos - e[2] / t_neg) * e[0] for e in entries)
        assert got[("iv", band)] == pytest.approx(iv, rel=1e-9, abs=1e-12), band
        fold_woe = np.array([[ref["fits"][k]["map"].get((band, value), (0.0,))[0] for (b, value) in fmap if b == band]
                             for k in ref["fits"] if k is not None])
        assert got[("woe_fold_max_abs_dev", band)] == pytest.approx(
            np.abs(fold_woe - np.array([e[0] for e in entries])).max(), rel=1e-9, abs=1e-12)


def assert_score_bins(stored, scored: dict, n_bins: int = 40):
    """The stored bins are numpy's 40-bin histogram of each set's logits over their joint range."""
    every = np.concatenate([np.asarray(logits) for logits, _ in scored.values()])
    np.testing.assert_allclose(stored["edges"], np.linspace(every.min(), every.max(), n_bins + 1), rtol=0, atol=1e-9)
    # the reference's logits may differ in the last bits: bin them on the stored edges, extremes in the end bins
    edges = np.asarray(stored["edges"])
    for name, (logits, y) in scored.items():
        logits = np.clip(np.asarray(logits), edges[0], edges[-1])
        pos = np.histogram(logits[y], bins=edges)[0]
        neg = np.histogram(logits[~y], bins=edges)[0]
        p_sum = np.histogram(logits, bins=edges, weights=1 / (1 + np.exp(-logits)))[0]
        assert stored[name]["n_pos"] == pos.tolist(), name
        assert stored[name]["n_neg"] == neg.tolist(), name
        np.testing.assert_allclose(stored[name]["sum_p"], p_sum, rtol=1e-9, atol=1e-12)


def test_oof_auc_is_below_in_sample_auc_on_demo_data(conn):
    datagen.generate_listings(conn, "q_demo", rows=60_000, days=120)
    key = fit(conn, "q_demo", model_key="quality_demo", replace=True, activate=False)
    reg = artifacts.registry(conn, key)
    assert 0.5 < reg["oof_auc"] < reg["insample_auc"] < 1
    assert reg["eval_auc"] is not None and reg["oof_logloss"] > reg["insample_logloss"]


def test_compare_gives_both_models_figures_on_the_same_rows(conn):
    """AUC and log loss of two models on one window's labelled rows, with the DeLong standard error
    of the AUC difference, against a plain O(m n) computation of the same definitions."""
    rows = cases.make_rows(seed=109, n=2500)
    cases.load(conn, "cmp_src", rows)
    cut = cases.cutoff_at_a_sale(rows, 0.7)
    a = fit(conn, "cmp_src", model_key="cmp_a", replace=True, activate=False, cutoff=cases.to_datetime(cut))
    b = fit(conn, "cmp_src", model_key="cmp_b", replace=True, activate=False, cutoff=cases.to_datetime(cut),
            n_folds=3, half_life_days=20.0, eps=2.0)
    got = {r[0]: r[1:] for r in conn.execute("SELECT * FROM ml.woe_anchor_compare(%s, %s, 'cmp_src')", [a, b])}

    sold = rows["sold_time"]
    window = (sold > cut) & (sold <= cut + 7 * cases.DAY_US)
    y = ((rows["duration_hours"] >= 504) | (rows["final_status"] == "older21days"))[window]
    keys = list(zip(rows["generation"][window].tolist(), rows["listing_id"][window].tolist(),
                    rows["t0"][window].tolist()))
    logits = {}
    for key in (a, b):
        scored = {(g, lid, cases.epoch_us(t)): l for g, lid, t, l in conn.execute(
            "SELECT generation, listing_id, t0, woe_logit FROM ml.woe_anchor_score('cmp_src', %s)", [key])}
        logits[key] = np.array([scored[k] for k in keys])
    assert got["rows"][:2] == (len(keys), len(keys)) and got["slow21 rows"][0] == y.sum()
    want_a, want_b = pairwise_auc(logits[a], y), pairwise_auc(logits[b], y)
    assert got["auc"][:3] == pytest.approx((want_a, want_b, want_a - want_b), rel=1e-12, abs=1e-12)
    # DeLong: per positive and per negative, the share of the other class it outscores (ties half)
    def components(s):
        diff = s[y][:, None] - s[~y][None, :]
        psi = (diff > 0) + 0.5 * (diff == 0)
        return psi.mean(axis=1), psi.mean(axis=0)
    (v10a, v01a), (v10b, v01b) = components(logits[a]), components(logits[b])
    var = (np.var(v10a - v10b, ddof=1) / y.sum()) + (np.var(v01a - v01b, ddof=1) / (~y).sum())
    assert got["auc"][3] == pytest.approx(np.sqrt(var), rel=1e-9)
    assert got["auc"][4] == pytest.approx(math.erfc(abs(want_a - want_b) / np.sqrt(var) / math.sqrt(2)), rel=1e-9)
    loss_a, loss_b = log_loss(logits[a], y), log_loss(logits[b], y)
    assert got["logloss"][:3] == pytest.approx((loss_a, loss_b, loss_a - loss_b), rel=1e-9)
    # per band: each model's IV as recorded, and the largest difference of their final WOE
    maps = {key: {(band, value): woe for band, value, woe in conn.execute(
        "SELECT band_name, band_value, woe FROM ml.woe_anchor_map_v1 WHERE model_key = %s AND fold_id IS NULL", [key])}
        for key in (a, b)}
    quality = {key: conn.execute("SELECT band_quality FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s",
                                 [key]).fetchone()[0] for key in (a, b)}
    for band in quality[a]:
        shared = maps[a].keys() & maps[b].keys()
        assert got[f"max woe difference {band}"][2] == max(abs(maps[a][k] - maps[b][k]) for k in shared if k[0] == band)
        assert got[f"iv {band}"][:3] == (quality[a][band]["iv"], quality[b][band]["iv"],
                                        quality[a][band]["iv"] - quality[b][band]["iv"])
    with pytest.raises(psycopg.errors.NoDataFound, match="both classes"):
        conn.execute("SELECT * FROM ml.woe_anchor_compare(%s, %s, 'cmp_src', %s, %s)",
                     [a, b, cases.to_datetime(0), cases.to_datetime(1)])
    for key in (a, b):
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])
