"""Inference with stored models: ml.woe_anchor_score, the live views, training features, model ops."""
from __future__ import annotations

import numpy as np
import psycopg
import pytest

import artifacts
import cases
import reference
from conftest import fit, drop_live_views

TOL = 1e-9


@pytest.fixture
def fitted(conn):
    """A model fitted on data without damage >= 3, and a live table that has such rows too."""
    rows = cases.make_rows(seed=31)
    train = {k: v.copy() for k, v in rows.items()}
    train["damage_severity_ai"] = np.where(train["damage_severity_ai"] >= 3, 2.0, train["damage_severity_ai"])
    drop_live_views(conn)
    cases.load(conn, "inf_train", train)
    cases.load(conn, "inf_live", rows)  # every split, and dmg_3p values the mapping never saw
    key = fit(conn, "inf_train", model_key="inf_model", replace=True)
    ref = reference.fit_reference(cases.as_reference(train))
    assert ("dmg", "dmg_3p") not in ref["fits"][None]["map"]
    return key, rows, ref


def _logits(conn, query, params=()):
    return {(g, l, cases.epoch_us(t)): v for g, l, t, v in conn.execute(query, params).fetchall()}




def _assert_close(got: dict, want: dict):
    assert got.keys() == want.keys()
    bad = [(k, got[k], want[k]) for k in want if abs(got[k] - want[k]) > TOL * max(1.0, abs(want[k]))]
    assert not bad, f"{len(bad)} logits differ, e.g. {bad[:3]}"


def test_score_function_matches_the_reference_on_every_row(conn, fitted):
    key, rows, ref = fitted
    want = reference.score_rows(cases.as_reference(rows), ref)
    got = _logits(conn, "SELECT generation, listing_id, t0, woe_logit FROM ml.woe_anchor_score('inf_live')")
    _assert_close(got, want)
    p = conn.execute("SELECT max(abs(woe_anchor_p_slow21 - 1 / (1 + exp(-woe_logit)))), "
                     "count(DISTINCT model_key), min(model_key) FROM ml.woe_anchor_score('inf_live', %s)",
                     [key]).fetchone()
    assert p[0] < 1e-12 and p[1:] == (1, key)


def test_views_match_the_reference_on_every_row(conn, fitted):
    key, rows, ref = fitted
    conn.execute("SELECT ml.woe_anchor_create_views('inf_live')")
    want = reference.score_rows(cases.as_reference(rows), ref)
    for view in ("ml.woe_anchor_scores_live_v1", "ml.woe_anchor_scores_live_train_v"):
        _assert_close(_logits(conn, f"SELECT generation, listing_id, t0, woe_logit FROM {view}"), want)
    bands = conn.execute("SELECT count(*), count(*) FILTER (WHERE dmg_ai_band = 'dmg_3p'), "
                         "count(*) FILTER (WHERE has_assets AND presentation_score IS NULL), "
                         "count(DISTINCT model_key) FROM ml.v_woe_anchor_bands_live_v1").fetchone()
    assert bands[0] == len(rows["t0"]) and bands[1] > 0 and bands[2] == 0 and bands[3] == 1


def test_score_equals_what_the_fit_stored_for_in_sample_rows(conn, fitted):
    key = fit(conn, "inf_train", model_key="inf_in_sample", oof=False, activate=False, replace=True)
    stored = artifacts.scores(conn, key)
    scored = _logits(conn, "SELECT generation, listing_id, t0, woe_logit FROM ml.woe_anchor_score('inf_train', %s)",
                     [key])
    _assert_close({k: scored[k] for k in stored}, {k: v[2] for k, v in stored.items()})


def test_guarded_view_fails_closed(conn, fitted):
    key, _, _ = fitted
    conn.execute("SELECT ml.woe_anchor_create_views('inf_live')")
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_scores_live_train_v").fetchone()[0] > 0
    conn.execute("UPDATE ml.woe_anchor_model_registry_v1 SET is_active = false")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="0 active models"):
        conn.execute("SELECT * FROM ml.woe_anchor_scores_live_train_v").fetchall()
    conn.execute("SELECT ml.woe_anchor_activate(%s)", [key])
    with conn.transaction():  # a hand repair gone wrong: artifacts change only when an administrator says so
        conn.execute("SET LOCAL woe_anchor.artifact_write = on")
        conn.execute("DELETE FROM ml.woe_anchor_cuts_v1 WHERE model_key = %s AND fold_id IS NULL", [key])
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="0 final cuts rows"):
        conn.execute("SELECT count(*) FROM ml.woe_anchor_scores_live_train_v").fetchall()
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        conn.execute("SELECT ml.woe_anchor_assert_ready()")
    fresh = fit(conn, "inf_train", model_key="inf_fresh", replace=True)
    assert conn.execute("SELECT ml.woe_anchor_assert_ready()").fetchone()[0] is True
    assert conn.execute("SELECT count(DISTINCT model_key), min(model_key) "
                        "FROM ml.woe_anchor_scores_live_train_v").fetchone() == (1, fresh)


