"""The user's current installation, rebuilt in a test database: what `woe-anchor migrate` starts from.

This fixture stands for a database that the user's Python trainer and SQL
package run on today, as /work/shared/requirements/existing-installation.md
describes it (sections 7 to 10): the trainer's four ``ml.woe_anchor_*_v1``
tables with their script-01 indexes, the user's feature store relations, the
four inference views of section 8, the ``audit`` certification layer of
section 9, models in the trainer's tables, and rows with the trainer's quirks
of section 10. Migration tests build it, run the migration, and check that
the user's pipeline (the guarded view and its certification) still serves
the right model.

Everything here is written in this project's own words from that prose
description; none of the user's code is copied. Where the description leaves
a detail open, the choice is ours and is said so where it is made.

Every function takes a psycopg 3 connection in autocommit mode to a database
without the woe_anchor extension. ``install`` does it all, in the user's
install order (audit primitives first: the guarded view calls them).
"""
from __future__ import annotations

from psycopg import sql

import cases

# the user's relations, as existing-installation.md names them
REGISTRY = "ml.woe_anchor_model_registry_v1"
CUTS = "ml.woe_anchor_cuts_v1"
MAP = "ml.woe_anchor_map_v1"
SCORES = "ml.woe_anchor_scores_v1"
SOCIO_STORE = "ml.socio_market_feature_store_train_v"
VISION_STORE = "ml.iphone_image_features_unified_v1_train_v"
LABELS = "ml.listing_labels_v"
BANDS_VIEW = "ml.v_woe_anchor_bands_live_v1"
SCORES_VIEW = "ml.woe_anchor_scores_live_v1"
ENTRYPOINT = "ml.woe_anchor_feature_store_t0_v1_v"
TRAIN_VIEW = "ml.woe_anchor_scores_live_train_v"
# the listing rows behind the feature store: docs/contract.md section 2 columns, usable as a fit or score source
RAW_TABLE = "market.listing_snapshots"

# how the guard's and the assertion's errors start (tests match on these)
GUARD_ERROR = "t0 guard:"
ASSERT_ERROR = "WOE anchor store not certifiable:"

# docs/contract.md section 8 columns of the trainer's tables, the only ones the trainer writes
TRAINER_COLUMNS = {
    "woe_anchor_model_registry_v1": ("model_key", "train_cutoff_ts", "half_life_days", "eps", "n_folds",
                                     "band_schema_version", "code_sha256", "created_at", "is_active",
                                     "base_rate", "base_logit", "dsold_t1", "dsold_t2", "dsold_t3", "dsold_t4"),
    "woe_anchor_cuts_v1": ("model_key", "fold_id", "c1", "c2"),
    "woe_anchor_map_v1": ("model_key", "fold_id", "band_name", "band_value", "woe", "sum_w_pos", "sum_w_neg"),
    "woe_anchor_scores_v1": ("model_key", "generation", "listing_id", "t0", "fold_id", "is_oof",
                             "woe_logit", "woe_p"),
}

# band_name in the map -> column of the banding view (docs/contract.md section 5, band schema 1)
BANDS = (("dsold", "dsold_band"), ("trust", "trust_tier"), ("ship", "ship_band"), ("sale", "sale_band"),
         ("cond", "cond_band"), ("dmg", "dmg_ai_band"), ("bat", "bat_band"),
         ("present", "presentation_band"), ("vdmg", "vdmg_band"), ("acc", "accessories_band"))

# quirk (section 10 of existing-installation.md, or the issue) -> the model key that carries it
QUIRK_KEYS = {
    "backfilled_fold_minus_one": "legacy_quirk_backfilled",     # 8: fold_id -1 with is_oof true
    "null_scores": "legacy_quirk_null_scores",                  # NaN logit / p written as NULL
    "null_map_sums": "legacy_quirk_null_map_sums",              # 7.2 step 5: sums NULL when missing
    "empty_train": "legacy_quirk_empty_train",                  # 6 and 9: NaN base rate, (0, 0) cuts, no map
    "fold_cuts_without_maps": "legacy_quirk_fold_cuts",         # 6 and 7.2 step 4: cuts for empty folds
    "stale_scores_oof_disabled": "legacy_quirk_stale_rerun",    # 6 and 7: n_folds 1, old fold scores kept
}


def _ident(qualified: str) -> sql.Identifier:
    return sql.Identifier(*qualified.split("."))


# ---------------------------------------------------------------- 7.1: the trainer's tables

