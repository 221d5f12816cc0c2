-- Smoke test for `make installcheck`: install, fit a small deterministic source, inspect.
-- The expected numbers are the independent reference's (tests/reference.py) on these rows:
-- tests/test_install.py runs the reference on this table and checks every one of them.
CREATE EXTENSION woe_anchor CASCADE;
SET TimeZone = 'UTC';

-- 60 days x 40 listings, features and labels from integer arithmetic only
CREATE TABLE smoke_listings AS
SELECT 1 + i % 3 AS generation, i::bigint AS listing_id,
       timestamptz '2026-01-01' + (i % 60) * interval '1 day' + (i % 7) * interval '1 hour' AS t0,
       timestamptz '2026-01-01' + (i % 60) * interval '1 day' + (24 + (i * 37) % 900) * interval '1 hour' AS sold_time,
       (24 + (i * 37) % 900)::float8 AS duration_hours, 'sold'::text AS final_status,
       ((i % 11) - 5) / 20.0 AS delta_vs_sold_median_30d, (i % 10) / 10.0 AS condition_score,
       (i % 4)::float8 AS damage_severity_ai, 80 + (i % 20) AS battery_pct_effective,
       8.5 + (i % 16) / 10.0 AS seller_rating, i % 120 AS review_count, 2010 + i % 15 AS member_since_year,
       i % 2 AS ai_ship_can, (i / 2) % 2 AS ai_ship_pickup, (i % 9 = 0)::int AS ai_pickup_only_bin,
       (i % 3 = 0)::int AS ai_sale_mode_firm, (i % 3 = 1)::int AS ai_sale_mode_bids, 0 AS ai_sale_mode_obo,
       i % 6 AS image_count, (i % 5) / 5.0 AS caption_share, (i % 4) / 4.0 AS stock_photo_share,
       (i % 7) / 7.0 AS photo_quality_avg, (i % 3) / 3.0 AS bg_clean_avg, (i % 5)::float8 AS dmg_band_hq_struct,
       i % 3 AS charger_bundle_level, i % 2 = 0 AS box_present, i % 5 = 0 AS receipt_present
FROM generate_series(1, 2400) AS i;

CALL ml.fit_woe_anchor(source => 'smoke_listings', model_key => 'smoke', cutoff => '2026-03-15');

SELECT model_key, is_active, n_train_sold, n_learned, n_days, n_folds_with_rows,
       round(base_rate::numeric, 6) AS base_rate, dsold_t1, dsold_t4
FROM ml.woe_anchor_model_registry_v1;

SELECT fold_id, round(c1::numeric, 6) AS c1, round(c2::numeric, 6) AS c2, n_learned
FROM ml.woe_anchor_cuts_v1 ORDER BY fold_id NULLS FIRST;

SELECT band_name, count(*) AS final_values, round(sum(sum_w_pos + sum_w_neg)::numeric, 6) AS weight
FROM ml.woe_anchor_map_v1 WHERE fold_id IS NULL GROUP BY band_name ORDER BY band_name;

SELECT fold_id, is_oof, count(*) AS n, round(avg(woe_p)::numeric, 6) AS mean_p
FROM ml.woe_anchor_scores_v1 GROUP BY fold_id, is_oof ORDER BY fold_id;

-- bad input is refused with a clear error (terse: line numbers of the wrapper are not the point)
\set VERBOSITY terse
CALL ml.fit_woe_anchor(source => 'smoke_listings', model_key => 'smoke');
CALL ml.fit_woe_anchor(source => 'smoke_listings', n_folds => 0);

DROP TABLE smoke_listings;
