"""Serving: the live views reach the source's indexes, give the same bits as the scoring function
and the stored in-sample scores, and can be re-created while readers read them."""
from __future__ import annotations

import threading
import time

import psycopg
import pytest

import cases
from conftest import drop_live_views, fit
from woe_anchor_harness import datagen

LIVE = ("ml.woe_anchor_scores_live_train_v", "ml.woe_anchor_scores_live_v1", "ml.v_woe_anchor_bands_live_v1")


@pytest.fixture
def served(conn):
    """An integer-keyed source (as the demo generator makes it) with an index on listing_id."""
    datagen.generate_listings(conn, "sv_src", rows=20_000, days=60)
    conn.execute("CREATE INDEX ON sv_src (listing_id)")
    conn.execute("ANALYZE sv_src")
    key = fit(conn, "sv_src", model_key="sv_model", replace=True, oof=False)
    drop_live_views(conn)
    conn.execute("SELECT ml.woe_anchor_create_views('sv_src')")
    yield key
    drop_live_views(conn)


def test_views_keep_the_source_key_types_and_reach_its_index(conn, served):
    types = dict(conn.execute("SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
                              "WHERE attrelid = 'ml.woe_anchor_scores_live_v1'::regclass "
                              "AND attname IN ('generation', 'listing_id')").fetchall())
    assert types == {"generation": "integer", "listing_id": "integer"}, "the source's own key types"
    lid = conn.execute("SELECT listing_id FROM sv_src ORDER BY listing_id OFFSET 777 LIMIT 1").fetchone()[0]
    for view in LIVE:
        plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN (COSTS OFF) SELECT * FROM {view} WHERE listing_id = %s",
                                                    [lid]).fetchall())
        assert "Index Scan using sv_src_listing_id_idx" in plan or "Bitmap Index Scan on sv_src_listing_id_idx" in plan, plan
        assert "Seq Scan on sv_src" not in plan, plan
    assert conn.execute(f"SELECT count(*) FROM {LIVE[0]} WHERE listing_id = %s", [lid]).fetchone()[0] == 1


def _three_paths(conn, source: str, key: str) -> tuple[dict, dict, dict]:
    """(generation, listing_id, t0) -> (logit, p) by the scoring function, the live train view and
    the model's stored scores."""
    def read(query, *args):
        return {r[:3]: r[3:] for r in conn.execute(query, args)}
    return (read("SELECT generation, listing_id, t0, woe_logit, woe_anchor_p_slow21 "
                 "FROM ml.woe_anchor_score(%s::regclass)", source),
            read(f"SELECT generation, listing_id, t0, woe_logit, woe_anchor_p_slow21 FROM {LIVE[0]}"),
            read("SELECT generation, listing_id, t0, woe_logit, woe_p FROM ml.woe_anchor_scores_v1 "
                 "WHERE model_key = %s", key))


def test_every_scoring_path_gives_the_same_bits(conn, served):
    """The scoring function, the live views and an in-sample fit's stored scores: one mapping, one
    result, to the last bit (the views add each pack's WOE in the compiled scoring's order)."""
    function, views, stored = _three_paths(conn, "sv_src", served)
    assert len(function) == 20_000 and views.keys() == function.keys() and stored.keys() <= function.keys()
    assert [k for k in function if views[k] != function[k]] == [], "views and function differ"
    assert [k for k in stored if stored[k] != function[k]] == [], "stored in-sample scores and function differ"


def test_a_schema_with_categories_scores_the_same_bits_everywhere(conn, dsn):
    """Category bands (values learned per model) are packs of their own, so the views, made for the
    schema, group the WOE as the compiled scoring does for any model of it."""
    conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE band_schema_version = 12")
    conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE version = 12")
    cases.define_schema_2(conn, 12, 70.0)
    rows = cases.skew_generations(cases.make_rows(seed=97), 97)
    cases.load(conn, "sv_cat", rows)
    key = fit(conn, "sv_cat", model_key="sv_cat_model", replace=True, oof=False, band_schema_version=12)
    drop_live_views(conn)
    try:
        conn.execute("SELECT ml.woe_anchor_create_views('sv_cat')")
        function, views, stored = _three_paths(conn, "sv_cat", key)
        assert views == function
        assert all(stored[k] == function[k] for k in stored) and stored
    finally:
        drop_live_views(conn)
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])


