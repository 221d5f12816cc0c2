"""Bad input is refused with a specific SQLSTATE and a clear message, and nothing is written."""
from __future__ import annotations

import psycopg
import pytest

import artifacts
import cases
from conftest import fit


@pytest.fixture
def good(conn):
    cases.load(conn, "err_src", cases.make_rows(seed=21, n=600))
    return "err_src"


def _refused(conn, error, source, **params):
    """The fit fails with ``error``; no registry, map or score partition row or table is left."""
    before = artifacts.stored_counts(conn)
    with pytest.raises(error) as err:
        fit(conn, source, **params)
    assert artifacts.stored_counts(conn) == before
    message = err.value.diag.message_primary
    assert "Traceback" not in str(err.value) and not message.startswith("plpy")
    return err.value


def test_missing_columns_are_all_named(conn, good):
    conn.execute("CREATE TEMP VIEW keys_only AS SELECT generation, listing_id, t0, sold_time, "
                 "duration_hours, final_status FROM err_src")
    e = _refused(conn, psycopg.errors.UndefinedColumn, "keys_only")
    assert "missing 22 required column(s)" in e.diag.message_primary
    assert "delta_vs_sold_median_30d" in e.diag.message_primary and "receipt_present" in e.diag.message_primary


def test_columns_of_the_wrong_type_are_named(conn, good):
    conn.execute("CREATE TEMP TABLE wrong AS SELECT * FROM err_src")
    conn.execute("ALTER TABLE wrong ALTER COLUMN t0 TYPE timestamp, ALTER COLUMN image_count TYPE text")
    e = _refused(conn, psycopg.errors.DatatypeMismatch, "wrong")
    assert "t0 is timestamp without time zone" in e.diag.message_primary
    assert "image_count is text" in e.diag.message_primary


def test_single_day_with_oof_is_refused_but_fits_without(conn, good):
    conn.execute("CREATE TEMP TABLE one_day AS SELECT * FROM err_src")
    conn.execute("UPDATE one_day SET t0 = timestamptz '2026-03-01 12:00+00' + (listing_id % 1000) * interval '1 second'")
    e = _refused(conn, psycopg.errors.InvalidParameterValue, "one_day")
    assert "at least 2 distinct t0 days" in e.diag.message_primary and "oof => false" in e.diag.message_hint
    key = fit(conn, "one_day", oof=False, model_key="one_day_in_sample", activate=False)
    assert {v[:2] for v in artifacts.scores(conn, key).values()} == {(None, False)}


@pytest.mark.parametrize("persist", [True, False])
def test_duplicate_keys_are_refused(conn, good, persist):
    """By the fit when it keys the scores, and by a dry run (which keys nothing) by looking."""
    conn.execute("CREATE TEMP TABLE dup AS SELECT * FROM err_src UNION ALL (SELECT * FROM err_src "
                 "WHERE sold_time IS NOT NULL LIMIT 1)")
    e = _refused(conn, psycopg.errors.UniqueViolation, "dup", persist=persist,
                 cutoff=cases.to_datetime(cases.START_US + 400 * cases.DAY_US))
    assert "duplicate (generation, listing_id, t0)" in e.diag.message_primary


def test_null_keys_are_refused(conn, good):
    conn.execute("CREATE TEMP TABLE null_key AS SELECT * FROM err_src")
    conn.execute("UPDATE null_key SET listing_id = NULL WHERE listing_id = (SELECT min(listing_id) FROM null_key "
                 "WHERE sold_time IS NOT NULL)")
    e = _refused(conn, psycopg.errors.NullValueNotAllowed, "null_key",
                 cutoff=cases.to_datetime(cases.START_US + 400 * cases.DAY_US))
    assert "NULL generation, listing_id or t0" in e.diag.message_primary
    # a NULL t0 makes isfinite() NULL too: still the same clear refusal
    conn.execute("UPDATE null_key SET listing_id = 0, t0 = NULL WHERE listing_id IS NULL")
    e = _refused(conn, psycopg.errors.NullValueNotAllowed, "null_key",
                 cutoff=cases.to_datetime(cases.START_US + 400 * cases.DAY_US))
    assert "NULL generation, listing_id or t0" in e.diag.message_primary