_TABLES_SQL = """
CREATE SCHEMA IF NOT EXISTS ml;

-- one row per trainer run; nothing stops two rows from being active at once
CREATE TABLE ml.woe_anchor_model_registry_v1 (
    model_key           text PRIMARY KEY,
    train_cutoff_ts     timestamptz NOT NULL,
    half_life_days      float8 NOT NULL,
    eps                 float8 NOT NULL,
    n_folds             int NOT NULL,
    band_schema_version int NOT NULL,
    code_sha256         text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    is_active           boolean NOT NULL DEFAULT false,
    base_rate           float8,
    base_logit          float8,
    dsold_t1            float8,
    dsold_t2            float8,
    dsold_t3            float8,
    dsold_t4            float8
);

-- presentation cuts per fit; fold_id NULL is the final mapping; no key at all
CREATE TABLE ml.woe_anchor_cuts_v1 (
    model_key  text NOT NULL,
    fold_id    int,
    c1         float8,
    c2         float8,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- WOE per band value per fit; no key at all
CREATE TABLE ml.woe_anchor_map_v1 (
    model_key  text NOT NULL,
    fold_id    int,
    band_name  text NOT NULL,
    band_value text NOT NULL,
    woe        float8 NOT NULL,
    sum_w_pos  float8,
    sum_w_neg  float8,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- the OOF scores of TRAIN SOLD rows, one per listing snapshot and model
CREATE TABLE ml.woe_anchor_scores_v1 (
    model_key  text NOT NULL,
    generation int NOT NULL,
    listing_id bigint NOT NULL,
    t0         timestamptz NOT NULL,
    fold_id    int,
    is_oof     boolean NOT NULL,
    woe_logit  float8,
    woe_p      float8,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_key, generation, listing_id, t0)
);

-- script 02: the learned scalars, added again for databases older than script 00's tables
ALTER TABLE ml.woe_anchor_model_registry_v1
    ADD COLUMN IF NOT EXISTS base_rate float8,
    ADD COLUMN IF NOT EXISTS base_logit float8,
    ADD COLUMN IF NOT EXISTS dsold_t1 float8,
    ADD COLUMN IF NOT EXISTS dsold_t2 float8,
    ADD COLUMN IF NOT EXISTS dsold_t3 float8,
    ADD COLUMN IF NOT EXISTS dsold_t4 float8;
"""

# script 01, run as one transaction: old keys out, fold_id nullable, partial unique and lookup indexes in
_INDEXES_SQL = """
ALTER TABLE ml.woe_anchor_cuts_v1 DROP CONSTRAINT IF EXISTS woe_anchor_cuts_v1_pkey;
ALTER TABLE ml.woe_anchor_map_v1 DROP CONSTRAINT IF EXISTS woe_anchor_map_v1_pkey;
ALTER TABLE ml.woe_anchor_cuts_v1 ALTER COLUMN fold_id DROP NOT NULL;
ALTER TABLE ml.woe_anchor_map_v1 ALTER COLUMN fold_id DROP NOT NULL;

CREATE UNIQUE INDEX IF NOT EXISTS woe_anchor_cuts_v1_final_ux
    ON ml.woe_anchor_cuts_v1 (model_key) WHERE fold_id IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS woe_anchor_cuts_v1_fold_ux
    ON ml.woe_anchor_cuts_v1 (model_key, fold_id) WHERE fold_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS woe_anchor_map_v1_final_ux
    ON ml.woe_anchor_map_v1 (model_key, band_name, band_value) WHERE fold_id IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS woe_anchor_map_v1_fold_ux
    ON ml.woe_anchor_map_v1 (model_key, fold_id, band_name, band_value) WHERE fold_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS woe_anchor_cuts_v1_lookup_ix ON ml.woe_anchor_cuts_v1 (model_key, fold_id);
CREATE INDEX IF NOT EXISTS woe_anchor_map_v1_lookup_ix
    ON ml.woe_anchor_map_v1 (model_key, fold_id, band_name, band_value);
"""


def create_tables(conn, indexes: bool = True) -> None:
    """Schema ml and the trainer's four artifact tables, as scripts 00, 01 and 02 leave them.

    ``indexes=False`` is the fresh install that follows the README literally and
    skips script 01 (quirk 17): no uniqueness or lookup index at all.
    """
    conn.execute(_TABLES_SQL)
    if indexes:
        with conn.transaction():
            conn.execute(_INDEXES_SQL)


# ---------------------------------------------------------------- 8.1: the feature store the banding view reads

def create_feature_store(conn, rows: dict, vision_without_images: bool = True) -> str:
    """The user's source relations, as views over one table of listing snapshots; returns that table's name.

    The table (``RAW_TABLE``) holds ``rows`` exactly as ``cases.load`` writes
    them (docs/contract.md section 2 columns, NaN kept where cases keeps it), so a test
    can fit or score the same rows with the extension. Over it:

    - the socio store has both ``t0`` and ``edited_date``: edited_date is
      always set, t0 is NULL for every fourth listing (snapshots from before
      the store had a t0 column), so the banding view's COALESCE matters;
    - the vision store has one row per (generation, listing_id) whose listing
      has assets: image_count > 0, and, with ``vision_without_images``, every
      fifth listing whose vision pipeline ran but counted no image (0 or NULL),
      which is where the SQL has_assets differs from Python's (quirk 11);
    - the labels relation gives the sale time as ``sold_date``.
    """
    conn.execute("CREATE SCHEMA IF NOT EXISTS market")
    conn.execute("CREATE SCHEMA IF NOT EXISTS ml")
    cases.load(conn, RAW_TABLE, rows)
    without_images = "OR s.listing_id % 5 = 0" if vision_without_images else ""
    conn.execute(sql.SQL("""
CREATE VIEW {socio} AS
SELECT s.generation,
       s.listing_id,
       CASE WHEN s.listing_id % 4 = 0 THEN NULL ELSE s.t0 END AS t0,
       s.t0 AS edited_date,
       s.delta_vs_sold_median_30d,
       s.condition_score,
       s.damage_severity_ai,
       s.battery_pct_effective,
       s.seller_rating,
       s.review_count,
       s.member_since_year,
       s.ai_ship_can,
       s.ai_ship_pickup,
       s.ai_pickup_only_bin,
       s.ai_sale_mode_firm,
       s.ai_sale_mode_bids,
       s.ai_sale_mode_obo
FROM {raw} AS s""").format(socio=_ident(SOCIO_STORE), raw=_ident(RAW_TABLE)))
    # the newest snapshot of a listing speaks for it: one vision row per listing, whatever the snapshots
    conn.execute(sql.SQL("""
CREATE VIEW {vision} AS
SELECT DISTINCT ON (s.generation, s.listing_id)
       s.generation,
       s.listing_id,
       s.image_count,
       s.caption_share,
       s.stock_photo_share,
       s.photo_quality_avg,
       s.bg_clean_avg,
       s.dmg_band_hq_struct,
       s.charger_bundle_level,
       s.box_present,
       s.receipt_present
FROM {raw} AS s
WHERE s.image_count > 0 {without_images}
ORDER BY s.generation, s.listing_id, s.t0 DESC""").format(
        vision=_ident(VISION_STORE), raw=_ident(RAW_TABLE), without_images=sql.SQL(without_images)))
    conn.execute(sql.SQL("""
CREATE VIEW {labels} AS
SELECT s.listing_id, s.sold_time AS sold_date, s.duration_hours, s.final_status
FROM {raw} AS s""").format(labels=_ident(LABELS), raw=_ident(RAW_TABLE)))
    return RAW_TABLE


