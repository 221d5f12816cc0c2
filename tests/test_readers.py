"""The fit's two readers (plpython/woe_anchor/readers.py) on the same rows: the per-row read with
numpy, and the set-based statements a sharded fit sends to its shards, here over one local
table. Where a rule exists in both languages (statistics, percentiles, exact weight sums,
quality groups) this drives both; their artifacts must be the same, bit for bit."""
from __future__ import annotations

import os
import re
import shutil

import psycopg
import psycopg.types.json
import pytest

import artifacts
import cases
from conftest import compiling_at_any_cost, fit, plans_as_notices, routine_config, skip_without_jit
from test_band_schemas import EDGE_BANDS

VERSION = 9  # schema 1 plus the edge bands: categories, ladders over sums on learned thresholds


@pytest.fixture(scope="module")
def edge_schema(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE band_schema_version = %s", [VERSION])
        conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE version = %s", [VERSION])
        conn.execute("SELECT ml.woe_anchor_copy_band_schema(1, %s)", [VERSION])
        for i, (name, column, subset, rule) in enumerate(EDGE_BANDS):
            conn.execute("INSERT INTO ml.woe_anchor_bands VALUES (%s, %s, %s, %s, %s, %s)",
                         [VERSION, 20 + i, name, column, subset, psycopg.types.json.Jsonb(rule)])
    return VERSION


def _fit_with(conn, reader: str, fit_memory: str | None = None, **params) -> str:
    """A fit by ``reader``; with ``fit_memory``, the rows read in chunks of that size, kept on disk."""
    conn.execute("SELECT set_config('woe_anchor.reader', %s, false)", [reader])
    if fit_memory:
        conn.execute("SELECT set_config('woe_anchor.fit_memory', %s, false)", [fit_memory])
    try:
        conn.notices.clear()
        key = fit(conn, "rd_src", model_key=f"rd_{reader}_{fit_memory}", replace=True, activate=False, **params)
    finally:
        conn.execute("RESET woe_anchor.reader")
        conn.execute("RESET woe_anchor.fit_memory")
    said = any(n.startswith("[fit] woe_anchor.reader = statements") for n in conn.notices)
    assert said == (reader == "statements"), "the reader asked for is the one that read"
    chunks = [int(m.group(1)) for n in conn.notices if (m := re.search(r"TRAIN SOLD rows in (\d+) chunks", n))]
    assert (chunks and chunks[0] > 3) if fit_memory else not chunks, f"read in chunks: {chunks}"
    return key


@pytest.mark.parametrize("params", [
    {},
    {"n_folds": 20, "half_life_days": None},
    {"oof": False, "cutoff": "at_sale"},
    {"band_schema_version": "edge"},
], ids=["defaults", "twenty_folds_no_decay", "in_sample_at_a_sale", "categories_and_sums"])
def test_both_readers_give_bit_identical_artifacts(conn, edge_schema, params):
    rows = cases.make_rows(seed=95)
    cases.load(conn, "rd_src", rows)
    params = dict(params)
    if params.get("cutoff") == "at_sale":
        params["cutoff"] = cases.to_datetime(cases.cutoff_at_a_sale(rows))
    if params.get("band_schema_version") == "edge":
        params["band_schema_version"] = edge_schema
    by_rows = _fit_with(conn, "rows", **params)
    by_statements = _fit_with(conn, "statements", **params)
    # the smallest memory bound: the rows in many chunks, every sum and quality group added up
    by_chunks = _fit_with(conn, "rows", fit_memory="64kB", **params)
    got_rows, got_statements = artifacts.comparable(conn, by_rows), artifacts.comparable(conn, by_statements)
    assert got_rows[1] and got_rows[2] and got_rows[3], "the fit wrote cuts, maps and scores"
    assert got_statements == got_rows, "bit-identical artifacts"
    assert artifacts.comparable(conn, by_chunks) == got_rows, "bit-identical artifacts, read in chunks"
    for key in (by_rows, by_statements, by_chunks):
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])