def test_empty_train_sold_is_refused(conn, good):
    e = _refused(conn, psycopg.errors.NoDataFound, good, cutoff=cases.to_datetime(cases.START_US - cases.DAY_US))
    assert "TRAIN SOLD is empty" in e.diag.message_primary


def test_own_tables_are_not_a_source(conn, good):
    e = _refused(conn, psycopg.errors.InvalidParameterValue, "ml.woe_anchor_map_v1")
    assert "own artifact tables" in e.diag.message_primary


def test_null_source_is_refused(conn):
    e = _refused(conn, psycopg.errors.NullValueNotAllowed, None)
    assert "source must not be NULL" in e.diag.message_primary


@pytest.mark.parametrize("params, error, words", [
    (dict(n_folds=0), psycopg.errors.InvalidParameterValue, "n_folds must be at least 1"),
    (dict(eps=0.0), psycopg.errors.InvalidParameterValue, "eps must be a finite number > 0"),
    (dict(eps=float("nan")), psycopg.errors.InvalidParameterValue, "eps must be a finite number > 0, got NaN"),
    (dict(n_folds=None), psycopg.errors.InvalidParameterValue, "n_folds must be at least 1, got NULL"),
    (dict(dsold_thresholds=[None, 1.0, 2.0, 3.0]), psycopg.errors.InvalidParameterValue, "got {NULL,1.0,2.0,3.0}"),
    (dict(half_life_days=float("inf")), psycopg.errors.InvalidParameterValue, "half_life_days must be finite"),
    (dict(dsold_thresholds=[1.0, 2.0, 3.0]), psycopg.errors.InvalidParameterValue, "4 finite numbers"),
    (dict(dsold_thresholds=[1.0, 3.0, 2.0, 4.0]), psycopg.errors.InvalidParameterValue, "strictly ascending"),
    (dict(oof=None), psycopg.errors.NullValueNotAllowed, "oof must be true or false"),
    (dict(cutoff="infinity"), psycopg.errors.InvalidParameterValue, "cutoff must be a finite timestamp"),
])
def test_bad_parameters_are_refused_before_any_write(conn, good, params, error, words):
    e = _refused(conn, error, good, **params)
    assert words in e.diag.message_primary


def test_a_missing_source_is_named(conn):
    e = _refused(conn, psycopg.errors.UndefinedTable, "no_such_table")
    assert "no_such_table" in e.diag.message_primary


@pytest.mark.parametrize("column, value", [("t0", "infinity"), ("sold_time", "-infinity")])
def test_infinite_timestamps_are_refused(conn, good, column, value):
    conn.execute("CREATE TEMP TABLE infinite AS SELECT * FROM err_src")
    conn.execute(f"UPDATE infinite SET {column} = %s WHERE listing_id = (SELECT min(listing_id) FROM infinite "
                 "WHERE sold_time IS NOT NULL)", [value])
    conn.execute("UPDATE infinite SET sold_time = 'infinity' WHERE listing_id = (SELECT max(listing_id) FROM infinite)")
    e = _refused(conn, psycopg.errors.DatetimeFieldOverflow, "infinite")
    assert "infinite t0 or sold_time" in e.diag.message_primary


def test_a_timestamp_before_the_common_era_keeps_its_era(conn, good):
    """A BC cutoff is the BC instant, not the AD one of the same digits (which would train on rows)."""
    e = _refused(conn, psycopg.errors.NoDataFound, good, cutoff="2026-07-01 BC")
    assert "2026-07-01T00:00:00.000000+00 BC" in e.diag.message_primary
    key = fit(conn, good, model_key="err_era", replace=True, activate=False)
    since = {era: conn.execute("SELECT count(*), sum(n_rows) FROM ml.woe_anchor_realized(%s, %s, %s)",
                               [good, key, era]).fetchone() for era in ("4713-01-01 BC", "0001-01-01")}
    assert since["4713-01-01 BC"] == since["0001-01-01"] and since["0001-01-01"][0] > 0


