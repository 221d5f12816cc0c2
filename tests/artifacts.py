"""Read a model's persisted artifacts back into plain Python structures."""
from __future__ import annotations


def registry(conn, key):
    cur = conn.execute("SELECT * FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s", [key])
    row = cur.fetchone()
    return None if row is None else dict(zip([d.name for d in cur.description], row))


def partition(conn, key):
    """The model's score partition, qualified, by the documented rule (docs/reference.md)."""
    return f"woe_anchor_scores.woe_anchor_scores_v1_m{registry(conn, key)['model_id']}"


def cuts(conn, key):
    rows = conn.execute("SELECT fold_id, c1, c2, base_rate, base_logit, n_learned "
                        "FROM ml.woe_anchor_cuts_v1 WHERE model_key = %s", [key]).fetchall()
    return {r[0]: r[1:] for r in rows}


def maps(conn, key):
    rows = conn.execute("SELECT fold_id, band_name, band_value, woe, sum_w_pos, sum_w_neg, n_rows "
                        "FROM ml.woe_anchor_map_v1 WHERE model_key = %s", [key]).fetchall()
    return {(r[0], r[1], r[2]): r[3:] for r in rows}


def scores(conn, key):
    """The stored scores wherever they live (shard tables too: scores_on_shards)."""
    rows = conn.execute("SELECT generation, listing_id, "
                        "(extract(epoch FROM t0) * 1000000)::bigint, fold_id, is_oof, woe_logit, woe_p "
                        "FROM ml.woe_anchor_stored_scores(%s)", [key]).fetchall()
    return {(r[0], r[1], r[2]): r[3:] for r in rows}


def rows_of(conn, key):
    """Row counts of every artifact table for one model key."""
    return {t: conn.execute(f"SELECT count(*) FROM ml.{t} WHERE model_key = %s", [key]).fetchone()[0]
            for t in ("woe_anchor_model_registry_v1", "woe_anchor_cuts_v1", "woe_anchor_map_v1",
                      "woe_anchor_scores_v1")}


def active_keys(conn):
    return [r[0] for r in conn.execute(
        "SELECT model_key FROM ml.woe_anchor_model_registry_v1 WHERE is_active ORDER BY 1").fetchall()]


def comparable(conn, key):
    """Everything persisted for a model except what names or times it."""
    reg = registry(conn, key)
    for k in ("model_key", "model_id", "created_at", "timings_ms", "is_active", "parameters"):
        reg.pop(k)
    return reg, cuts(conn, key), maps(conn, key), scores(conn, key)


def stored_counts(conn):
    """Rows of every artifact table, attached score partitions, and score tables anywhere."""
    return conn.execute("""
        SELECT (SELECT count(*) FROM ml.woe_anchor_model_registry_v1),
               (SELECT count(*) FROM ml.woe_anchor_cuts_v1), (SELECT count(*) FROM ml.woe_anchor_map_v1),
               (SELECT count(*) FROM pg_inherits WHERE inhparent = 'ml.woe_anchor_scores_v1'::regclass),
               (SELECT count(*) FROM pg_class WHERE relname LIKE 'woe_anchor_scores_v1_m%')""").fetchone()