def test_views_are_recreated_under_readers_without_an_error(conn, dsn, served):
    """Readers lock train, scores, bands in that order; create_views replaces them in that order
    too, so a reader waits for it instead of deadlocking with it."""
    stop, errors, reads, slowest = threading.Event(), [], [0, 0, 0], [0.0]

    def reader(i, query):
        try:
            with psycopg.connect(dsn, autocommit=True) as r:
                while not stop.is_set():
                    t = time.monotonic()
                    r.execute(query).fetchall()
                    slowest[0] = max(slowest[0], time.monotonic() - t)
                    reads[i] += 1
        except Exception as e:  # every failure is reported by the assertion below
            errors.append(e)

    lid = conn.execute("SELECT min(listing_id) FROM sv_src").fetchone()[0]
    queries = [f"SELECT * FROM {view} WHERE listing_id = {lid}" for view in LIVE]
    threads = [threading.Thread(target=reader, args=(i, q)) for i, q in enumerate(queries)]
    for t in threads:
        t.start()
    try:
        for n in range(15):
            conn.execute("SELECT ml.woe_anchor_create_views('sv_src', guard => %s)", ["" if n % 2 else "true AS ok"])
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert errors == [], errors
    assert all(reads), reads


@pytest.mark.parametrize("schema", [1, "categories"])
def test_reasons_add_up_to_the_scores(conn, schema):
    """Per band: the final WOE adds up (with the base logit) to the score, and on training rows the
    out-of-fold WOE adds up (with the fold's base logit) to the stored OOF score."""
    version = 1
    if schema == "categories":
        version = 13
        conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE band_schema_version = 13")
        conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE version = 13")
        cases.define_schema_2(conn, 13, 70.0)
    rows = cases.skew_generations(cases.make_rows(seed=107), 107)
    cases.load(conn, "sv_reasons", rows)
    key = fit(conn, "sv_reasons", model_key=f"sv_reasons_{version}", replace=True, activate=False,
              band_schema_version=version)
    base = dict(conn.execute("SELECT coalesce(fold_id, -1), base_logit FROM ml.woe_anchor_cuts_v1 WHERE model_key = %s",
                             [key]).fetchall())
    final, oof = {}, {}
    for g, lid, t0, band, value, woe, fold, oof_woe in conn.execute(
            "SELECT * FROM ml.woe_anchor_reasons('sv_reasons', %s)", [key]):
        final[(g, lid, t0)] = final.get((g, lid, t0), base[-1]) + woe
        if fold is not None:
            oof[(g, lid, t0)] = oof.get((g, lid, t0), base[fold]) + oof_woe
    scores = {r[:3]: r[3] for r in conn.execute(
        "SELECT generation, listing_id, t0, woe_logit FROM ml.woe_anchor_score('sv_reasons', %s)", [key])}
    stored = {r[:3]: r[3] for r in conn.execute(
        "SELECT generation, listing_id, t0, woe_logit FROM ml.woe_anchor_stored_scores(%s)", [key])}
    assert final.keys() == scores.keys() and oof.keys() == stored.keys() and stored
    assert max(abs(final[k] - scores[k]) for k in scores) < 1e-12
    assert max(abs(oof[k] - stored[k]) for k in stored) < 1e-12
    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])


def _by_key(rows) -> dict:
    return {r[:3]: r[3:] for r in rows}


def _plan(conn, query: str, *args) -> str:
    return "\n".join(r[0] for r in conn.execute(f"EXPLAIN (COSTS OFF) {query}", args).fetchall())


def _run_nodes(conn, query: str, *args) -> list[dict]:
    """Every node of the query's plan, as it ran (EXPLAIN ANALYZE)."""
    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)
    plan = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", args or None).fetchone()[0][0]["Plan"]
    return list(nodes(plan))


