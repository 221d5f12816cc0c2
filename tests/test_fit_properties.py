"""Properties of the fit that need no reference: leakage, determinism, atomicity, scan count."""
from __future__ import annotations

import psycopg
import pytest

import artifacts
import cases
from conftest import fit


@pytest.fixture
def source(conn):
    cases.load(conn, "prop_src", cases.make_rows(seed=11))
    return "prop_src"


def test_relabelling_fold_k_leaves_its_oof_scores_and_fold_map_unchanged(conn, source):
    before = fit(conn, source, model_key="relabel_before")
    fold0 = {k for k, v in artifacts.scores(conn, before).items() if v[0] == 0}
    assert fold0, "fold 0 has rows"
    # flip the labels of learned fold-0 rows, keep sold_time and features; a slow row turns
    # fast only if its sale is not after the weight reference, which must not move
    changed = conn.execute("""
        UPDATE prop_src s SET
            duration_hours = CASE WHEN s.duration_hours >= 504 OR s.final_status = 'older21days'
                                  THEN 100 ELSE 600 END,
            final_status = 'sold'
        FROM ml.woe_anchor_scores_v1 sc, ml.woe_anchor_model_registry_v1 r
        WHERE sc.model_key = %s AND r.model_key = sc.model_key AND sc.fold_id = 0
          AND s.duration_hours >= 48 AND s.duration_hours <> 'NaN' AND s.sold_time <= r.weight_ref_ts
          AND (sc.generation, sc.listing_id, sc.t0) = (s.generation, s.listing_id, s.t0)""", [before]).rowcount
    assert changed > 10
    after = fit(conn, source, model_key="relabel_after")
    reg_b, reg_a = artifacts.registry(conn, before), artifacts.registry(conn, after)
    assert reg_b["weight_ref_ts"] == reg_a["weight_ref_ts"], "precondition: fold 0 does not set the weight reference"
    s_b, s_a = artifacts.scores(conn, before), artifacts.scores(conn, after)
    assert {k: s_a[k] for k in fold0} == {k: s_b[k] for k in fold0}
    m_b, m_a = artifacts.maps(conn, before), artifacts.maps(conn, after)
    fold0_map = lambda m: {k: v for k, v in m.items() if k[0] == 0}  # noqa: E731
    assert fold0_map(m_a) == fold0_map(m_b)
    # the labels did change what every other fit learned
    assert {k: v for k, v in m_a.items() if k[0] is None} != {k: v for k, v in m_b.items() if k[0] is None}
    assert any(s_a[k] != s_b[k] for k in s_b if k not in fold0)


def test_two_fits_of_the_same_data_are_identical(conn, source):
    a = fit(conn, source, model_key="same_a", activate=False)
    b = fit(conn, source, model_key="same_b", activate=False)
    assert artifacts.comparable(conn, a) == artifacts.comparable(conn, b)


def test_the_fits_workers_change_no_bit_and_the_sessions_setting_stays(conn, source):
    """The fit holds max_parallel_workers_per_gather to the cores its busy leader leaves, for its
    own statements only: the caller's value is there after a fit and after a failed one, and the
    artifacts are the same bits with no worker at all."""
    with conn.transaction():
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 64")
        wide = fit(conn, source, model_key="workers_64", activate=False)
        assert conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0] == "64"
        with pytest.raises(psycopg.errors.InvalidParameterValue), conn.transaction():
            fit(conn, source, model_key="workers_bad", activate=False, eps=0.0)
        assert conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0] == "64"
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        alone = fit(conn, source, model_key="workers_0", activate=False)
    assert artifacts.comparable(conn, wide) == artifacts.comparable(conn, alone)


def test_a_second_active_fit_leaves_exactly_one_active_model(conn, source):
    first = fit(conn, source, model_key="active_1")
    assert artifacts.active_keys(conn) == [first]
    second = fit(conn, source, model_key="active_2")
    assert artifacts.active_keys(conn) == [second]
    inactive = fit(conn, source, model_key="active_3", activate=False)
    assert artifacts.active_keys(conn) == [second]
    assert artifacts.registry(conn, inactive)["is_active"] is False


def test_schema_refuses_a_second_active_row(conn, source):
    fit(conn, source, model_key="only_active")
    other = fit(conn, source, model_key="would_be_second", activate=False)
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("UPDATE ml.woe_anchor_model_registry_v1 SET is_active = true WHERE model_key = %s", [other])


