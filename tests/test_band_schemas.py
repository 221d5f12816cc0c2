"""Band schemas as data: a user-defined schema fits, scores and serves like schema 1."""
from __future__ import annotations

import numpy as np
import psycopg
import psycopg.types.json
import pytest

import artifacts
import cases
import reference
from conftest import fit, drop_live_views
from test_fit_reference import assert_matches
from test_inference import _assert_close, _logits

MIN_WEIGHT = 70.0


@pytest.fixture(scope="module")
def schema_2(dsn):
    """Schema 2 built from schema 1 with the helpers and plain DML, as docs/band-schemas.md shows."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE band_schema_version >= 2")
        conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE version >= 2")
        return cases.define_schema_2(conn, 2, MIN_WEIGHT)


SCENARIOS = {
    "defaults": dict(seed=81, params={}),
    "twenty_folds_no_decay": dict(seed=82, params=dict(n_folds=20, half_life_days=None)),
    "oof_off": dict(seed=83, params=dict(oof=False)),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_schema_2_matches_the_extended_reference(conn, schema_2, name):
    sc = SCENARIOS[name]
    rows = cases.skew_generations(cases.make_rows(seed=sc["seed"]), sc["seed"])
    cases.load(conn, f"s2_{name}", rows)
    key = fit(conn, f"s2_{name}", model_key=f"s2_{name}", band_schema_version=2, activate=False, **sc["params"])
    ref = reference.fit_reference(cases.as_reference(rows), variant=schema_2, **sc["params"])
    assert_matches(conn, key, ref)
    reg = artifacts.registry(conn, key)
    assert reg["band_schema_version"] == 2
    assert [b["band_name"] for b in reg["band_schema"]["bands"]][-2:] == ["gen", "watch"]
    bands_stored = {band for (_, band, _) in artifacts.maps(conn, key)}
    assert {"gen", "watch"} <= bands_stored and not bands_stored & set(cases.SCHEMA_2_DROPPED)
    if name == "defaults":
        # the floor really bites, and differently per fit: the test exercises per-fit folding
        kept = {fold: frozenset(f["kept"]["gen"]) for fold, f in ref["fits"].items()}
        assert len(set(kept.values())) > 1 and any(len(k) < 4 for k in kept.values())


@pytest.fixture
def both_schemas(conn, schema_2):
    """A schema 1 and a schema 2 model of the same rows, plus a live table with unseen values."""
    rows = cases.skew_generations(cases.make_rows(seed=84), 84)
    cases.load(conn, "s2_train", rows)
    live = {k: v.copy() for k, v in rows.items()}
    live["generation"] = np.where(live["generation"] == 1, 7, live["generation"])  # a generation never seen
    cases.load(conn, "s2_live", live)
    drop_live_views(conn)
    k1 = fit(conn, "s2_train", model_key="s2_one", replace=True, activate=False)
    k2 = fit(conn, "s2_train", model_key="s2_two", band_schema_version=2, replace=True)
    ref1 = reference.fit_reference(cases.as_reference(rows))
    ref2 = reference.fit_reference(cases.as_reference(rows), variant=schema_2)
    return (k1, ref1), (k2, ref2), live


def test_models_of_two_schemas_coexist_and_each_scores_with_its_own(conn, both_schemas):
    (k1, ref1), (k2, ref2), live = both_schemas
    want1 = reference.score_rows(cases.as_reference(live), ref1)
    want2 = reference.score_rows(cases.as_reference(live), ref2)
    query = "SELECT generation, listing_id, t0, woe_logit FROM ml.woe_anchor_score('s2_live', %s)"
    _assert_close(_logits(conn, query, [k1]), want1)
    _assert_close(_logits(conn, query, [k2]), want2)


def test_views_follow_the_active_model_of_their_schema(conn, both_schemas):
    (k1, ref1), (k2, ref2), live = both_schemas
    conn.execute("SELECT ml.woe_anchor_create_views('s2_live')")  # the active model's schema: 2
    want2 = reference.score_rows(cases.as_reference(live), ref2)
    view = "SELECT generation, listing_id, t0, woe_logit FROM ml.woe_anchor_scores_live_train_v"
    _assert_close(_logits(conn, view), want2)
    gens = dict(conn.execute("SELECT gen_band, count(*) FROM ml.v_woe_anchor_bands_live_v1 GROUP BY 1").fetchall())
    assert "7" not in gens and gens.get("__other__", 0) >= (live["generation"] == 7).sum()
    assert "sale_band" not in [c.name for c in conn.execute(
        "SELECT * FROM ml.v_woe_anchor_bands_live_v1 LIMIT 0").description]
    # a schema 1 model made active: the schema 2 views refuse instead of scoring it wrongly
    conn.execute("SELECT ml.woe_anchor_activate(%s)", [k1])
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="band schema 1"):
        conn.execute(view).fetchall()
    conn.execute("SELECT ml.woe_anchor_create_views('s2_live')")  # now for schema 1
    want1 = reference.score_rows(cases.as_reference(live), ref1)
    _assert_close(_logits(conn, view), want1)
    drop_live_views(conn)


def test_a_used_schema_and_schema_1_are_immutable_and_copies_are_editable(conn, both_schemas):
    edits = [
        "UPDATE ml.woe_anchor_bands SET rule = rule || '{\"min_weight\": 1}' WHERE schema_version = 2 "
        "AND band_name = 'gen'",
        "DELETE FROM ml.woe_anchor_bands WHERE schema_version = 2 AND band_name = 'watch'",
        "INSERT INTO ml.woe_anchor_bands VALUES (2, 50, 'x', 'x_band', NULL, "
        "'{\"kind\": \"category\", \"column\": \"generation\", \"min_weight\": 1}')",
        "UPDATE ml.woe_anchor_band_schemas SET learned = '[]' WHERE version = 2",
        "DELETE FROM ml.woe_anchor_band_schemas WHERE version = 1",
        "UPDATE ml.woe_anchor_bands SET position = 99 WHERE schema_version = 1 AND band_name = 'acc'",
    ]
    for sql in edits + ["TRUNCATE ml.woe_anchor_bands", "TRUNCATE ml.woe_anchor_band_schemas CASCADE"]:
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="cannot"):
            conn.execute(sql)
    # what a restore does when the registry comes back first: re-inserting a recorded row is fine
    row = conn.execute("SELECT * FROM ml.woe_anchor_bands WHERE schema_version = 2 AND band_name = 'watch'").fetchone()
    conn.execute("ALTER TABLE ml.woe_anchor_bands DISABLE TRIGGER woe_anchor_bands_guard")
    conn.execute("DELETE FROM ml.woe_anchor_bands WHERE schema_version = 2 AND band_name = 'watch'")
    conn.execute("ALTER TABLE ml.woe_anchor_bands ENABLE TRIGGER woe_anchor_bands_guard")
    insert = "INSERT INTO ml.woe_anchor_bands VALUES (%s, %s, %s, %s, %s, %s::jsonb)"
    changed = list(row[:5]) + ['{"kind": "category", "column": "generation", "min_weight": 1}']
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="cannot change"):
        conn.execute(insert, changed)
    conn.execute(insert, list(row[:5]) + [psycopg.types.json.Jsonb(row[5])])
    conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE version = 3")
    assert conn.execute("SELECT ml.woe_anchor_copy_band_schema(2, 3)").fetchone()[0] == 3
    conn.execute("DELETE FROM ml.woe_anchor_bands WHERE schema_version = 3 AND band_name = 'watch'")
    assert conn.execute("SELECT * FROM ml.woe_anchor_band_schema_problems(3, 's2_train')").fetchall() == []
    with pytest.raises(psycopg.errors.DuplicateObject):
        conn.execute("SELECT ml.woe_anchor_copy_band_schema(1, 3)")
    conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE version = 3")  # unused: deletable


def _bad_schema(conn, version, band_rule, column="bad_band"):
    conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE version = %s", [version])
    conn.execute("SELECT ml.woe_anchor_copy_band_schema(1, %s)", [version])
    conn.execute("INSERT INTO ml.woe_anchor_bands (schema_version, position, band_name, column_name, rule) "
                 "VALUES (%s, 20, 'bad', %s, %s::jsonb)", [version, column, band_rule])


@pytest.mark.parametrize("rule, column, expected", [
    ('{"kind": "ladder", "input": {"column": "no_such_column"}, "steps": [{"op": "<", "value": 1, '
     '"label": "a"}], "else": "b"}', "bad_band", "missing 1 required column(s): no_such_column"),
    ('{"kind": "category", "column": "x\\"; DROP TABLE s2_guarded; --", "min_weight": 1}', "bad_band",
     "plain SQL identifier"),
    ('{"kind": "flags", "choices": [{"label": "a\'); DROP TABLE s2_guarded; --", "columns": ["box_present"]}], '
     '"else": "b"}', "bad_band", "label"),
    ('{"kind": "ladder", "input": {"column": "watcher_count"}, "steps": [{"op": "<", "value": 10, '
     '"label": "a"}, {"op": "<", "value": 3, "label": "b"}], "else": "c"}', "bad_band", "strictly ascending"),
    ('{"kind": "category", "column": "generation", "min_weight": 1}', "t0", "clashes with a key column"),
])
def test_bad_schemas_are_refused_before_anything_is_read_or_written(conn, rule, column, expected):
    cases.load(conn, "s2_guarded", cases.make_rows(seed=85, n=600))
    _bad_schema(conn, 9, rule, column)
    problems = conn.execute("SELECT band_name, problem FROM ml.woe_anchor_band_schema_problems(9, 's2_guarded')"
                            ).fetchall()
    assert any(expected in p for _, p in problems), problems
    before = artifacts.stored_counts(conn)
    with pytest.raises(psycopg.Error, match="band schema 9 is invalid|missing") as err:
        fit(conn, "s2_guarded", band_schema_version=9)
    assert err.value.sqlstate in ("22023", "42703")
    assert artifacts.stored_counts(conn) == before
    assert conn.execute("SELECT to_regclass('s2_guarded') IS NOT NULL").fetchone()[0]
    conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE version = 9")


def test_unknown_schema_and_foreign_parameters_are_refused(conn, schema_2):
    cases.load(conn, "s2_small", cases.make_rows(seed=86, n=600))
    with pytest.raises(psycopg.errors.UndefinedObject, match="band schema 42 does not exist"):
        fit(conn, "s2_small", band_schema_version=42)
    conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE version = 8")
    conn.execute("SELECT ml.woe_anchor_copy_band_schema(2, 8)")
    conn.execute("UPDATE ml.woe_anchor_band_schemas SET learned = learned - 0 WHERE version = 8")
    conn.execute("DELETE FROM ml.woe_anchor_bands WHERE schema_version = 8 AND band_name = 'dsold'")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="no thresholds that dsold_thresholds sets"):
        fit(conn, "s2_small", band_schema_version=8, dsold_thresholds=[-1, 0, 1, 2])
    key = fit(conn, "s2_small", band_schema_version=8, model_key="s2_no_dsold", activate=False, replace=True)
    reg = artifacts.registry(conn, key)
    assert reg["dsold_t1"] is None and reg["dsold_source"] is None and reg["band_schema_version"] == 8
    assert conn.execute("SELECT thresholds ? 'c1' AND NOT thresholds ? 'dsold_t1' FROM ml.woe_anchor_cuts_v1 "
                        "WHERE model_key = %s AND fold_id IS NULL", [key]).fetchone()[0]
    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])
    conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE version = 8")


@pytest.mark.parametrize("call, error, words", [
    ("SELECT ml.woe_anchor_create_band_schema(-1, 'neg')", "InvalidParameterValue", "version must be 1 or more"),
    ("SELECT ml.woe_anchor_create_band_schema(77, 'x', NULL)", "InvalidParameterValue", "subsets must be a JSON object"),
    ("SELECT ml.woe_anchor_create_band_schema(77, 'x', '{}', '{}')", "InvalidParameterValue",
     "learned must be a JSON array"),
    ("SELECT ml.woe_anchor_set_band(76, 'x', '\"a string\"')", "InvalidParameterValue", "rule must be a JSON object"),
    ("SELECT ml.woe_anchor_set_band(76, 'x', NULL)", "NullValueNotAllowed", "rule must be a JSON object"),
    ("SELECT ml.woe_anchor_set_band(76, NULL, '{}')", "NullValueNotAllowed", "band_name must not be NULL"),
    ("SELECT ml.woe_anchor_set_band(76, 'x', '{}', band_position => 2147483647)", "InvalidParameterValue",
     "band_position must be between 1 and"),
])
def test_band_schema_edits_name_the_argument_they_refuse(conn, call, error, words):
    conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE version IN (76, 77)")
    conn.execute("SELECT ml.woe_anchor_copy_band_schema(1, 76)")
    try:
        with pytest.raises(getattr(psycopg.errors, error), match=words) as err:
            conn.execute(call)
        assert err.value.diag.constraint_name is None and "INSERT INTO" not in (err.value.diag.context or "")
        assert conn.execute("SELECT count(*) FROM ml.woe_anchor_band_schemas WHERE version = 77").fetchone()[0] == 0
        assert conn.execute("SELECT max(position) FROM ml.woe_anchor_bands WHERE schema_version = 76").fetchone()[0] \
            == conn.execute("SELECT count(*) FROM ml.woe_anchor_bands WHERE schema_version = 1").fetchone()[0]
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE version IN (76, 77)")


EDGE_BANDS = [
    # a category on a text column, inside a subset, with NULLs and a value spelled like the reserved label
    ("region", "region_band", "has_assets", {"kind": "category", "column": "region", "min_weight": 25}),
    # a <= ladder over a weighted sum without a null label, on learned thresholds
    ("mix", "mix_band", None, {"kind": "ladder", "input": {"sum": [{"coef": 1, "column": "caption_share"},
                                                                   {"coef": 1, "column": "stock_photo_share"}]},
                               "steps": [{"op": "<=", "value": {"learned": "c1"}, "label": "mix_lo"},
                                         {"op": "<=", "value": {"learned": "c2"}, "label": "mix_mid"}],
                               "else": "mix_hi"}),
    # a > ladder on a column without a null label
    ("over", "over_band", None, {"kind": "ladder", "input": {"column": "delta_vs_sold_median_30d"},
                                 "steps": [{"op": ">", "value": 0.1, "label": "over_hi"},
                                           {"op": ">", "value": 0.0, "label": "over_mid"}], "else": "over_lo"}),
]

# The same three bands as the reference reads them, written from docs/band-schemas.md's rule kinds, not compiled
EDGE_VARIANT = {"drop": (), "bands": [
    {"name": "region", "subset": "has_assets", "min_weight": 25,
     "labels": lambda cols, cuts: reference.category_values(cols["region"])},
    {"name": "mix", "subset": None,
     "labels": lambda cols, cuts: reference.ladder_labels(
         reference.sum_input(cols, [(1, "caption_share"), (1, "stock_photo_share")]),
         [("<=", cuts[0], "mix_lo"), ("<=", cuts[1], "mix_mid")], "mix_hi")},
    {"name": "over", "subset": None,
     "labels": lambda cols, cuts: reference.ladder_labels(
         cols["delta_vs_sold_median_30d"], [(">", 0.1, "over_hi"), (">", 0.0, "over_mid")], "over_lo")},
]}


def test_edge_bands_fit_and_score_like_the_reference(conn):
    """A text category inside a subset, a <= ladder over a sum on learned thresholds and a >
    ladder: the fit's artifacts match the reference, and scoring matches it on NULL, NaN and
    infinite inputs, in the compiled scoring and in the live views."""
    conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE band_schema_version = 4")
    conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE version = 4")
    conn.execute("SELECT ml.woe_anchor_copy_band_schema(1, 4)")
    for i, (name, column, subset, rule) in enumerate(EDGE_BANDS):
        conn.execute("INSERT INTO ml.woe_anchor_bands VALUES (4, %s, %s, %s, %s, %s)",
                     [20 + i, name, column, subset, psycopg.types.json.Jsonb(rule)])
    rows = cases.make_rows(seed=87)
    cases.load(conn, "edge_train", rows)
    live = {k: v.copy() for k, v in rows.items()}
    live["caption_share"][:40] = np.inf
    live["stock_photo_share"][:20] = -np.inf          # inf + -inf: NaN, read as NULL
    live["delta_vs_sold_median_30d"][40:60] = np.nan
    live["region"][60:80] = "never_seen"
    cases.load(conn, "edge_live", live)
    key = fit(conn, "edge_train", model_key="edge_model", band_schema_version=4, replace=True)
    ref = reference.fit_reference(cases.as_reference(rows), variant=EDGE_VARIANT)
    assert_matches(conn, key, ref)
    learned = {band for fit_ in ref["fits"].values() for (band, _) in fit_["map"]}
    assert {"region", "mix", "over"} <= learned
    assert not any("west's" in f["kept"]["region"] for f in ref["fits"].values()), "the floor bites"
    stored = {r[0] for r in conn.execute("SELECT DISTINCT band_value FROM ml.woe_anchor_map_v1 "
                                         "WHERE model_key = %s AND band_name = 'region'", [key]).fetchall()}
    assert "__null__" in stored and "west's" not in stored, "NULL is its own value; the rare value is folded"
    drop_live_views(conn)
    conn.execute("SELECT ml.woe_anchor_create_views('edge_live')")
    compiled = _logits(conn, "SELECT generation, listing_id, t0, woe_logit FROM ml.woe_anchor_score('edge_live')")
    views = _logits(conn, "SELECT generation, listing_id, t0, woe_logit FROM ml.woe_anchor_scores_live_train_v")
    want = reference.score_rows(cases.as_reference(live), ref)
    _assert_close(compiled, want)
    _assert_close(views, want)
    labels = dict(conn.execute("SELECT mix_band, count(*) FROM ml.v_woe_anchor_bands_live_v1 "
                               "WHERE listing_id = ANY(%s) GROUP BY 1", [live["listing_id"][:20].tolist()]).fetchall())
    assert labels == {"mix_hi": 20}, "a NaN sum satisfies no test: the default label"
    drop_live_views(conn)
    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])
