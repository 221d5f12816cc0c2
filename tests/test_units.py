"""The in-database Python package, imported directly: no server needed."""
from __future__ import annotations

import math

import numpy as np
import pytest

from woe_anchor import bands, errors, fit, packs, passes, sqlgen, woe


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
    # a ladder reads its input once: one width_bucket over the (negated, for <=) thresholds
    assert code_sql == ("coalesce((ARRAY[5, 4, 3, 2, 1]::int[])[width_bucket(-(NULLIF((s.\"delta_vs_sold_median_30d\")"
                        "::float8, 'NaN'::float8)), ARRAY['-2.0'::float8, '-1.0'::float8, '1.0'::float8, "
                        "'2.0'::float8]::float8[]) + 1], 0)")
    label_sql = comp.band(dsold, as_label=True)
    assert "'dSold_cheap'" in label_sql and label_sql.endswith("'dSold_missing')")
    damage = bands.SCHEMA_1.bands[5]  # mixed >= and = rules stay a CASE
    assert comp.band(damage).startswith("CASE WHEN NULLIF")


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


def _statements():
    reads = {c: sqlgen.column_read(c, False) for c in ("duration_hours",) + bands.SCHEMA_1.columns}
    learned = dict(dsold_t1=-2.0, dsold_t2=-1.0, dsold_t3=1.0, dsold_t4=2.0, c1=0.1, c2=0.2)
    return passes.Statements(sqlgen.Compiler(bands.SCHEMA_1, reads, learned), '"public"."src"',
                             "'2026-01-01T00:00:00.000000+00'::timestamptz", 504.0, 48.0)


def test_weight_expression_guards_underflow():
    sql = _statements().weight(1.0e9, 2.0)
    assert "least(" in sql and "1074::float8" in sql and "0.5::float8 ^" in sql
    assert _statements().weight(1.0e9, None) == "4611686018427387904::int8"
    assert _statements().weight(1.0e9, -1.0) == "4611686018427387904::int8"


def test_array_literals_are_exact():
    assert passes.array_lit([0.1, -2.5, 1e-300], "float8") == "('{0.1,-2.5,1e-300}'::float8[])"
    assert passes.array_lit([3, -1], "int") == "('{3,-1}'::int[])"


def test_packs_cover_every_band_once_within_budget():
    plan = packs.plan(bands.SCHEMA_1)
    members = [i for p in plan for i in p.bands]
    assert members == list(range(len(bands.SCHEMA_1.bands)))
    assert all(p.size <= packs.COMBINATION_BUDGET for p in plan)
    assert len(plan) <= 4


def test_pack_combinations_decode_to_their_codes():
    pack = packs.plan(bands.SCHEMA_1)[0]
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, r, 100) for r in pack.radix]
    combos = sum(c * m for c, m in zip(codes, pack.mult))
    for got, want in zip(pack.codes(combos), codes):
        assert (got == want).all()


def test_pack_woe_table_sums_member_bands_and_ignores_null_slot():
    pack = packs.Pack(bands=(0, 1), radix=(3, 2), mult=(1, 3))
    woe_by_band = [np.array([0.5, -1.0]), np.array([2.0])]
    table = packs.woe_table(pack, woe_by_band)
    # combination = code0 + 3 * code1; slot 2 of band 0 and slot 1 of band 1 are NULL
    assert table.tolist() == [2.5, 1.0, 2.0, 0.5, -1.0, 0.0]


def test_statements_render_values_as_literals_only():
    st = _statements()
    fold = st.fold_of_row(["2026-02-01T00:00:00+00", "2026-03-01T00:00:00+00"])
    assert fold == ("width_bucket(s.t0, ARRAY['2026-02-01T00:00:00+00'::timestamptz, "
                    "'2026-03-01T00:00:00+00'::timestamptz])")
    sql = st.sums(packs.plan(bands.SCHEMA_1), fold, 1.7e9, 150.0)
    assert "$1" not in sql and "'2026-01-01T00:00:00.000000+00'::timestamptz" in sql and fold in sql


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
             min_duration_hours=48.0, dsold_thresholds=None, model_key=None, activate=True, oof=True,
             persist=True, replace=False)
    p.update(over)
    return p


@pytest.mark.parametrize("bad", [
    dict(n_folds=0), dict(eps=0.0), dict(eps=-1.0), dict(eps=math.inf), dict(eps=math.nan),
    dict(half_life_days=math.inf), dict(half_life_days=math.nan), dict(dsold_thresholds=[1, 2, 3]),
    dict(dsold_thresholds=[1, 3, 2, 4]), dict(dsold_thresholds=[1, 2, 2, 4]), dict(model_key=""),
    dict(model_key="a\nb"), dict(model_key="a\x85b"), dict(model_key="k" * 129),
    dict(slow_threshold_hours=math.nan),
])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(errors.FitError) as err:
        fit.check_params(_params(**bad))
    assert err.value.sqlstate == errors.INVALID_PARAMETER_VALUE


@pytest.mark.parametrize("name", ["activate", "oof", "persist", "replace"])
def test_null_switches_are_refused(name):
    with pytest.raises(errors.FitError) as err:
        fit.check_params(_params(**{name: None}))
    assert err.value.sqlstate == errors.NULL_VALUE_NOT_ALLOWED


def test_literals_survive_backslashes_and_quotes():
    assert sqlgen.quote_literal("a\\'b") == "E'a\\\\''b'"


def test_good_parameters_pass():
    fit.check_params(_params())
    fit.check_params(_params(half_life_days=None, n_folds=1, dsold_thresholds=[-1, 0, 1, 2]))


def test_woe_of_an_empty_fit_is_zero_with_base_rate_one_half():
    sums = woe.FoldSums(n_rows=np.array([3.0, 3.0]), n_learned=np.zeros(2), pos=np.zeros(2), neg=np.zeros(2),
                        band_pos={"b": np.zeros((2, 2))}, band_neg={"b": np.zeros((2, 2))},
                        band_n={"b": np.zeros((2, 2), dtype=np.int64)})
    f = woe.fit_folds(sums, np.ones(2, dtype=bool), {"b": None}, 0.5, None)
    assert f.base_rate == 0.5 and f.base_logit == 0.0 and not f.woe["b"].any()