def test_per_row_functions_give_the_same_bits_and_cost_a_lookup(conn, served):
    """ml.woe_anchor_scores_of(row) (inlined into a LATERAL join), ml.woe_anchor_logit(row) and
    ml.woe_anchor_p(row) score with the final mapping exactly as ml.woe_anchor_score does, and a
    point query through them is an index scan of the source."""
    function = _by_key(conn.execute("SELECT generation, listing_id, t0, woe_logit, woe_anchor_p_slow21 "
                                    "FROM ml.woe_anchor_score('sv_src'::regclass)"))
    lateral = _by_key(conn.execute("SELECT l.generation, l.listing_id, l.t0, s.woe_logit, s.woe_anchor_p_slow21 "
                                   "FROM sv_src AS l CROSS JOIN LATERAL ml.woe_anchor_scores_of(l) AS s"))
    scalar = _by_key(conn.execute("SELECT generation, listing_id, t0, ml.woe_anchor_logit(l), ml.woe_anchor_p(l) "
                                  "FROM sv_src AS l WHERE listing_id % 40 = 0"))
    assert len(function) == 20_000 and lateral == function
    assert len(scalar) >= 400 and all(scalar[k] == function[k] for k in scalar)
    lid = conn.execute("SELECT listing_id FROM sv_src ORDER BY listing_id OFFSET 321 LIMIT 1").fetchone()[0]
    point = _plan(conn, "SELECT l.*, ml.woe_anchor_p(l) FROM sv_src AS l WHERE listing_id = %s", lid)
    assert "sv_src_listing_id_idx" in point and "Seq Scan" not in point, point
    joined = _plan(conn, "SELECT s.* FROM sv_src AS l CROSS JOIN LATERAL ml.woe_anchor_scores_of(l) AS s "
                         "WHERE l.listing_id = %s", lid)
    assert "Function Scan" not in joined and "sv_src_listing_id_idx" in joined, "inlined: " + joined
    # over many rows the map is pivoted once, not once per row (the plan's aggregate runs one loop)
    many = _run_nodes(conn, "SELECT s.* FROM sv_src AS l "
                            "CROSS JOIN LATERAL ml.woe_anchor_scores_of(l) AS s WHERE l.listing_id % 50 = 0")
    aggregates = [n for n in many if n["Node Type"] == "Aggregate"]
    assert aggregates and all(n["Actual Loops"] == 1 for n in aggregates), \
        [(n["Node Type"], n["Actual Loops"]) for n in aggregates]


def test_a_point_query_reads_one_models_map_however_many_are_stored(conn, served):
    """The serving model is found by its key, so the registry and the map are read through their
    keys: a point query through the views or the per-row function reads the final map rows of one
    model, not of every stored model (a review measured 0.15 ms a row with one model and 0.81 ms
    with 60 when every final map row was pivoted)."""
    others = [fit(conn, "sv_src", model_key=f"sv_stored_{k}", replace=True, oof=False, activate=False,
                  half_life_days=10.0 + k) for k in range(3)]
    try:
        one = conn.execute("SELECT count(*) FROM ml.woe_anchor_map_v1 WHERE model_key = %s AND fold_id IS NULL",
                           [served]).fetchone()[0]
        lid = conn.execute("SELECT listing_id FROM sv_src ORDER BY listing_id OFFSET 77 LIMIT 1").fetchone()[0]
        for query in ("SELECT s.* FROM sv_src AS l CROSS JOIN LATERAL ml.woe_anchor_scores_of(l) AS s "
                      "WHERE l.listing_id = %s",
                      "SELECT * FROM ml.woe_anchor_scores_live_v1 WHERE listing_id = %s"):
            read = sum(n["Actual Rows"] * n["Actual Loops"] for n in _run_nodes(conn, query, lid)
                       if n.get("Relation Name") == "woe_anchor_map_v1")
            assert 0 < read <= one, (query, read, one)
    finally:
        for key in others:
            conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])