# ---------------------------------------------------------------- 8: the inference views

# Band rules of docs/contract.md section 5 in SQL, with the SQL-side differences of the
# user's views (existing-installation.md section 10, items 11 to 16):
# - has_assets is "a vision row exists", not image_count > 0 (11);
# - damage: only 0, 1, 2 exactly and >= 3 have their own label; any other value
#   (0.5, 2.5, a negative number, NaN) falls through to *_3p (12);
# - accessories: charger_bundle_level rounded to an integer, box and receipt
#   must be boolean columns (13);
# - trust tenure compares with the year of t0 in the session's time zone (14);
# - NULL thresholds read as the ratio defaults; no final cuts make every vision
#   row present_hi; base_logit falls back to the unclamped logit of base_rate (15);
# - a NULL band adds 0 in the scoring view, and NaN inputs are not NULL: NaN
#   compares above every number (16).
# Inputs are read as float8, as docs/contract.md section 2 reads them.
_BANDS_VIEW_SQL = """
CREATE VIEW ml.v_woe_anchor_bands_live_v1 AS
WITH active AS (
    -- the newest active registry row: several active rows are tolerated, none gives no rows at all
    SELECT r.model_key,
           COALESCE(r.base_logit, ln(r.base_rate / NULLIF(1 - r.base_rate, 0))) AS base_logit,
           COALESCE(r.dsold_t1, -0.15) AS t1,
           COALESCE(r.dsold_t2, -0.05) AS t2,
           COALESCE(r.dsold_t3, 0.05) AS t3,
           COALESCE(r.dsold_t4, 0.15) AS t4,
           -- scalar subqueries: a second final cuts row makes the view fail (quirk 17)
           (SELECT k.c1 FROM ml.woe_anchor_cuts_v1 AS k
             WHERE k.model_key = r.model_key AND k.fold_id IS NULL) AS c1,
           (SELECT k.c2 FROM ml.woe_anchor_cuts_v1 AS k
             WHERE k.model_key = r.model_key AND k.fold_id IS NULL) AS c2
    FROM ml.woe_anchor_model_registry_v1 AS r
    WHERE r.is_active
    ORDER BY r.created_at DESC
    LIMIT 1
),
listing AS (
    SELECT f.generation,
           f.listing_id,
           COALESCE(f.t0, f.edited_date) AS t0,
           f.delta_vs_sold_median_30d::float8 AS dsold,
           f.seller_rating::float8 AS rating,
           f.review_count::float8 AS reviews,
           f.member_since_year::float8 AS member_since,
           f.ai_ship_can::float8 AS ship_can,
           f.ai_ship_pickup::float8 AS ship_pickup,
           f.ai_pickup_only_bin::float8 AS pickup_only,
           f.ai_sale_mode_firm::float8 AS firm,
           f.ai_sale_mode_bids::float8 AS bids,
           f.ai_sale_mode_obo::float8 AS obo,
           f.condition_score::float8 AS cond,
           f.damage_severity_ai::float8 AS dmg,
           f.battery_pct_effective::float8 AS bat,
           v.listing_id IS NOT NULL AS has_assets,
           CASE WHEN v.listing_id IS NOT NULL THEN
                  0.30 * ln(1 + COALESCE(v.image_count::float8, 0))
                + 0.25 * COALESCE(v.photo_quality_avg::float8, 0)
                + 0.20 * COALESCE(v.bg_clean_avg::float8, 0)
                + 0.15 * (1 - COALESCE(v.stock_photo_share::float8, 0))
                + 0.10 * COALESCE(v.caption_share::float8, 0)
           END AS presentation_score,
           v.dmg_band_hq_struct::float8 AS vdmg,
           COALESCE(round(v.charger_bundle_level::numeric)::int, 0)
             + CASE WHEN v.box_present THEN 1 ELSE 0 END
             + CASE WHEN v.receipt_present THEN 1 ELSE 0 END AS acc
    FROM ml.socio_market_feature_store_train_v AS f
    LEFT JOIN ml.iphone_image_features_unified_v1_train_v AS v
           ON v.generation = f.generation AND v.listing_id = f.listing_id
)
SELECT a.model_key,
       a.base_logit,
       l.generation,
       l.listing_id,
       l.t0,
       CASE WHEN l.dsold IS NULL THEN 'dSold_missing'
            WHEN l.dsold <= a.t1 THEN 'dSold_cheap'
            WHEN l.dsold <= a.t2 THEN 'dSold_under'
            WHEN l.dsold <= a.t3 THEN 'dSold_fair'
            WHEN l.dsold <= a.t4 THEN 'dSold_over'
            ELSE 'dSold_overpriced' END AS dsold_band,
       CASE WHEN l.rating >= 9.7 AND l.reviews >= 50
                 AND l.member_since <= extract(year FROM l.t0) - 3 THEN 'HIGH'
            WHEN l.rating >= 9.0 AND l.reviews >= 10 THEN 'MED'
            ELSE 'LOW' END AS trust_tier,
       CASE WHEN l.pickup_only = 1 OR l.ship_pickup = 1 THEN 'pickup_heavy'
            WHEN l.ship_can = 1 THEN 'shipping_ok'
            ELSE 'ship_unknown' END AS ship_band,
       CASE WHEN l.firm = 1 THEN 'firm'
            WHEN l.bids = 1 THEN 'bids'
            WHEN l.obo = 1 THEN 'obo'
            ELSE 'sale_unspec' END AS sale_band,
       CASE WHEN l.cond IS NULL THEN 'cond_missing'
            WHEN l.cond >= 0.90 THEN 'cond_hi'
            WHEN l.cond >= 0.70 THEN 'cond_mid'
            ELSE 'cond_lo' END AS cond_band,
       CASE WHEN l.dmg IS NULL THEN 'dmg_missing'
            WHEN l.dmg = 0 THEN 'dmg_0'
            WHEN l.dmg = 1 THEN 'dmg_1'
            WHEN l.dmg = 2 THEN 'dmg_2'
            ELSE 'dmg_3p' END AS dmg_ai_band,
       CASE WHEN l.bat IS NULL THEN 'bat_missing'
            WHEN l.bat >= 95 THEN 'bat_hi'
            WHEN l.bat >= 88 THEN 'bat_mid'
            ELSE 'bat_lo' END AS bat_band,
       l.has_assets,
       l.presentation_score,
       CASE WHEN NOT l.has_assets THEN NULL
            WHEN l.presentation_score < a.c1 THEN 'present_lo'
            WHEN l.presentation_score < a.c2 THEN 'present_mid'
            ELSE 'present_hi' END AS presentation_band,
       CASE WHEN NOT l.has_assets THEN NULL
            WHEN l.vdmg IS NULL THEN 'vdmg_missing'
            WHEN l.vdmg = 0 THEN 'vdmg_0'
            WHEN l.vdmg = 1 THEN 'vdmg_1'
            WHEN l.vdmg = 2 THEN 'vdmg_2'
            ELSE 'vdmg_3p' END AS vdmg_band,
       CASE WHEN NOT l.has_assets THEN NULL
            WHEN l.acc <= 0 THEN 'acc_lo'
            WHEN l.acc < 2 THEN 'acc_mid'
            ELSE 'acc_hi' END AS accessories_band
FROM listing AS l
CROSS JOIN active AS a
"""


