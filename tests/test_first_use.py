"""What a new user hits first: cancels without tracebacks, hints that point the right way, odd
inputs named, unknown keys refused alike, a warning when the serving model goes."""
from __future__ import annotations

import psycopg
import pytest

import cases
from conftest import fit
from woe_anchor_harness import datagen


@pytest.fixture(scope="module")
def big(dsn):
    """Enough rows that a fit and a scoring call run long enough to be cancelled inside."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        datagen.generate_listings(conn, "fu_big", rows=150_000, days=90)
        fit(conn, "fu_big", model_key="fu_big_model", replace=True, activate=False)
    return "fu_big"


def _no_python_in(error: psycopg.Error) -> None:
    text = "\n".join(filter(None, (error.diag.message_primary, error.diag.context, error.diag.message_detail)))
    assert "Traceback" not in text and "spiexceptions" not in text and "PL/Python" not in text, text
    assert "ARRAY[" not in text and len(text) < 2000, f"generated SQL in the error ({len(text)} characters)"


@pytest.mark.parametrize("what", ["fit", "score"])
def test_a_cancel_reads_as_a_plain_error(conn, big, what):
    statement = {"fit": "CALL ml.fit_woe_anchor(source => 'fu_big', model_key => 'fu_cancelled', activate => false)",
                 "score": "SELECT count(*) FROM ml.woe_anchor_score('fu_big', 'fu_big_model')"}[what]
    conn.execute("SET statement_timeout = '150ms'")
    try:
        with pytest.raises(psycopg.errors.QueryCanceled) as err:
            conn.execute(statement)
    finally:
        conn.execute("RESET statement_timeout")
    assert err.value.diag.message_primary == "canceling statement due to statement timeout"
    _no_python_in(err.value)


def test_an_empty_train_sold_hints_a_later_cutoff(conn):
    rows = cases.make_rows(seed=98, n=300)
    cases.load(conn, "fu_src", rows)
    with pytest.raises(psycopg.errors.NoDataFound) as err:
        fit(conn, "fu_src", cutoff=cases.to_datetime(0), activate=False)
    assert "later cutoff" in err.value.diag.message_hint


def test_unknown_keys_are_refused_by_every_model_function(conn):
    conn.execute("SELECT 1")
    for call in ("SELECT * FROM ml.woe_anchor_quality('fu_nope')", "SELECT * FROM ml.woe_anchor_model_bands('fu_nope')",
                 "SELECT ml.woe_anchor_activate('fu_nope')", "SELECT * FROM ml.woe_anchor_score('fu_src', 'fu_nope')"):
        with pytest.raises(psycopg.errors.NoDataFound, match="'fu_nope' does not exist") as err:
            conn.execute(call)
        assert "ml.woe_anchor_models()" in (err.value.diag.message_hint or ""), call


def test_odd_inputs_are_named(conn):
    rows = cases.make_rows(seed=99, n=800)
    cases.load(conn, "fu_odd", rows)
    for key in ("  ", " padded", "padded "):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="blank or starts or ends with spaces"):
            fit(conn, "fu_odd", model_key=key, activate=False)
    conn.notices.clear()
    latest = int(rows["sold_time"].max())
    fit(conn, "fu_odd", model_key="fu_odd", replace=True, activate=False, n_folds=500, half_life_days=-5.0,
        cutoff=cases.to_datetime(latest))
    said = " | ".join(conn.notices)
    assert "half_life_days => -5: no time decay" in said
    assert "n_folds => 500, but TRAIN SOLD spans" in said
    assert "no row sold in the 7 days after the cutoff" in said
    conn.execute("SELECT ml.woe_anchor_drop_model('fu_odd')")


def test_dropping_the_serving_model_warns_and_scoring_hints_to_activate(conn):
    cases.load(conn, "fu_serve", cases.make_rows(seed=100, n=600))
    active_before = conn.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1 WHERE is_active").fetchone()
    key = fit(conn, "fu_serve", model_key="fu_serving", replace=True)
    conn.notices.clear()
    assert conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key]).fetchone()[0] is True
    assert any("was the active one: no model is active now" in n for n in conn.notices), conn.notices
    with pytest.raises(psycopg.errors.NoDataFound, match="no model is active") as err:
        conn.execute("SELECT count(*) FROM ml.woe_anchor_score('fu_serve')")
    assert "ml.woe_anchor_activate" in err.value.diag.message_hint
    with pytest.raises(psycopg.errors.NoDataFound, match="no model is active"):
        conn.execute("SELECT * FROM ml.woe_anchor_quality()")
    if active_before:
        conn.execute("SELECT ml.woe_anchor_activate(%s)", [active_before[0]])


def test_a_fitted_models_artifacts_do_not_change(conn):
    cases.load(conn, "fu_frozen", cases.make_rows(seed=102, n=600))
    key = fit(conn, "fu_frozen", model_key="fu_frozen", replace=True, activate=False)
    for change in ("UPDATE ml.woe_anchor_map_v1 SET woe = 5 WHERE model_key = %(k)s",
                   "DELETE FROM ml.woe_anchor_map_v1 WHERE model_key = %(k)s AND fold_id IS NULL",
                   "UPDATE ml.woe_anchor_cuts_v1 SET c1 = 0 WHERE model_key = %(k)s",
                   "UPDATE ml.woe_anchor_scores_v1 SET woe_p = 0.5 WHERE model_key = %(k)s",
                   "DELETE FROM ml.woe_anchor_scores_v1 WHERE model_key = %(k)s",
                   "UPDATE ml.woe_anchor_model_registry_v1 SET base_logit = 0 WHERE model_key = %(k)s"):
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="do not change"):
            conn.execute(change, {"k": key})
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="do not change"):
        conn.execute("TRUNCATE ml.woe_anchor_map_v1 CASCADE")
    # nor does a DELETE from some trigger's body go through (only the cascade of a dropped model)
    conn.execute("CREATE TABLE fu_cleanup (k text)")
    conn.execute("CREATE FUNCTION fu_wipe() RETURNS trigger LANGUAGE plpgsql AS "
                 "$$ BEGIN DELETE FROM ml.woe_anchor_map_v1 WHERE model_key = NEW.k; RETURN NULL; END $$")
    conn.execute("CREATE TRIGGER fu_wipe AFTER INSERT ON fu_cleanup FOR EACH ROW EXECUTE FUNCTION fu_wipe()")
    try:
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="do not change"):
            conn.execute("INSERT INTO fu_cleanup VALUES (%s)", [key])
    finally:
        conn.execute("DROP TABLE fu_cleanup")
        conn.execute("DROP FUNCTION fu_wipe()")
    # activation is the one change; deleting the registry row drops the whole model
    conn.execute("UPDATE ml.woe_anchor_model_registry_v1 SET is_active = false WHERE model_key = %s", [key])
    conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s", [key])
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_map_v1 WHERE model_key = %s", [key]).fetchone()[0] == 0


def test_model_bands_list_every_ladder_from_low_to_high(conn):
    cases.load(conn, "fu_order", cases.make_rows(seed=105, n=600))
    key = fit(conn, "fu_order", model_key="fu_order", replace=True, activate=False)
    got = {}
    for band, value in conn.execute("SELECT band_name, band_value FROM ml.woe_anchor_model_bands(%s) "
                                    "ORDER BY band_position, value_position", [key]).fetchall():
        got.setdefault(band, []).append(value)
    assert got["cond"] == ["cond_missing", "cond_lo", "cond_mid", "cond_hi"]
    assert got["bat"] == ["bat_missing", "bat_lo", "bat_mid", "bat_hi"]
    assert got["dmg"] == ["dmg_missing", "dmg_0", "dmg_1", "dmg_2", "dmg_3p"]
    assert got["dsold"] == ["dSold_missing", "dSold_cheap", "dSold_under", "dSold_fair", "dSold_over",
                            "dSold_overpriced"]
    assert got["present"] == ["present_lo", "present_mid", "present_hi"]
    assert got["acc"] == ["acc_lo", "acc_mid", "acc_hi"]
    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])


def test_a_fit_says_each_phase_as_it_starts_and_its_quality_at_the_end(conn):
    cases.load(conn, "fu_phases", cases.make_rows(seed=106, n=700))
    conn.notices.clear()
    key = fit(conn, "fu_phases", model_key="fu_phases", replace=True, activate=False)
    said = list(conn.notices)
    order = ["[woe] reading ", "[woe] read TRAIN SOLD n=", "[woe] trained slow21 WOE anchor", "[woe] scoring and writing",
             "[woe] OOF scoring applied", "[woe] quality: OOF AUC", "[db] persisted", "[woe] persisted"]
    positions = [next(i for i, line in enumerate(said) if line.startswith(prefix)) for prefix in order]
    assert positions == sorted(positions), said
    reg = conn.execute("SELECT oof_auc FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s", [key]).fetchone()
    assert f"OOF AUC {reg[0]:.4f}" in said[positions[5]]
    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])


def test_live_views_over_a_temporary_source_are_refused_clearly(conn):
    cases.load(conn, "fu_perm", cases.make_rows(seed=108, n=400))
    conn.execute("CREATE TEMP TABLE fu_temp AS SELECT * FROM fu_perm")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="is temporary") as err:
        conn.execute("SELECT ml.woe_anchor_create_views('fu_temp')")
    assert "ml.woe_anchor_score" in err.value.diag.message_hint
