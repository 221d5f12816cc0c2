"""Synthetic marketplace listings generated inside the server (one CREATE TABLE AS).

Each row is a listing snapshot at t0 over several months. Its chance of being
slow (>= 21 days to sell) follows a latent logit in the band inputs (price vs.
sold median, condition, damage, battery, seller trust, shipping, sale mode,
photos, accessories), so a WOE model has real signal to find. Inputs carry
NULLs, listings still on sale at the snapshot are unsold (censored or not),
and a few stale ones are marked 'older21days'.
"""
from __future__ import annotations

from psycopg import sql

GENERATE = """
CREATE TABLE {table} AS
SELECT generation, listing_id, t0,
       CASE WHEN sold THEN t0 + duration * interval '1 hour' END AS sold_time,
       CASE WHEN sold THEN duration
            ELSE round((extract(epoch FROM (observed_at - t0)) / 3600)::numeric, 2)::float8 END
           AS duration_hours,
       CASE WHEN sold THEN 'sold'
            WHEN observed_at - t0 >= interval '21 days' AND u_status < 0.5 THEN 'older21days'
            WHEN u_status < 0.8 THEN 'active' ELSE 'inactive' END AS final_status,
       delta_vs_sold_median_30d, condition_score, damage_severity_ai, battery_pct_effective,
       seller_rating, review_count, member_since_year,
       ai_ship_can, ai_ship_pickup, ai_pickup_only_bin,
       ai_sale_mode_firm, ai_sale_mode_bids, ai_sale_mode_obo,
       image_count, caption_share, stock_photo_share, photo_quality_avg, bg_clean_avg,
       dmg_band_hq_struct, charger_bundle_level, box_present, receipt_present
FROM (
  SELECT *,
         -- slow listings take 3 weeks or more; the rest sell within 2 to 503 hours
         CASE WHEN random() < 1 / (1 + exp(-latent))
              THEN 504 + round((-ln(1 - random()) * 400)::numeric, 2)::float8
              ELSE round((2 + random() * 501)::numeric, 2)::float8 END AS duration,
         random() AS u_status
  FROM (
    SELECT *,
           -1.1 + 2.5 * coalesce(delta_vs_sold_median_30d, 0)
           - 0.9 * coalesce((condition_score >= 0.9)::int, 0) + 0.5 * coalesce(condition_score < 0.7, false)::int
           + 0.35 * coalesce(damage_severity_ai, 1)
           - 0.6 * coalesce((battery_pct_effective >= 95)::int, 0)
           - 0.7 * coalesce(seller_rating >= 9.7 AND review_count >= 50, false)::int
           + 0.6 * ai_pickup_only_bin - 0.3 * ai_ship_can
           + 0.4 * ai_sale_mode_firm - 0.25 * ai_sale_mode_bids
           - 0.12 * coalesce(image_count, 0) + 0.8 * coalesce(stock_photo_share, 0)
           - 0.3 * coalesce(box_present::int, 0) AS latent
    FROM (
      SELECT 1 + i % 4 AS generation,
             1000000 + i AS listing_id,
             {start}::timestamptz + (random() * {days}) * interval '1 day' AS t0,
             {start}::timestamptz + ({days} + 2) * interval '1 day' AS observed_at,
             CASE WHEN random() < 0.06 THEN NULL
                  ELSE round(((random() + random() + random() - 1.5) * 0.5)::numeric, 4)::float8 END
                 AS delta_vs_sold_median_30d,
             CASE WHEN random() < 0.08 THEN NULL ELSE round(sqrt(random())::numeric, 3)::float8 END
                 AS condition_score,
             CASE WHEN random() < 0.10 THEN NULL ELSE floor(random() * random() * 4.5)::float8 END
                 AS damage_severity_ai,
             CASE WHEN random() < 0.20 THEN NULL ELSE round((70 + 30 * sqrt(random()))::numeric, 1)::float8 END
                 AS battery_pct_effective,
             CASE WHEN random() < 0.05 THEN NULL ELSE round((8 + 2 * sqrt(random()))::numeric, 2)::float8 END
                 AS seller_rating,
             floor(-ln(1 - random()) * 60)::int AS review_count,
             CASE WHEN random() < 0.04 THEN NULL ELSE 2006 + floor(random() * 20)::int END AS member_since_year,
             (random() < 0.7)::int AS ai_ship_can,
             (random() < 0.25)::int AS ai_ship_pickup,
             (random() < 0.08)::int AS ai_pickup_only_bin,
             (random() < 0.3)::int AS ai_sale_mode_firm,
             (random() < 0.2)::int AS ai_sale_mode_bids,
             (random() < 0.4)::int AS ai_sale_mode_obo,
             CASE WHEN random() < 0.05 THEN NULL ELSE floor(random() * random() * 13)::int END AS image_count,
             round(random()::numeric, 3)::float8 AS caption_share,
             CASE WHEN random() < 0.1 THEN NULL ELSE round((random() * random())::numeric, 3)::float8 END
                 AS stock_photo_share,
             round(random()::numeric, 3)::float8 AS photo_quality_avg,
             CASE WHEN random() < 0.1 THEN NULL ELSE round(random()::numeric, 3)::float8 END AS bg_clean_avg,
             CASE WHEN random() < 0.15 THEN NULL ELSE floor(random() * random() * 4.2)::float8 END
                 AS dmg_band_hq_struct,
             floor(random() * 2.4)::int AS charger_bundle_level,
             random() < 0.35 AS box_present,
             random() < 0.2 AS receipt_present
      FROM generate_series(1, {rows}) AS i
      OFFSET 0) AS features
    OFFSET 0) AS latent
  OFFSET 0) AS outcome,
  LATERAL (SELECT t0 + duration * interval '1 hour' <= observed_at AS sold) AS s
"""


def generate_listings(conn, table: str = "listings", rows: int = 300_000, days: int = 200,
                      start: str = "2026-02-01 00:00+00", seed: float = 0.42) -> None:
    """(Re)create ``table`` with ``rows`` synthetic listings; same seed, same rows."""
    ident = sql.Identifier(*table.split("."))
    with conn.transaction():
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")  # one stream of random()
        conn.execute("SELECT setseed(%s)", [seed])
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        conn.execute(sql.SQL(GENERATE).format(
            table=ident, rows=sql.Literal(int(rows)), days=sql.Literal(int(days)),
            start=sql.Literal(start)))
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (generation, listing_id, t0)").format(ident))
        conn.execute(sql.SQL("ANALYZE {}").format(ident))
