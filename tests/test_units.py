"""The in-database Python package, imported directly: no server needed."""
from __future__ import annotations

import math

import numpy as np
import pytest

from woe_anchor import bands, errors, fit, passes, sqlgen, woe


def test_fold_of_days_is_contiguous_and_balanced():
    folds = woe.fold_of_days(10, 3)
    assert folds.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert woe.fold_of_days(3, 5).tolist() == [0, 1, 3]  # fewer days than folds: some folds empty
    assert (np.diff(woe.fold_of_days(1000, 7)) >= 0).all()


@pytest.mark.parametrize("x", [0.1, -2000.0, 1e-300, 1 / 3, float("inf"), -float("inf")])
def test_float_literals_round_trip(x):
    lit = sqlgen.float_lit(x)
    text = lit.split("'")[1]
    assert float(text.replace("Infinity", "inf")) == x


def test_identifiers_and_literals_are_quoted():
    assert sqlgen.quote_ident('a"; DROP TABLE x; --') == '"a""; DROP TABLE x; --"'
    assert sqlgen.quote_literal("o'clock") == "'o''clock'"
    assert sqlgen.column_read("we\"ird", False) == "NULLIF((s.\"we\"\"ird\")::float8, 'NaN'::float8)"


def test_band_sql_codes_follow_label_order():
    reads = {c: sqlgen.column_read(c, False) for c in bands.SCHEMA_1.columns}
    learned = dict(dsold_t1=-2.0, dsold_t2=-1.0, dsold_t3=1.0, dsold_t4=2.0, c1=0.1, c2=0.2)
    comp = sqlgen.Compiler(bands.SCHEMA_1, reads, learned)
    dsold = bands.SCHEMA_1.bands[0]
    assert dsold.labels == ("dSold_missing", "dSold_cheap", "dSold_under", "dSold_fair", "dSold_over",
                            "dSold_overpriced")
    code_sql = comp.band(dsold)
    assert code_sql.startswith("CASE WHEN NULLIF") and code_sql.endswith("ELSE 5 END")
    assert "'-2.0'::float8" in code_sql
    label_sql = comp.band(dsold, as_label=True)
    assert "THEN 'dSold_cheap'" in label_sql


def test_schema_1_reads_every_feature_column_of_the_spec():
    assert set(bands.SCHEMA_1.columns) == {
        "delta_vs_sold_median_30d", "condition_score", "damage_severity_ai", "battery_pct_effective",
        "seller_rating", "review_count", "member_since_year", "ai_ship_can", "ai_ship_pickup",
        "ai_pickup_only_bin", "ai_sale_mode_firm", "ai_sale_mode_bids", "ai_sale_mode_obo",
        "image_count", "caption_share", "stock_photo_share", "photo_quality_avg", "bg_clean_avg",
        "dmg_band_hq_struct", "charger_bundle_level", "box_present", "receipt_present"}
    assert [b.name for b in bands.SCHEMA_1.bands] == [
        "dsold", "trust", "ship", "sale", "cond", "dmg", "bat", "present", "vdmg", "acc"]
    assert bands.SCHEMA_1.learned_names() == ("dsold_t1", "dsold_t2", "dsold_t3", "dsold_t4", "c1", "c2")


def test_weight_expression_guards_underflow():
    sql = passes.weight_sql("x", 1.0e9, 2.0)
    assert "1075" in sql and "0.5::float8 ^" in sql
    assert passes.weight_sql("x", 1.0e9, None) == "1::float8"
    assert passes.weight_sql("x", 1.0e9, -1.0) == "1::float8"


def test_learned_thresholds_follow_the_spec_rules():
    assert fit.learned_dsold(None, 0.1) == (fit.DSOLD_SMALL, "learned_small_scale")
    assert fit.learned_dsold(None, 5.0) == (fit.DSOLD_LARGE, "learned_large_scale")
    assert fit.learned_dsold(None, None) == (fit.DSOLD_LARGE, "learned_large_scale")
    assert fit.learned_dsold([1, 2, 3, 4], 0.1) == ((1.0, 2.0, 3.0, 4.0), "given")
    assert fit.presentation_cuts(50, [1.0, 2.0, 1.5]) == (1.0, 2.0)
    assert fit.presentation_cuts(49, [1.0, 2.0, 1.5]) == (1.5, 1.5)
    assert fit.presentation_cuts(0, None) == (0.0, 0.0)


def _params(**over):
    p = dict(n_folds=5, eps=0.5, half_life_days=150.0, slow_threshold_hours=504.0,
             min_duration_hours=48.0, dsold_thresholds=None, model_key=None)
    p.update(over)
    return p


@pytest.mark.parametrize("bad", [
    dict(n_folds=0), dict(eps=0.0), dict(eps=-1.0), dict(eps=math.inf), dict(eps=math.nan),
    dict(half_life_days=math.inf), dict(half_life_days=math.nan), dict(dsold_thresholds=[1, 2, 3]),
    dict(dsold_thresholds=[1, 3, 2, 4]), dict(dsold_thresholds=[1, 2, 2, 4]), dict(model_key=""),
    dict(model_key="a\nb"), dict(model_key="k" * 129), dict(slow_threshold_hours=math.nan),
])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(errors.FitError) as err:
        fit.check_params(_params(**bad))
    assert err.value.sqlstate == errors.INVALID_PARAMETER_VALUE


def test_good_parameters_pass():
    fit.check_params(_params())
    fit.check_params(_params(half_life_days=None, n_folds=1, dsold_thresholds=[-1, 0, 1, 2]))


def test_woe_of_an_empty_fit_is_zero_with_base_rate_one_half():
    sums = woe.DaySums(days=np.array([1, 2]), n_rows=np.array([3.0, 3.0]), n_learned=np.zeros(2),
                       sw=np.zeros(2), pos=np.zeros(2), neg=np.zeros(2),
                       band_pos={"b": np.zeros((2, 2))}, band_neg={"b": np.zeros((2, 2))},
                       band_n={"b": np.zeros((2, 2), dtype=np.int64)})
    f = woe.fit_days(sums, np.ones(2, dtype=bool), {"b": None}, 0.5, None)
    assert f.base_rate == 0.5 and f.base_logit == 0.0 and not f.woe["b"].any()