def test_a_guard_runs_whatever_its_volatility(conn, fitted):
    """The planner drops a subquery's unread output unless it is volatile: the fail-closed view
    still runs a STABLE guard, and a guard recorded with backslashes means the same when the views
    are re-created in a session with standard_conforming_strings off."""
    conn.execute("CREATE OR REPLACE FUNCTION public.inf_stable_guard() RETURNS boolean LANGUAGE plpgsql STABLE "
                 "AS $$BEGIN RAISE EXCEPTION 'not certified'; END$$")
    try:
        conn.execute("SELECT ml.woe_anchor_create_views('inf_live', guard => 'public.inf_stable_guard() AS certified')")
        with pytest.raises(psycopg.errors.RaiseException, match="not certified"):
            conn.execute("SELECT count(*) FROM ml.woe_anchor_scores_live_train_v").fetchall()
        guard = r"(SELECT CASE WHEN '2026' ~ '^\d+$' THEN 1 ELSE 1 / 0 END) AS certified"
        conn.execute("SELECT ml.woe_anchor_create_views('inf_live', guard => %s)", [guard])
        n = conn.execute("SELECT count(*) FROM ml.woe_anchor_scores_live_train_v").fetchone()[0]
        assert n > 0
        conn.execute("SET standard_conforming_strings = off")
        conn.execute("SELECT ml.woe_anchor_create_views('inf_live')")   # keeps the recorded guard
        conn.execute("RESET standard_conforming_strings")
        assert conn.execute("SELECT count(*) FROM ml.woe_anchor_scores_live_train_v").fetchone()[0] == n
    finally:
        conn.execute("RESET standard_conforming_strings")
        conn.execute("SELECT ml.woe_anchor_create_views('inf_live', guard => '')")
        conn.execute("DROP FUNCTION public.inf_stable_guard()")


def test_a_source_view_mapping_must_be_an_object_of_names(conn, fitted):
    for bad in ("[1, 2]", "null", '{"t0": 5}', '{"t0": []}'):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="columns must be a JSON object"):
            conn.execute("SELECT ml.woe_anchor_create_source_view('public.inf_bad_v', ARRAY['inf_live'::regclass], "
                         "%s)", [bad])


def test_a_model_without_its_final_map_rows_scores_nothing(conn, fitted):
    """As a parallel restore can leave it (docs/backup.md): scoring would give every row the base
    logit alone. It is refused, as the fail-closed view and assert_ready refuse it."""
    key, _, _ = fitted
    with conn.transaction() as tx:
        conn.execute("SET LOCAL woe_anchor.artifact_write = on")
        conn.execute("DELETE FROM ml.woe_anchor_map_v1 WHERE model_key = %s", [key])
        for call in ("SELECT count(*) FROM ml.woe_anchor_score('inf_live', %s)",
                     "SELECT count(*) FROM ml.woe_anchor_drift('inf_live', '2000-01-01', '2100-01-01', %s)"):
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="has no final map rows"), \
                    conn.transaction():
                conn.execute(call, [key])
        raise psycopg.Rollback(tx)
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_score('inf_live', %s)", [key]).fetchone()[0] > 0


def test_training_features_give_oof_on_train_sold_and_final_elsewhere(conn, fitted):
    key, _, ref = fitted
    rows = _training_rows()  # the model's training source, inf_train
    train = cases.as_reference(rows)
    got = conn.execute("SELECT generation, listing_id, t0, split, fold_id, is_oof, woe_anchor_logit_slow21, "
                       "woe_anchor_p_slow21 FROM ml.woe_anchor_training_features(%s)", [key]).fetchall()
    stored = artifacts.scores(conn, key)
    final = reference.score_rows(train, ref)
    cutoff_us = int(ref["cutoff"].astype(np.int64))  # the reference's, not the engine's stored one
    sold = {(int(g), int(l), int(t)): (s, d) for g, l, t, s, d in zip(
        train["generation"], train["listing_id"], train["t0"].astype(np.int64),
        rows["sold_time"], rows["duration_hours"])}
    splits = set()
    for g, l, t, split, fold_id, is_oof, logit, p in got:
        k = (g, l, cases.epoch_us(t))
        sold_us, duration = sold[k]
        want_split = ("train_sold" if 0 <= sold_us <= cutoff_us else
                      "eval_sold_last_7d" if sold_us > cutoff_us and sold_us <= cutoff_us + 7 * cases.DAY_US else
                      "censored_ge_21d" if sold_us < 0 and duration >= 504 else "other")
        assert split == want_split, k
        splits.add(split)
        if split == "train_sold":
            assert (fold_id, is_oof, logit, p) == stored[k]
        else:
            assert fold_id is None and is_oof is False and abs(logit - final[k]) <= TOL * max(1, abs(final[k]))
    assert splits == {"train_sold", "eval_sold_last_7d", "censored_ge_21d", "other"}


def _training_rows():
    """inf_train's rows (the fixture loaded them from the same generator)."""
    rows = cases.make_rows(seed=31)
    rows["damage_severity_ai"] = np.where(rows["damage_severity_ai"] >= 3, 2.0, rows["damage_severity_ai"])
    return rows


def test_model_operations(conn, fitted):
    key, _, _ = fitted
    others = [fit(conn, "inf_train", model_key=f"op_{i}", activate=False, n_folds=2, replace=True)
              for i in range(4)]
    models = conn.execute("SELECT model_key, is_active, score_rows, map_rows FROM ml.woe_anchor_models()").fetchall()
    assert [m[0] for m in models][:4] == others[::-1] and any(m[0] == key and m[1] for m in models)
    conn.execute("SELECT ml.woe_anchor_activate(%s)", [others[0]])
    assert artifacts.active_keys(conn) == [others[0]]
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute("SELECT ml.woe_anchor_activate('no such model')")
    assert artifacts.active_keys(conn) == [others[0]]
    assert conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [others[1]]).fetchone()[0] is True
    assert not any(artifacts.rows_of(conn, others[1]).values())
    assert conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [others[1]]).fetchone()[0] is False
    dropped = {r[0] for r in conn.execute("SELECT ml.woe_anchor_prune(1)").fetchall()}
    remaining = {r[0] for r in conn.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1").fetchall()}
    assert others[0] in remaining and others[3] in remaining, "the active one and the newest one stay"
    assert key in remaining, "and the one that served before the active one: a rollback restores it"
    assert not dropped & remaining and others[2] in dropped
    assert not any(artifacts.rows_of(conn, others[2]).values())