def test_an_unknown_reader_is_refused(conn):
    cases.load(conn, "rd_src", cases.make_rows(seed=96, n=300))
    conn.execute("SET woe_anchor.reader = 'psychic'")
    try:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="'rows' or 'statements'"):
            fit(conn, "rd_src", model_key="rd_unknown", activate=False)
    finally:
        conn.execute("RESET woe_anchor.reader")


@pytest.mark.parametrize("value, message", [("1kB", "at least 64 kB"), ("lots", "invalid size")])
def test_a_fit_memory_too_small_or_not_a_size_is_refused(conn, value, message):
    cases.load(conn, "rd_src", cases.make_rows(seed=97, n=300))
    conn.execute("SELECT set_config('woe_anchor.fit_memory', %s, false)", [value])
    try:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=message) as refused:
            fit(conn, "rd_src", model_key="rd_memory", activate=False)
    finally:
        conn.execute("RESET woe_anchor.fit_memory")
    assert "Traceback" not in str(refused.value)
    assert not conn.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1 WHERE model_key = 'rd_memory'"
                            ).fetchone()[0]


def _fit_memory_fit(conn, source: str, key: str, fit_memory: str | None) -> dict:
    if fit_memory:
        conn.execute("SELECT set_config('woe_anchor.fit_memory', %s, false)", [fit_memory])
    try:
        conn.notices.clear()
        fit(conn, source, model_key=key, replace=True, activate=False)
    finally:
        conn.execute("RESET woe_anchor.fit_memory")
    chunked = any("chunks (woe_anchor.fit_memory)" in n for n in conn.notices)
    assert chunked == bool(fit_memory), conn.notices
    got = artifacts.comparable(conn, key)
    got[0].pop("source_relation")
    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])
    return got


def test_partitions_of_uneven_size_and_a_materialized_view_read_in_chunks_give_the_same_model(conn):
    """Chunks are block ranges cut from every heap a scan reads: a partitioned table's partitions
    (one tenth of the rows in one, the rest in the other) and a materialized view's."""
    cases.load(conn, "rd_src", cases.make_rows(seed=98))
    cut = conn.execute("SELECT percentile_disc(0.1) WITHIN GROUP (ORDER BY listing_id) FROM rd_src").fetchone()[0]
    conn.execute("DROP TABLE IF EXISTS rd_part; DROP MATERIALIZED VIEW IF EXISTS rd_mat")
    conn.execute("CREATE TABLE rd_part (LIKE rd_src) PARTITION BY RANGE (listing_id)")
    conn.execute(f"CREATE TABLE rd_part_small PARTITION OF rd_part FOR VALUES FROM (MINVALUE) TO ({cut})")
    conn.execute(f"CREATE TABLE rd_part_large PARTITION OF rd_part FOR VALUES FROM ({cut}) TO (MAXVALUE)")
    conn.execute("INSERT INTO rd_part SELECT * FROM rd_src")
    conn.execute("CREATE MATERIALIZED VIEW rd_mat AS SELECT * FROM rd_src")
    conn.execute("ANALYZE rd_part, rd_mat")
    want = _fit_memory_fit(conn, "rd_src", "rd_plain", None)
    for source in ("rd_part", "rd_mat"):
        assert _fit_memory_fit(conn, source, f"{source}_chunks", "64kB") == want, source
    conn.execute("DROP TABLE rd_part; DROP MATERIALIZED VIEW rd_mat")


JIT_SETTINGS = ("SELECT array_agg(ROW(name, setting, source)::text ORDER BY name) FROM pg_settings "
                "WHERE name IN ('jit', 'jit_above_cost', 'jit_optimize_above_cost', 'jit_inline_above_cost')")