def _scores_view_sql() -> sql.Composed:
    """The scoring view: one LEFT JOIN per band to the final map, a NULL band or unseen value adds 0."""
    joins, terms = [], [sql.SQL("b.base_logit")]
    for band_name, column in BANDS:
        alias = sql.Identifier(f"m_{band_name}")
        joins.append(sql.SQL(
            "LEFT JOIN ml.woe_anchor_map_v1 AS {a}\n"
            "           ON {a}.model_key = b.model_key AND {a}.fold_id IS NULL\n"
            "          AND {a}.band_name = {name} AND {a}.band_value = b.{col}").format(
            a=alias, name=sql.Literal(band_name), col=sql.Identifier(column)))
        terms.append(sql.SQL("COALESCE({}.woe, 0)").format(alias))
    return sql.SQL("""
CREATE VIEW ml.woe_anchor_scores_live_v1 AS
SELECT q.generation,
       q.listing_id,
       q.t0,
       q.model_key,
       q.woe_logit,
       (1 / (1 + exp(-q.woe_logit)))::float8 AS woe_anchor_p_slow21
FROM (SELECT b.generation, b.listing_id, b.t0, b.model_key,
             ({terms})::float8 AS woe_logit
      FROM ml.v_woe_anchor_bands_live_v1 AS b
      {joins}) AS q""").format(terms=sql.SQL("\n              + ").join(terms),
                               joins=sql.SQL("\n      ").join(joins))


# the certification entrypoint: t0 renamed edited_date, the t0 column itself not kept
_ENTRYPOINT_SQL = """
CREATE VIEW ml.woe_anchor_feature_store_t0_v1_v AS
SELECT s.generation, s.listing_id, s.t0 AS edited_date, s.model_key, s.woe_logit, s.woe_anchor_p_slow21
FROM ml.woe_anchor_scores_live_v1 AS s
"""

# fail-closed: every query of this view runs the guard, and errors when the entrypoint is not certified
_TRAIN_VIEW_SQL = """
CREATE VIEW ml.woe_anchor_scores_live_train_v AS
SELECT s.generation, s.listing_id, s.t0, s.model_key, s.woe_logit, s.woe_anchor_p_slow21
FROM ml.woe_anchor_scores_live_v1 AS s
CROSS JOIN LATERAL audit.require_certified_strict('ml.woe_anchor_feature_store_t0_v1_v',
                                                  interval '24 hours') AS guard
"""


def create_views(conn) -> None:
    """The four inference views of section 8; call ``create_audit`` first (the guarded view calls its guard)."""
    conn.execute(_BANDS_VIEW_SQL)
    conn.execute(_scores_view_sql())
    conn.execute(_ENTRYPOINT_SQL)
    conn.execute(_TRAIN_VIEW_SQL)