@pytest.mark.parametrize("reader", ["rows", "statements"])
def test_a_value_outside_a_bands_subset_is_not_read_there(conn, good, reader):
    """A negative image count is outside has_assets: the photo band's ln1p input is not read on its row
    (scoring reads it nowhere else), so the fit does not fail on it, and scores as scoring does."""
    conn.execute("CREATE TEMP TABLE negative_images AS SELECT * FROM err_src")
    conn.execute("UPDATE negative_images SET image_count = -5 WHERE listing_id % 7 = 0")
    conn.execute("SET woe_anchor.reader = %s" % ("'rows'" if reader == "rows" else "'statements'"))
    try:
        key = fit(conn, "negative_images", model_key="err_negative_images", replace=True, activate=False)
    finally:
        conn.execute("RESET woe_anchor.reader")
    stored = conn.execute("SELECT count(*) FROM ml.woe_anchor_stored_scores(%s)", [key]).fetchone()[0]
    assert stored == artifacts.registry(conn, key)["n_train_sold"] > 0
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_score('negative_images', %s)", [key]).fetchone()[0] == 600


def test_a_label_threshold_that_leaves_one_label_warns(conn, good):
    """SPEC 6: with one label only every WOE is 0; the fit says so rather than store it silently."""
    conn.notices.clear()
    key = fit(conn, good, slow_threshold_hours=-1, model_key="err_one_label", replace=True, activate=False)
    assert any("weigh on one label only, slow21" in n for n in conn.notices), conn.notices
    assert artifacts.registry(conn, key)["base_rate"] == 1.0
    _refused(conn, psycopg.errors.InvalidParameterValue, good, slow_threshold_hours=1e308)


@pytest.mark.parametrize("call, error, words", [
    ("SELECT * FROM ml.woe_anchor_import_trainer('woe_no_such_schema')", "InvalidSchemaName", "does not exist"),
    ("SELECT ml.woe_anchor_create_source_view('woe_no_such_schema.sv', '{err_src}')", "InvalidSchemaName",
     "does not exist"),
    ("SELECT ml.woe_anchor_create_source_view('ml.err_sv', '{}')", "InvalidParameterValue", "one or more relations"),
    ("SELECT ml.woe_anchor_add_activation_hook(NULL)", "NullValueNotAllowed", "must not be NULL"),
])
def test_misnamed_arguments_are_named(conn, good, call, error, words):
    with pytest.raises(getattr(psycopg.errors, error), match=words):
        conn.execute(call)


@pytest.mark.parametrize("guard", ["this is not sql", "1); DROP TABLE err_src; SELECT (1", "no_such.guard()"])
def test_a_guard_postgresql_cannot_read_is_named(conn, good, guard):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="is not a select list") as err:
        conn.execute("SELECT ml.woe_anchor_create_views('err_src', guard => %s, name => 'err_guarded')", [guard])
    assert "guard" in err.value.diag.message_primary
    assert conn.execute("SELECT to_regclass('err_src') IS NOT NULL").fetchone()[0]


@pytest.mark.parametrize("call, error, words", [
    ("SELECT ml.woe_anchor_activate(NULL)", "NullValueNotAllowed", "model_key must not be NULL"),
    ("SELECT ml.woe_anchor_prune(NULL)", "NullValueNotAllowed", "keep must not be NULL"),
    ("SELECT ml.woe_anchor_copy_band_schema(NULL, 75)", "NullValueNotAllowed", "from_version must not be NULL"),
    ("CALL ml.fit_woe_anchor('err_src', cutoff => '294276-12-31 23:59:59+00', persist => false)",
     "InvalidParameterValue", "no room for the eval window"),
    ("SET LOCAL woe_anchor.fit_memory = '1000000000 TB'; CALL ml.fit_woe_anchor('err_src', persist => false)",
     "InvalidParameterValue", "woe_anchor.fit_memory is not a size"),
    ("SET LOCAL woe_anchor.fit_memory = 'garbage'; CALL ml.fit_woe_anchor('err_src', persist => false)",
     "InvalidParameterValue", "woe_anchor.fit_memory is not a size"),
])
def test_null_and_out_of_range_arguments_are_named(conn, good, call, error, words):
    with pytest.raises(getattr(psycopg.errors, error), match=words), conn.transaction():
        for statement in call.split("; "):
            conn.execute(statement)


def test_tags_are_a_list_of_text(conn, good):
    key = fit(conn, good, model_key="err_tags", replace=True, activate=False)
    for tags in ("{NULL}", "{{a,b},{c,d}}"):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="tags must be a list"):
            conn.execute("SELECT ml.woe_anchor_annotate(%s, tags => %s::text[])", [key, tags])