def test_log_lines_are_notices(conn, source):
    key = fit(conn, source, model_key="logged")
    lines = conn.notices
    assert any(line.startswith("[woe] trained slow21 WOE anchor on TRAIN SOLD n=") for line in lines)
    assert any(line.startswith("[woe] OOF scoring applied to TRAIN SOLD: folds=5 rows=") for line in lines)
    assert f"[db] persisted WOE anchor artifacts v1: model_key={key} (active=True)" in lines
    assert f"[woe] persisted WOE anchor artifacts to Postgres (model_key={key})" in lines


def test_persist_false_writes_nothing(conn, source):
    active = fit(conn, source, model_key="kept_active")
    tables = "woe_anchor_model_registry_v1 woe_anchor_cuts_v1 woe_anchor_map_v1 woe_anchor_scores_v1".split()
    count = lambda: [conn.execute(f"SELECT count(*) FROM ml.{t}").fetchone()[0] for t in tables]  # noqa: E731
    before = count()
    key = fit(conn, source, model_key="dry_run", persist=False)
    assert key == "dry_run"
    assert count() == before
    assert artifacts.active_keys(conn) == [active]
    assert any(line.startswith("[woe] trained slow21") for line in conn.notices)
    # it reports what the same fit stores: the quality figures and the final map
    said = list(conn.notices)
    stored = fit(conn, source, model_key="dry_run_stored", activate=False)
    reg = conn.execute("SELECT n_folds_with_rows, oof_auc, insample_auc, eval_auc FROM ml.woe_anchor_model_registry_v1 "
                       "WHERE model_key = %s", [stored]).fetchone()
    summary = next(line for line in said if line.startswith("[woe] would store:"))
    fmt = lambda v: "NULL" if v is None else f"{v:.4f}"  # noqa: E731
    assert f"folds={reg[0]}, OOF AUC {fmt(reg[1])}, in-sample AUC {fmt(reg[2])}, eval AUC {fmt(reg[3])}" in summary
    for band, value, woe in conn.execute("SELECT band_name, band_value, woe FROM ml.woe_anchor_map_v1 "
                                         "WHERE model_key = %s AND fold_id IS NULL", [stored]).fetchall():
        line = next(x for x in said if x.startswith(f"[woe] map {band}: "))
        assert f"{value} {woe:+.4f}" in line, (band, value)
    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [stored])


def test_a_read_only_transaction_or_a_replicas_session_is_named_not_failed_in(conn, source):
    """A hot standby's session or a read-only transaction is refused before the source is read, with
    what to do; a dry run still runs there. A session with session_replication_role = replica (in which
    the trigger that says who calls does not fire) is told so, not that its ticket is invalid."""
    with conn.transaction() as tx:
        conn.execute("SET TRANSACTION READ ONLY")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="read-only transaction") as err, \
                conn.transaction():
            fit(conn, source, model_key="ro_fit")
        assert "persist => false" in err.value.diag.message_hint
        assert fit(conn, source, model_key="ro_dry", persist=False) == "ro_dry"
        raise psycopg.Rollback(tx)
    with conn.transaction() as tx:
        conn.execute("SET LOCAL session_replication_role = replica")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="session_replication_role"), \
                conn.transaction():
            fit(conn, source, model_key="replica_fit")
        raise psycopg.Rollback(tx)
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1 "
                        "WHERE model_key IN ('ro_fit', 'replica_fit')").fetchone()[0] == 0


def test_replace_leaves_no_stale_rows_and_existing_key_needs_it(conn, source):
    key = fit(conn, source, model_key="replaced", n_folds=5)
    before = artifacts.rows_of(conn, key)
    with pytest.raises(psycopg.errors.DuplicateObject) as err:
        fit(conn, source, model_key=key, n_folds=2)
    assert "replace" in err.value.diag.message_hint
    assert artifacts.rows_of(conn, key) == before
    fit(conn, source, model_key=key, n_folds=2, replace=True)
    assert artifacts.cuts(conn, key).keys() == {None, 0, 1}
    assert {k[0] for k in artifacts.maps(conn, key)} == {None, 0, 1}
    assert {v[0] for v in artifacts.scores(conn, key).values()} == {0, 1}
    parts = conn.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'ml.woe_anchor_scores_v1'::regclass "
                         "AND pg_get_expr((SELECT relpartbound FROM pg_class WHERE oid = inhrelid), inhrelid) "
                         "LIKE '%%' || quote_literal(%s) || '%%'", [key]).fetchone()[0]
    assert parts == 1