# ---------------------------------------------------------------- 9: the certification layer

_AUDIT_SQL = r"""
CREATE SCHEMA IF NOT EXISTS audit;

CREATE TABLE audit.t0_viewdef_baseline (
    entrypoint     text NOT NULL,
    object_fqn     text NOT NULL,
    relkind        text NOT NULL CHECK (relkind IN ('v', 'm')),
    viewdef_sha256 text NOT NULL,
    captured_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entrypoint, object_fqn)
);

CREATE TABLE audit.t0_dataset_hash_baseline (
    entrypoint     text NOT NULL,
    t0_day         date NOT NULL,
    sample_limit   int NOT NULL,
    dataset_sha256 text NOT NULL,
    computed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entrypoint, t0_day, sample_limit)
);

CREATE TABLE audit.t0_cert_registry (
    entrypoint      text PRIMARY KEY,
    status          text NOT NULL,
    certified_at    timestamptz NOT NULL DEFAULT now(),
    viewdef_objects jsonb,
    dataset_days    int,
    notes           text
);

-- schema-qualified name of a relation, whatever the search_path: the key of every audit row
CREATE FUNCTION audit.relation_fqn(p_rel regclass) RETURNS text
LANGUAGE sql STABLE AS $fn$
    SELECT format('%I.%I', n.nspname, c.relname)
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.oid = p_rel
$fn$;

-- SHA-256 of one day of a relation: its first p_limit rows by (edited_date, generation, listing_id,
-- row JSON), their JSON texts sorted and joined by newlines; an empty day hashes ''.
-- The built-in sha256(bytea) stands in for pgcrypto's digest().
CREATE FUNCTION audit.dataset_sha256(p_rel regclass, p_day date, p_limit int) RETURNS text
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_hash text;
BEGIN
    EXECUTE format($q$
        SELECT encode(sha256(convert_to(COALESCE(string_agg(d.doc, E'\n' ORDER BY d.doc), ''), 'UTF8')), 'hex')
        FROM (SELECT to_jsonb(x)::text AS doc
              FROM %s AS x
              WHERE x.edited_date::date = $1
              ORDER BY x.edited_date, x.generation, x.listing_id, to_jsonb(x)::text
              LIMIT $2) AS d
    $q$, p_rel)
    INTO v_hash USING p_day, p_limit;
    RETURN v_hash;
END
$fn$;

-- the fail-closed guard: status and age only, no drift check
CREATE FUNCTION audit.require_certified_strict(p_entrypoint text, p_max_age interval) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_cert audit.t0_cert_registry;
BEGIN
    SELECT * INTO v_cert FROM audit.t0_cert_registry WHERE entrypoint = p_entrypoint;
    IF NOT FOUND THEN
        RAISE EXCEPTION 't0 guard: % has never been certified', p_entrypoint;
    END IF;
    IF v_cert.status IS DISTINCT FROM 'CERTIFIED' THEN
        RAISE EXCEPTION 't0 guard: % has status %, not CERTIFIED', p_entrypoint, v_cert.status;
    END IF;
    IF v_cert.certified_at < now() - p_max_age THEN
        RAISE EXCEPTION 't0 guard: certification of % is older than % (certified at %)',
            p_entrypoint, p_max_age, v_cert.certified_at;
    END IF;
END
$fn$;

-- dataset baselines of the p_n_days latest edited_date days (session time zone), upserted;
-- returns how many days were hashed
CREATE FUNCTION audit.rebaseline_last_n_days(p_rel regclass, p_n_days int DEFAULT 10, p_limit int DEFAULT 2000)
RETURNS int
LANGUAGE plpgsql AS $fn$
DECLARE
    v_entry text := audit.relation_fqn(p_rel);
    v_day date;
    v_days int := 0;
BEGIN
    FOR v_day IN EXECUTE format(
            'SELECT DISTINCT x.edited_date::date AS d FROM %s AS x WHERE x.edited_date IS NOT NULL '
            'ORDER BY d DESC LIMIT $1', p_rel) USING p_n_days LOOP
        INSERT INTO audit.t0_dataset_hash_baseline (entrypoint, t0_day, sample_limit, dataset_sha256, computed_at)
        VALUES (v_entry, v_day, p_limit, audit.dataset_sha256(p_rel, v_day, p_limit), now())
        ON CONFLICT (entrypoint, t0_day, sample_limit)
        DO UPDATE SET dataset_sha256 = EXCLUDED.dataset_sha256, computed_at = EXCLUDED.computed_at;
        v_days := v_days + 1;
    END LOOP;
    RETURN v_days;
END
$fn$;

-- viewdef baselines: the entrypoint and every view or materialised view it reads, recursively
-- (a view's rewrite rule depends on the relations it reads); returns how many objects were stored
CREATE FUNCTION audit.capture_t0_viewdef_baseline(p_entrypoint regclass) RETURNS int
LANGUAGE plpgsql AS $fn$
DECLARE
    v_entry text := audit.relation_fqn(p_entrypoint);
    v_count int;
BEGIN
    DELETE FROM audit.t0_viewdef_baseline WHERE entrypoint = v_entry;
    WITH RECURSIVE closure (oid) AS (
        SELECT c.oid FROM pg_catalog.pg_class AS c WHERE c.oid = p_entrypoint AND c.relkind IN ('v', 'm')
        UNION
        SELECT dep.refobjid
        FROM closure AS cl
        JOIN pg_catalog.pg_rewrite AS rw ON rw.ev_class = cl.oid
        JOIN pg_catalog.pg_depend AS dep
          ON dep.classid = 'pg_catalog.pg_rewrite'::regclass AND dep.objid = rw.oid
         AND dep.refclassid = 'pg_catalog.pg_class'::regclass AND dep.refobjid <> cl.oid
        JOIN pg_catalog.pg_class AS ref ON ref.oid = dep.refobjid AND ref.relkind IN ('v', 'm')
    )
    INSERT INTO audit.t0_viewdef_baseline (entrypoint, object_fqn, relkind, viewdef_sha256, captured_at)
    SELECT v_entry, audit.relation_fqn(c.oid), c.relkind::text,
           encode(sha256(convert_to(pg_catalog.pg_get_viewdef(c.oid, true), 'UTF8')), 'hex'), now()
    FROM closure JOIN pg_catalog.pg_class AS c ON c.oid = closure.oid;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$fn$;

-- the store's own checks; the artifact tables are named in the body, so they are looked up by name
-- each time, never bound to the tables that existed when the function was created
CREATE FUNCTION audit.assert_t0_certified_woe_anchor_store_v1() RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_key text;
    v_n bigint;
BEGIN
    SELECT r.model_key INTO v_key
    FROM ml.woe_anchor_model_registry_v1 AS r
    WHERE r.is_active
    ORDER BY r.created_at DESC
    LIMIT 1;
    IF v_key IS NULL THEN
        RAISE EXCEPTION 'WOE anchor store not certifiable: no active model';
    END IF;
    SELECT count(*) INTO v_n FROM ml.woe_anchor_cuts_v1 WHERE model_key = v_key AND fold_id IS NULL;
    IF v_n <> 1 THEN
        RAISE EXCEPTION 'WOE anchor store not certifiable: % final cuts rows for %, expected 1', v_n, v_key;
    END IF;
    SELECT count(*) INTO v_n FROM ml.woe_anchor_map_v1 WHERE model_key = v_key AND fold_id IS NULL;
    IF v_n < 1 THEN
        RAISE EXCEPTION 'WOE anchor store not certifiable: no final WOE map rows for %', v_key;
    END IF;
    SELECT count(DISTINCT band_name) INTO v_n FROM ml.woe_anchor_map_v1 WHERE model_key = v_key AND fold_id IS NULL;
    IF v_n < 7 THEN
        RAISE EXCEPTION 'WOE anchor store not certifiable: the final map of % has % bands, expected at least 7',
            v_key, v_n;
    END IF;
END
$fn$;

-- the runner: assertions, then CERTIFIED rows for the entrypoint and its two aliases. It compares no
-- hash. The user's runner stores the viewdef count as an int in the jsonb column, which cannot be
-- inserted; here the count goes in as jsonb, or certification could never pass.
CREATE FUNCTION audit.run_t0_cert_woe_anchor_store_v1(p_check_days int DEFAULT 10) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_entry constant text := 'ml.woe_anchor_feature_store_t0_v1_v';
    v_viewdefs bigint;
    v_days bigint;
    v_alias text;
BEGIN
    PERFORM audit.assert_t0_certified_woe_anchor_store_v1();
    SELECT count(*) INTO v_viewdefs FROM audit.t0_viewdef_baseline WHERE entrypoint = v_entry;
    SELECT count(*) INTO v_days FROM audit.t0_dataset_hash_baseline WHERE entrypoint = v_entry AND sample_limit = 2000;
    INSERT INTO audit.t0_cert_registry (entrypoint, status, certified_at, viewdef_objects, dataset_days, notes)
    VALUES (v_entry, 'CERTIFIED', now(), to_jsonb(v_viewdefs), v_days,
            format('WOE anchor store assertions passed (check window %s days)', p_check_days))
    ON CONFLICT (entrypoint) DO UPDATE
        SET status = EXCLUDED.status, certified_at = EXCLUDED.certified_at,
            viewdef_objects = EXCLUDED.viewdef_objects, dataset_days = EXCLUDED.dataset_days, notes = EXCLUDED.notes;
    FOREACH v_alias IN ARRAY ARRAY['ml.woe_anchor_scores_live_train_v', 'ml.woe_anchor_scores_live_v1'] LOOP
        INSERT INTO audit.t0_cert_registry (entrypoint, status, certified_at, viewdef_objects, dataset_days, notes)
        VALUES (v_alias, 'CERTIFIED', now(), to_jsonb(v_viewdefs), v_days, 'certified as an alias of ' || v_entry)
        ON CONFLICT (entrypoint) DO UPDATE
            SET status = EXCLUDED.status, certified_at = EXCLUDED.certified_at,
                viewdef_objects = EXCLUDED.viewdef_objects, dataset_days = EXCLUDED.dataset_days,
                notes = EXCLUDED.notes;
    END LOOP;
    RAISE NOTICE 'certified % (viewdef objects %, dataset days %, check window % days)',
        v_entry, v_viewdefs, v_days, p_check_days;
END
$fn$;

-- the user's step after each training run: the active model changed the entrypoint's rows
CREATE FUNCTION audit.recertify_woe_anchor_store_v1() RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM audit.rebaseline_last_n_days('ml.woe_anchor_feature_store_t0_v1_v'::regclass, 10, 2000);
    PERFORM audit.run_t0_cert_woe_anchor_store_v1(10);
END
$fn$;
"""