def _chunked_fit_plans(dsn, options: str = "", setting: str | None = None) -> tuple[list, list, list, list]:
    """The plans of a chunked fit's reads of the rows and writes of the scores, as auto_explain
    reports every statement to the session, and the JIT settings (value and source) before and
    after the fit in its transaction; ``setting``: woe_anchor.jit for the fit."""
    with psycopg.connect(dsn, autocommit=True, options=options) as c:
        plans = []
        c.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
        plans_as_notices(c)
        c.execute("SET woe_anchor.fit_memory = '64kB'")
        with c.transaction():
            if setting is not None:
                c.execute("SELECT set_config('woe_anchor.jit', %s, true)", [setting])
            before = c.execute(JIT_SETTINGS).fetchone()[0]
            fit(c, "rd_src", model_key="rd_compiled", replace=True, activate=False)
            after = c.execute(JIT_SETTINGS).fetchone()[0]
        c.execute("SELECT ml.woe_anchor_drop_model('rd_compiled')")
    reads = [p for p in plans if "Tid Range Scan" in p and "string_agg(int8send" in p]
    writes = [p for p in plans if "CREATE TABLE" in p]
    return reads, writes, before, after


def test_a_read_in_chunks_runs_compiled_unless_jit_is_turned_off(conn, dsn):
    """The rows read in chunks (many rows, which the plan of a TID range scan cannot tell) run
    compiled by the JIT; the scores' write, far below its planned cost threshold here, does not
    (test_a_compiled_scores_write_gives_the_same_bits lowers it). The caller's JIT settings are as they
    were after the fit, in its transaction, values and sources. Nothing compiles when the
    connection's configuration turns the JIT off (jit, or jit_above_cost = -1) or the session sets
    woe_anchor.jit = off; the routines that compile declare no inlining, which the chunked read,
    one process's, turns on for itself. (The chunked fits of
    test_both_readers_give_bit_identical_artifacts compile, the others do not: the same bits.)"""
    skip_without_jit(conn)
    cases.load(conn, "rd_src", cases.make_rows(seed=101))
    reads, writes, before, after = _chunked_fit_plans(dsn)
    assert len(reads) == 1 and writes, (len(reads), len(writes))
    assert "JIT:" in reads[0] and "Optimization true, Expressions" in reads[0], reads[0][-400:]
    assert "Inlining true" in reads[0], "a read in chunks, one process's, inlines"
    assert not any("JIT:" in w for w in writes)
    assert after == before and "(jit_above_cost,100000,default)" in before, before
    for options, setting in (("-c jit=off", None), ("-c jit_above_cost=-1", None), ("", "off")):
        reads, _, before, after = _chunked_fit_plans(dsn, options=options, setting=setting)
        assert len(reads) == 1 and "JIT:" not in reads[0], (options, setting)
        assert after == before
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="woe_anchor.jit must be 'on' or 'off'"):
        _chunked_fit_plans(dsn, setting="sometimes")
    compiling = conn.execute(
        "SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc AS p "
        "WHERE p.pronamespace = 'woe_anchor_internal'::regnamespace "
        "AND p.proconfig @> '{jit=off,jit_inline_above_cost=-1}'").fetchone()[0]
    assert compiling == ["drift", "fit", "monitor", "realized"]


FIT_ROUTINE = ("woe_anchor_internal.fit(oid, timestamptz, int, float8, float8, float8, float8, float8[], text, "
               "boolean, boolean, boolean, boolean, int, boolean)")
SCORES = ("SELECT generation, listing_id, t0, fold_id, is_oof, float8send(woe_logit), float8send(woe_p) "
          "FROM ml.woe_anchor_scores_v1 WHERE model_key = %s ORDER BY generation, listing_id, t0")
FIGURES = ("SELECT oof_auc, insample_auc, eval_auc, oof_logloss, eval_logloss, score_bins::text "
           "FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s")


