"""Serving: the live views reach the source's indexes, give the same bits as the scoring function
and the stored in-sample scores, and can be re-created while readers read them."""
from __future__ import annotations

import threading
import time

import psycopg
import pytest

import cases
from conftest import fit
from woe_anchor_harness import datagen

LIVE = ("ml.woe_anchor_scores_live_train_v", "ml.woe_anchor_scores_live_v1", "ml.v_woe_anchor_bands_live_v1")


def _drop_views(conn):
    conn.execute(f"DROP VIEW IF EXISTS {', '.join(LIVE)}")
    conn.execute("DELETE FROM ml.woe_anchor_views WHERE kind <> 'source'")


@pytest.fixture
def served(conn):
    """An integer-keyed source (as the demo generator makes it) with an index on listing_id."""
    datagen.generate_listings(conn, "sv_src", rows=20_000, days=60)
    conn.execute("CREATE INDEX ON sv_src (listing_id)")
    conn.execute("ANALYZE sv_src")
    key = fit(conn, "sv_src", model_key="sv_model", replace=True, oof=False)
    _drop_views(conn)
    conn.execute("SELECT ml.woe_anchor_create_views('sv_src')")
    yield key
    _drop_views(conn)


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
    _drop_views(conn)
    try:
        conn.execute("SELECT ml.woe_anchor_create_views('sv_cat')")
        function, views, stored = _three_paths(conn, "sv_cat", key)
        assert views == function
        assert all(stored[k] == function[k] for k in stored) and stored
    finally:
        _drop_views(conn)
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