def create_audit(conn) -> None:
    """Schema audit: the baseline and registry tables of 9.1, the guard, the hashing and certification functions."""
    conn.execute(_AUDIT_SQL)


def capture_viewdef_baseline(conn) -> int:
    """Install step 06: baseline the entrypoint's view closure; returns how many views were hashed."""
    return conn.execute("SELECT audit.capture_t0_viewdef_baseline(%s::regclass)", [ENTRYPOINT]).fetchone()[0]


def recertify(conn) -> None:
    """The user's 'after each training run' step: rebaseline 10 days, then certify."""
    conn.execute("SELECT audit.recertify_woe_anchor_store_v1()")


# ---------------------------------------------------------------- models in the trainer's tables

def load_trainer_models(conn, source_conn, keys) -> dict:
    """Copy models the extension fitted (in ``source_conn``'s database) into the trainer's tables.

    Only the docs/contract.md section 8 columns travel, as the trainer would have
    written them; ``created_at`` of cuts, map and scores is the copy's time.
    Returns {model_key: {table: rows copied}}.
    """
    keys = list(keys)
    found = {r[0] for r in source_conn.execute(
        "SELECT model_key FROM ml.woe_anchor_model_registry_v1 WHERE model_key = ANY(%s)", [keys])}
    missing = [k for k in keys if k not in found]
    if missing:
        raise LookupError(f"no such models in the source database: {missing}")
    copied = {k: {} for k in keys}
    for table, columns in TRAINER_COLUMNS.items():
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        target = sql.Identifier("ml", table)
        for key in keys:
            data = source_conn.execute(sql.SQL("SELECT {} FROM {} WHERE model_key = %s").format(cols, target),
                                       [key]).fetchall()
            with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(target, cols)) as copy:
                for row in data:
                    copy.write_row(row)
            copied[key][table] = len(data)
    return copied