def test_a_failed_fit_writes_nothing_and_keeps_the_active_model(conn, source):
    active = fit(conn, source, model_key="survivor")
    conn.execute("CREATE TEMP VIEW broken AS SELECT * FROM prop_src WHERE sold_time IS NULL")
    with pytest.raises(psycopg.errors.NoDataFound):
        fit(conn, "broken", model_key="never_written")
    assert artifacts.rows_of(conn, "never_written") == dict.fromkeys(artifacts.rows_of(conn, active), 0)
    assert artifacts.active_keys(conn) == [active]


def test_deleting_a_registry_row_removes_every_artifact(conn, source):
    key = fit(conn, source, model_key="deleted", activate=False)
    assert all(artifacts.rows_of(conn, key).values())
    conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s", [key])
    assert not any(artifacts.rows_of(conn, key).values())


def _seq_scans(conn, table):
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute("SELECT seq_scan FROM pg_stat_user_tables WHERE relid = %s::regclass", [table]).fetchone()[0]


@pytest.mark.parametrize("cutoff", ["default", "given"])
def test_source_is_read_a_constant_number_of_times_whatever_n_folds(conn, source, cutoff):
    given = {} if cutoff == "default" else {"cutoff": cases.to_datetime(cases.START_US + 30 * cases.DAY_US)}
    reads = {}
    for n_folds in (2, 10, 20):
        start = _seq_scans(conn, source)
        fit(conn, source, model_key=f"scans_{cutoff}_{n_folds}", n_folds=n_folds, activate=False, **given)
        reads[n_folds] = _seq_scans(conn, source) - start
    assert len(set(reads.values())) == 1 and reads[2] > 0, reads
    # cutoff (default only), rows (statistics, days, sums and quality), scores; schema 1 has no
    # category band, so no stats read
    assert reads[2] == (3 if cutoff == "default" else 2), reads


def test_a_fit_failing_after_its_writes_leaves_nothing(conn, source):
    """A failure at the very end (here: writing the map rows) rolls back the partition too."""
    active = fit(conn, source, model_key="late_survivor", replace=True)
    partitions = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'ml.woe_anchor_scores_v1'::regclass"
    before = conn.execute(partitions).fetchone()[0]
    conn.execute("CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS "
                 "$$BEGIN RAISE EXCEPTION 'injected failure'; END$$")
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON ml.woe_anchor_map_v1 "
                 "FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.refuse()")
    try:
        with pytest.raises(psycopg.errors.RaiseException, match="injected failure"):
            fit(conn, source, model_key="late_failure")
    finally:
        conn.execute("DROP TRIGGER refuse ON ml.woe_anchor_map_v1")
    assert conn.execute(partitions).fetchone()[0] == before
    assert not any(artifacts.rows_of(conn, "late_failure").values())
    assert artifacts.active_keys(conn) == [active]


def test_replacing_the_active_model_keeps_it_active(conn, source):
    key = fit(conn, source, model_key="kept_serving", replace=True)
    fit(conn, source, model_key=key, replace=True, activate=False, n_folds=3)
    assert artifacts.active_keys(conn) == [key]


def test_keys_with_quotes_and_backslashes_survive_any_string_setting(conn, source):
    key = "o'k\\\\x \"q\""
    conn.execute("SET standard_conforming_strings = off")
    try:
        assert fit(conn, source, model_key=key, activate=False, replace=True) == key
        stored = conn.execute("SELECT DISTINCT model_key FROM ml.woe_anchor_scores_v1 WHERE model_key = %s",
                              [key]).fetchall()
        assert stored == [(key,)]
        n = conn.execute("SELECT count(*) FROM ml.woe_anchor_training_features(%s) WHERE is_oof",
                         [key]).fetchone()[0]
        assert n == artifacts.registry(conn, key)["n_train_sold"]
    finally:
        conn.execute("RESET standard_conforming_strings")


def test_a_half_life_too_short_for_exact_sums_is_refused(conn, source):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="half_life_days"):
        fit(conn, source, model_key="too_short", half_life_days=0.05)
    assert artifacts.registry(conn, "too_short") is None


def test_a_stale_repeatable_read_snapshot_fails_cleanly_and_retryably(conn, dsn, source):
    """A fit whose snapshot predates a concurrent commit of its key gets 40001, not a raw error."""
    with psycopg.connect(dsn) as stale:
        stale.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        stale.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1")  # takes the snapshot
        fit(conn, source, model_key="raced", activate=False, replace=True)
        with pytest.raises(psycopg.errors.SerializationFailure) as err:
            fit(stale, source, model_key="raced", activate=False)
        assert "Retry in a new transaction" in err.value.diag.message_hint
        stale.rollback()
    assert artifacts.registry(conn, "raced")["n_train_sold"] > 0