def test_per_row_functions_take_a_model_key(conn, served):
    """Any stored model of the set's band schema, by key; an unknown key is an error, as everywhere."""
    other = fit(conn, "sv_src", model_key="sv_other", replace=True, oof=False, activate=False, half_life_days=30)
    try:
        want = _by_key(conn.execute("SELECT generation, listing_id, t0, woe_logit, woe_anchor_p_slow21 "
                                    "FROM ml.woe_anchor_score('sv_src'::regclass, %s)", [other]))
        got = _by_key(conn.execute("SELECT generation, listing_id, t0, ml.woe_anchor_logit(l, %s), "
                                   "ml.woe_anchor_p(l, %s) FROM sv_src AS l WHERE listing_id %% 50 = 0",
                                   [other, other]))
        assert got and all(got[k] == want[k] for k in got)
        active = conn.execute("SELECT ml.woe_anchor_p(l) FROM sv_src AS l LIMIT 1").fetchone()[0]
        assert active == conn.execute("SELECT ml.woe_anchor_p(l, %s) FROM sv_src AS l LIMIT 1", [served]).fetchone()[0]
        with pytest.raises(psycopg.errors.NoDataFound, match="model 'nope' does not exist"):
            conn.execute("SELECT ml.woe_anchor_p(l, 'nope') FROM sv_src AS l LIMIT 1")
    finally:
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [other])


def test_named_sets_of_views_and_functions(conn, served):
    """name => 'two' makes ml.woe_anchor_two_bands, _scores, _train and the functions
    ml.woe_anchor_two_scores_of, _logit, _p over a second source beside the default set; each
    function name takes its own source's rows only; drop_views(source) drops that set only."""
    datagen.generate_listings(conn, "sv_two", rows=2_000, days=30)
    conn.execute("SELECT ml.woe_anchor_create_views('sv_two', name => 'two')")
    made = dict(conn.execute("SELECT view_name, kind FROM ml.woe_anchor_views WHERE set_name = 'two'").fetchall())
    assert made == {"ml.woe_anchor_two_bands": "bands", "ml.woe_anchor_two_scores": "scores",
                    "ml.woe_anchor_two_train": "train", "ml.woe_anchor_two_scores_of": "function",
                    "ml.woe_anchor_two_logit": "function", "ml.woe_anchor_two_p": "function"}
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_two_train").fetchone()[0] == 2_000
    assert conn.execute("SELECT count(ml.woe_anchor_two_p(l)) FROM sv_two AS l").fetchone()[0] == 2_000
    assert conn.execute(f"SELECT count(*) FROM {LIVE[1]}").fetchone()[0] == 20_000, "the default set still serves"
    with pytest.raises(psycopg.errors.UndefinedFunction):
        conn.execute("SELECT ml.woe_anchor_p(l) FROM sv_two AS l LIMIT 1")  # the default set serves sv_src
    with pytest.raises(psycopg.errors.DuplicateObject, match="the live views 'two' serve public.sv_two"):
        conn.execute("SELECT ml.woe_anchor_create_views('sv_src', name => 'two')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="lower-case identifier"):
        conn.execute("SELECT ml.woe_anchor_create_views('sv_two', name => 'Two; DROP')")
    conn.execute("SELECT ml.woe_anchor_create_views('sv_two', name => 'again')")  # a second set over one source
    dropped = {r[0] for r in conn.execute("SELECT ml.woe_anchor_drop_views('sv_two')")}
    assert dropped == {"ml.woe_anchor_two_bands", "ml.woe_anchor_two_scores", "ml.woe_anchor_two_train",
                       "ml.woe_anchor_again_bands", "ml.woe_anchor_again_scores", "ml.woe_anchor_again_train"} | {
        f"ml.woe_anchor_{s}_{f}(public.sv_two,text)" for s in ("two", "again") for f in ("scores_of", "logit", "p")}
    assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'woe_anchor%' "
                        "AND pg_get_function_arguments(oid) LIKE 's sv_two%'").fetchone()[0] == 0
    with pytest.raises(psycopg.errors.UndefinedTable):  # a relation that is gone is not NULL, "every set"
        conn.execute("SELECT ml.woe_anchor_drop_views(4294967294::oid::regclass)")
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_views WHERE source = 'public.sv_src'").fetchone()[0] == 6