def _template(conn, key: str | None) -> tuple[str, int]:
    """The model the quirk models are cloned from (default: the active one, else the newest), and its n_folds."""
    row = conn.execute("SELECT model_key, n_folds FROM ml.woe_anchor_model_registry_v1 "
                       "WHERE model_key = %(k)s OR %(k)s::text IS NULL "
                       "ORDER BY is_active DESC, created_at DESC LIMIT 1", dict(k=key)).fetchone()
    if row is None:
        raise LookupError(f"no model {key!r} in the trainer's registry" if key else
                          "the trainer's registry is empty: call load_trainer_models first")
    return row[0], row[1]


def _clone(conn, template: str, key: str, hours_older: int, *, n_folds: int | None = None,
           scores: bool = True, fold_maps: bool = True) -> None:
    """An inactive copy of the template under ``key``, created ``hours_older`` hours before it."""
    p = dict(t=template, k=key, n_folds=n_folds, age=f"{int(hours_older)} hours")
    conn.execute("""
INSERT INTO ml.woe_anchor_model_registry_v1 (model_key, train_cutoff_ts, half_life_days, eps, n_folds,
    band_schema_version, code_sha256, created_at, is_active, base_rate, base_logit,
    dsold_t1, dsold_t2, dsold_t3, dsold_t4)
SELECT %(k)s, train_cutoff_ts, half_life_days, eps, COALESCE(%(n_folds)s::int, n_folds), band_schema_version,
       code_sha256, created_at - %(age)s::interval, false, base_rate, base_logit,
       dsold_t1, dsold_t2, dsold_t3, dsold_t4
FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %(t)s""", p)
    conn.execute("INSERT INTO ml.woe_anchor_cuts_v1 (model_key, fold_id, c1, c2) "
                 "SELECT %(k)s, fold_id, c1, c2 FROM ml.woe_anchor_cuts_v1 WHERE model_key = %(t)s", p)
    conn.execute("INSERT INTO ml.woe_anchor_map_v1 (model_key, fold_id, band_name, band_value, woe, sum_w_pos, "
                 "sum_w_neg) SELECT %(k)s, fold_id, band_name, band_value, woe, sum_w_pos, sum_w_neg "
                 "FROM ml.woe_anchor_map_v1 WHERE model_key = %(t)s"
                 + ("" if fold_maps else " AND fold_id IS NULL"), p)
    if scores:
        conn.execute("INSERT INTO ml.woe_anchor_scores_v1 (model_key, generation, listing_id, t0, fold_id, is_oof, "
                     "woe_logit, woe_p) SELECT %(k)s, generation, listing_id, t0, fold_id, is_oof, woe_logit, woe_p "
                     "FROM ml.woe_anchor_scores_v1 WHERE model_key = %(t)s", p)