@pytest.mark.parametrize("params", [{}, {"n_folds": 20}, {"oof": False}], ids=["five_folds", "twenty_folds", "in_sample"])
def test_a_compiled_scores_write_gives_the_same_bits(conn, params):
    """Past a planned cost (the fit's jit_above_cost, about 700k rows) the scores' write runs
    compiled by the JIT; its lookups are two-dimensional arrays of (fit, combination), so what
    compiles does not grow with the folds. With that cost lowered to 0 the write compiles on these
    few rows, as auto_explain shows, and every score and quality figure is the same as interpreted."""
    skip_without_jit(conn)
    cases.load(conn, "rd_src", cases.make_rows(seed=103))
    fit(conn, "rd_src", model_key="rd_interpreted", replace=True, activate=False, **params)
    config = routine_config(conn, FIT_ROUTINE)
    with compiling_at_any_cost(conn, FIT_ROUTINE):
        fit(conn, "rd_src", model_key="rd_compiled_write", replace=True, activate=False, **params)
    writes = [n for n in conn.notices if "CREATE TABLE" in n and "woe_logit" in n]
    assert len(writes) == 1 and "JIT:" in writes[0] and "Inlining false, Optimization true" in writes[0], writes
    interpreted, compiled = ([conn.execute(q, [key]).fetchall() for q in (SCORES, FIGURES)]
                             for key in ("rd_interpreted", "rd_compiled_write"))
    assert compiled == interpreted and interpreted[0] and interpreted[1][0][1] is not None
    assert routine_config(conn, FIT_ROUTINE) == config
    for key in ("rd_interpreted", "rd_compiled_write"):
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])


def test_temp_file_limit_bounds_the_chunks_on_disk(conn):
    """The file that keeps the chunks counts against temp_file_limit as PostgreSQL's own do."""
    cases.load(conn, "rd_src", cases.make_rows(seed=99))
    before = artifacts.stored_counts(conn)
    conn.execute("SET woe_anchor.fit_memory = '64kB'")
    conn.execute("SET temp_file_limit = '64kB'")
    try:
        with pytest.raises(psycopg.errors.ConfigurationLimitExceeded, match="temp_file_limit") as refused:
            fit(conn, "rd_src", model_key="rd_limited", activate=False)
    finally:
        conn.execute("RESET woe_anchor.fit_memory; RESET temp_file_limit")
    assert "Traceback" not in str(refused.value)
    assert artifacts.stored_counts(conn) == before


@pytest.mark.local_server
def test_chunks_go_to_the_first_temp_tablespace_as_postgresql_reads_the_setting(conn, server):
    """temp_tablespaces is read as PostgreSQL reads it (a name that needs them comes back in
    double quotes). Here that tablespace's pgsql_tmp is a plain file, so a fit keeping its chunks there is refused (58030),
    and with the setting reset the same fit keeps them in the data directory and succeeds."""
    cases.load(conn, "rd_src", cases.make_rows(seed=100))
    location = f"/var/tmp/woe_anchor_ts_{os.getpid()}"   # a path of the server's file system
    host = server.host_path(location)
    host.mkdir(mode=0o700)
    os.chown(host, *server.owner_ids())
    conn.execute(f"CREATE TABLESPACE \"Woe Tmp\" LOCATION '{location}'")
    blocker = next(p for p in host.iterdir() if p.name.startswith("PG_")) / "pgsql_tmp"
    try:
        blocker.write_bytes(b"")
        conn.execute("SET woe_anchor.fit_memory = '64kB'")
        conn.execute('SET temp_tablespaces = "Woe Tmp"')
        with pytest.raises(psycopg.errors.IoError, match="temporary file"):
            fit(conn, "rd_src", model_key="rd_in_tablespace", activate=False)
        conn.execute("RESET temp_tablespaces")
        fit(conn, "rd_src", model_key="rd_in_tablespace", activate=False)
        conn.execute("SELECT ml.woe_anchor_drop_model('rd_in_tablespace')")
        # an empty name is the database's default tablespace (SHOW prints it as ""), wherever it is listed
        for setting in ("''", "'', \"Woe Tmp\""):
            conn.execute(f"SET temp_tablespaces = {setting}")
            fit(conn, "rd_src", model_key="rd_in_tablespace", activate=False)
            conn.execute("SELECT ml.woe_anchor_drop_model('rd_in_tablespace')")
        conn.execute("SET temp_tablespaces = \"Woe Tmp\", ''")
        with pytest.raises(psycopg.errors.IoError, match="temporary file"):
            fit(conn, "rd_src", model_key="rd_in_tablespace", activate=False)
    finally:
        conn.execute("RESET woe_anchor.fit_memory; RESET temp_tablespaces")
        blocker.unlink(missing_ok=True)
        conn.execute('DROP TABLESPACE "Woe Tmp"')
        shutil.rmtree(host, ignore_errors=True)