def test_a_moved_or_renamed_source_never_blocks_grants_and_drops(conn, served):
    """Functions are found in the catalog, not by their recorded signature: a renamed source keeps
    grant, revoke and drop_views working; the default set moved to another source takes its
    functions along (one signature per name)."""
    datagen.generate_listings(conn, "sv_moving", rows=1_000, days=30)
    conn.execute("DROP ROLE IF EXISTS sv_grantee")
    conn.execute("CREATE ROLE sv_grantee")
    try:
        conn.execute("SELECT ml.woe_anchor_create_views('sv_moving', name => 'moving')")
        conn.execute("ALTER TABLE sv_moving RENAME TO sv_moved")
        conn.execute("SELECT ml.woe_anchor_grant(reader => 'sv_grantee')")
        assert conn.execute("SELECT has_function_privilege('sv_grantee', 'ml.woe_anchor_moving_p(sv_moved, text)', "
                            "'EXECUTE')").fetchone()[0]
        conn.execute("SELECT ml.woe_anchor_revoke('sv_grantee')")
        assert not conn.execute("SELECT has_function_privilege('sv_grantee', 'ml.woe_anchor_moving_p(sv_moved, text)', "
                                "'EXECUTE')").fetchone()[0]
        dropped = {r[0] for r in conn.execute("SELECT ml.woe_anchor_drop_views('sv_moved')")}
        assert "ml.woe_anchor_moving_p(public.sv_moved,text)" in dropped and "ml.woe_anchor_moving_scores" in dropped
        conn.execute("SELECT ml.woe_anchor_create_views('sv_moved')")  # the default set, from sv_src to sv_moved
        takes = [r[0] for r in conn.execute("SELECT pg_get_function_identity_arguments(oid) FROM pg_proc "
                                            "WHERE proname = 'woe_anchor_p'")]
        assert takes == ["s sv_moved, model_key text"]
    finally:
        conn.execute("DROP OWNED BY sv_grantee")
        conn.execute("DROP ROLE sv_grantee")
        conn.execute("SELECT ml.woe_anchor_create_views('sv_src')")
        conn.execute("SELECT ml.woe_anchor_drop_views('sv_moved')")
        conn.execute("DROP TABLE sv_moved")


def test_a_null_row_has_no_score(conn, served):
    """The missing side of an outer join scores NULL (and no row through the LATERAL form)."""
    row = conn.execute("SELECT ml.woe_anchor_p(l), ml.woe_anchor_logit(l) FROM (VALUES (1)) AS v "
                       "LEFT JOIN sv_src AS l ON false").fetchone()
    assert row == (None, None)
    assert conn.execute("SELECT count(*) FROM (VALUES (1)) AS v LEFT JOIN sv_src AS l ON false "
                        "CROSS JOIN LATERAL ml.woe_anchor_scores_of(l)").fetchone()[0] == 0


def test_per_row_functions_are_granted_not_public(conn, served):
    """Like every routine of the extension: no EXECUTE for PUBLIC; ml.woe_anchor_grant gives readers it."""
    conn.execute("DROP ROLE IF EXISTS sv_reader")
    conn.execute("CREATE ROLE sv_reader")
    try:
        public = conn.execute("SELECT bool_or(has_function_privilege('public', p.oid, 'EXECUTE')) FROM pg_proc AS p "
                              "WHERE p.proname IN ('woe_anchor_p', 'woe_anchor_logit', 'woe_anchor_scores_of')").fetchone()[0]
        assert public is False
        conn.execute("GRANT SELECT ON sv_src TO sv_reader")
        conn.execute("SELECT ml.woe_anchor_grant(reader => 'sv_reader')")
        conn.execute("SET ROLE sv_reader")
        try:
            p = conn.execute("SELECT ml.woe_anchor_p(l) FROM sv_src AS l LIMIT 1").fetchone()[0]
        finally:
            conn.execute("RESET ROLE")
        assert 0 < p < 1
    finally:
        conn.execute("SELECT ml.woe_anchor_revoke('sv_reader')")
        conn.execute("DROP OWNED BY sv_reader")
        conn.execute("DROP ROLE sv_reader")