def add_quirks(conn, template: str | None = None) -> dict:
    """Inactive models, one per trainer quirk, cloned from ``template`` (default: the active model).

    The copied models stay untouched, so the active model and its scores are
    exactly the extension's. Returns ``QUIRK_KEYS``: {quirk: model_key}.
    """
    template, k = _template(conn, template)
    q = QUIRK_KEYS
    with conn.transaction():
        # 8: rows no fold scored are backfilled with fold_id -1 yet still flagged out-of-fold
        _clone(conn, template, q["backfilled_fold_minus_one"], 1)
        conn.execute("UPDATE ml.woe_anchor_scores_v1 SET fold_id = -1, is_oof = true "
                     "WHERE model_key = %s AND listing_id %% 7 = 0", [q["backfilled_fold_minus_one"]])

        # NaN logits and probabilities are written as NULL
        _clone(conn, template, q["null_scores"], 2)
        conn.execute("UPDATE ml.woe_anchor_scores_v1 SET woe_logit = NULL, woe_p = NULL "
                     "WHERE model_key = %s AND listing_id %% 11 = 0", [q["null_scores"]])

        # 7.2 step 5: a band table without sums stores NULL sums (here: every row of the model)
        _clone(conn, template, q["null_map_sums"], 3)
        conn.execute("UPDATE ml.woe_anchor_map_v1 SET sum_w_pos = NULL, sum_w_neg = NULL WHERE model_key = %s",
                     [q["null_map_sums"]])

        # 6 and 9: an empty TRAIN SOLD still persists: NaN base rate and logit, NULL dsold thresholds,
        # (0, 0) cuts for the final fit and each of the K folds, no map rows, no scores
        empty = q["empty_train"]
        conn.execute("""
INSERT INTO ml.woe_anchor_model_registry_v1 (model_key, train_cutoff_ts, half_life_days, eps, n_folds,
    band_schema_version, code_sha256, created_at, is_active, base_rate, base_logit)
SELECT %(k)s, train_cutoff_ts, half_life_days, eps, n_folds, band_schema_version, code_sha256,
       created_at - interval '4 hours', false, 'NaN'::float8, 'NaN'::float8
FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %(t)s""", dict(k=empty, t=template))
        conn.execute("INSERT INTO ml.woe_anchor_cuts_v1 (model_key, fold_id, c1, c2) "
                     "SELECT %s, f, 0, 0 FROM (VALUES (NULL::int)) AS final (f) "
                     "UNION ALL SELECT %s, f, 0, 0 FROM generate_series(0, %s - 1) AS f", [empty, empty, k])

        # 6 and 7.2 step 4: cuts are written for every fold 0..n_folds-1, even folds that had no rows
        # and so no maps: this run asked for two more folds than it had days for
        extra = q["fold_cuts_without_maps"]
        _clone(conn, template, extra, 5, n_folds=k + 2)
        conn.execute("""
INSERT INTO ml.woe_anchor_cuts_v1 (model_key, fold_id, c1, c2)
SELECT %(k)s, f, fin.c1, fin.c2
FROM generate_series(0, %(n)s - 1) AS f
CROSS JOIN (SELECT c1, c2 FROM ml.woe_anchor_cuts_v1 WHERE model_key = %(k)s AND fold_id IS NULL) AS fin
WHERE NOT EXISTS (SELECT 1 FROM ml.woe_anchor_cuts_v1 AS c WHERE c.model_key = %(k)s AND c.fold_id = f)""",
                     dict(k=extra, n=k + 2))

        # 6 and 7: a same-key rerun with OOF disabled: n_folds 1, a fold-0 cuts row, no fold maps, and the
        # first run's OOF scores (folds 0..k) left in place because no new scores replaced them
        stale = q["stale_scores_oof_disabled"]
        _clone(conn, template, stale, 6, n_folds=1, scores=False, fold_maps=False)
        conn.execute("DELETE FROM ml.woe_anchor_cuts_v1 WHERE model_key = %s AND fold_id IS NOT NULL", [stale])
        conn.execute("INSERT INTO ml.woe_anchor_cuts_v1 (model_key, fold_id, c1, c2) "
                     "SELECT model_key, 0, c1, c2 FROM ml.woe_anchor_cuts_v1 WHERE model_key = %s AND fold_id IS NULL",
                     [stale])
        conn.execute("""
INSERT INTO ml.woe_anchor_scores_v1 (model_key, generation, listing_id, t0, fold_id, is_oof, woe_logit, woe_p,
    created_at)
SELECT %(k)s, s.generation, s.listing_id, s.t0, COALESCE(s.fold_id, (s.listing_id %% 3)::int), true,
       s.woe_logit, s.woe_p, r.created_at - interval '1 day'
FROM ml.woe_anchor_scores_v1 AS s
CROSS JOIN (SELECT created_at FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %(k)s) AS r
WHERE s.model_key = %(t)s""", dict(k=stale, t=template))
    return dict(q)


# ---------------------------------------------------------------- all of it

def install(conn, source_conn, keys, rows, vision_without_images: bool = True) -> dict:
    """The user's installation, trained and certified, in the user's order of install.

    Audit primitives, tables and indexes, feature store, views; then the
    "training" (models copied from ``source_conn``, quirk models added); then
    the viewdef baseline, the dataset baselines and the certification, so
    that the guarded view answers (certification raises when no copied model
    is active, as the user's does). Returns {"raw_table", "models", "quirks",
    "active"}: the SPEC-shaped source table, the copy counts of
    ``load_trainer_models``, the quirk dict of ``add_quirks`` and the key of
    the model the views serve.
    """
    create_audit(conn)
    create_tables(conn)
    raw = create_feature_store(conn, rows, vision_without_images=vision_without_images)
    create_views(conn)
    models = load_trainer_models(conn, source_conn, keys)
    quirks = add_quirks(conn)
    capture_viewdef_baseline(conn)
    recertify(conn)
    active = conn.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1 WHERE is_active "
                          "ORDER BY created_at DESC LIMIT 1").fetchone()[0]
    return {"raw_table": raw, "models": models, "quirks": quirks, "active": active}


__all__ = ["create_tables", "create_feature_store", "create_views", "create_audit", "capture_viewdef_baseline",
           "recertify", "load_trainer_models", "add_quirks", "install", "QUIRK_KEYS", "TRAINER_COLUMNS",
           "ENTRYPOINT", "TRAIN_VIEW", "SCORES_VIEW", "BANDS_VIEW", "RAW_TABLE", "GUARD_ERROR", "ASSERT_ERROR"]
