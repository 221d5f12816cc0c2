"""Generated sources for the tests, with every edge case docs/contract.md names.

``make_rows`` builds numpy columns; ``load`` copies them into a table whose
column types vary on purpose (numeric, real, smallint, boolean, ...), and
``as_reference`` gives the same rows as the reference implementation reads
them (booleans as 0/1, real columns rounded through float32).
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
from psycopg import sql

import reference

US = 1_000_000
HOUR_US = 3600 * US
DAY_US = 86400 * US
START_US = int(np.datetime64("2026-03-02T00:00:00", "us").astype(np.int64))

# column -> SQL type of the test table; real columns lose precision on purpose
COLUMN_TYPES = {
    "generation": "int", "listing_id": "bigint", "t0": "timestamptz", "sold_time": "timestamptz",
    "duration_hours": "numeric", "final_status": "text",
    "delta_vs_sold_median_30d": "float8", "condition_score": "real",
    "damage_severity_ai": "numeric", "battery_pct_effective": "float8",
    "seller_rating": "numeric", "review_count": "int", "member_since_year": "smallint",
    "ai_ship_can": "int", "ai_ship_pickup": "smallint", "ai_pickup_only_bin": "float8",
    "ai_sale_mode_firm": "int", "ai_sale_mode_bids": "int", "ai_sale_mode_obo": "numeric",
    "image_count": "int", "caption_share": "float8", "stock_photo_share": "float8",
    "photo_quality_avg": "float8", "bg_clean_avg": "real", "dmg_band_hq_struct": "float8",
    "charger_bundle_level": "int", "box_present": "boolean", "receipt_present": "boolean",
    "watcher_count": "numeric",  # read only by the band-schema tests' schema 2
    "region": "text",            # read only by the band-schema tests' category band on text
}
INTEGER_TYPES = ("int", "bigint", "smallint")
# in these columns a missing value is stored as NaN (which must read as NULL); elsewhere as NULL
NAN_COLUMNS = ("duration_hours", "delta_vs_sold_median_30d", "damage_severity_ai",
               "ai_sale_mode_obo", "caption_share")


def make_rows(n: int = 3000, n_days: int = 40, seed: int = 1, nok_scale: bool = False) -> dict:
    """Listings over ``n_days`` days with signal, NULLs, NaNs and boundary values."""
    rng = np.random.default_rng(seed)

    def maybe_null(a, p):
        a = np.asarray(a, dtype=np.float64).copy()
        a[rng.random(len(a)) < p] = np.nan
        return a

    def ints(lo, hi, p_null=0.0):
        return maybe_null(rng.integers(lo, hi + 1, n), p_null)

    t0 = START_US + rng.integers(0, n_days * DAY_US, n)
    # snapshots within half a second of UTC midnight: a far-from-UTC session must not move them
    near = rng.random(n) < 0.05
    t0[near] = START_US + rng.integers(0, n_days, near.sum()) * DAY_US + rng.choice([-500_000, 500_000], near.sum())
    delta = rng.normal(0, 1500 if nok_scale else 0.12, n)
    if nok_scale:
        delta[rng.random(n) < 0.05] = rng.choice([-2000.0, -500.0, 500.0, 2000.0], 1)[0]
    else:
        delta[rng.random(n) < 0.05] = rng.choice([-0.15, -0.05, 0.05, 0.15], 1)[0]
    delta = maybe_null(delta, 0.08)
    rows = {
        "generation": rng.integers(1, 4, n).astype(np.int64),
        "listing_id": rng.permutation(n).astype(np.int64) + 5_000_000,
        "t0": t0,
        "delta_vs_sold_median_30d": delta,
        "condition_score": maybe_null(np.round(rng.random(n) ** 0.6, 3), 0.08),
        "damage_severity_ai": maybe_null(rng.choice([0, 0.5, 1, 1.5, 2, 2.5, 3, 4], n), 0.1),
        "battery_pct_effective": maybe_null(np.round(70 + 30 * rng.random(n), 1), 0.2),
        "seller_rating": maybe_null(np.round(8 + 2 * rng.random(n), 1), 0.05),
        "review_count": ints(0, 200, 0.05),
        "member_since_year": ints(2010, 2026, 0.05),
        "ai_ship_can": ints(0, 1, 0.05),
        "ai_ship_pickup": ints(0, 1, 0.05),
        "ai_pickup_only_bin": ints(0, 1, 0.05),
        "ai_sale_mode_firm": ints(0, 1, 0.05),
        "ai_sale_mode_bids": ints(0, 1, 0.05),
        "ai_sale_mode_obo": ints(0, 1, 0.05),
        "image_count": maybe_null(rng.choice([0, 0, 1, 2, 3, 5, 8, 12], n), 0.05),
        "caption_share": maybe_null(np.round(rng.random(n), 3), 0.1),
        "stock_photo_share": maybe_null(np.round(rng.random(n) ** 2, 3), 0.1),
        "photo_quality_avg": maybe_null(np.round(rng.random(n), 3), 0.1),
        "bg_clean_avg": maybe_null(np.round(rng.random(n), 3), 0.1),
        "dmg_band_hq_struct": maybe_null(rng.choice([0, 1, 1.5, 2, 3, 5], n), 0.15),
        "charger_bundle_level": ints(0, 2, 0.1),
        "box_present": ints(0, 1, 0.1),
        "receipt_present": ints(0, 1, 0.1),
    }
    rows["battery_pct_effective"][:2] = [np.inf, -np.inf]  # infinities band as extremes
    latent = (-1.0 + 3.0 * np.nan_to_num(delta / (5000 if nok_scale else 0.4))
              - 1.2 * (np.nan_to_num(rows["condition_score"]) >= 0.9)
              + 0.4 * np.nan_to_num(rows["damage_severity_ai"], nan=1.0)
              - 0.6 * (np.nan_to_num(rows["image_count"]) > 4))
    slow = rng.random(n) < 1 / (1 + np.exp(-latent))
    duration = np.where(slow, 504 + rng.exponential(300, n), rng.uniform(1, 503, n)).round(2)
    duration[rng.random(n) < 0.03] = 48.0
    duration[rng.random(n) < 0.03] = 504.0
    sold = rng.random(n) < 0.85
    sold_time = np.where(sold, t0 + (duration * HOUR_US).astype(np.int64), -1)
    duration_hours = duration.copy()
    duration_hours[sold & (rng.random(n) < 0.02)] = np.nan   # sold, duration unknown: scored, not learned
    status = np.where(sold, "sold", np.where(rng.random(n) < 0.5, "active", "inactive")).astype(object)
    older = rng.random(n) < 0.04                            # y = 1 from the status alone
    status[older] = "older21days"
    status[rng.random(n) < 0.03] = None
    rows.update(sold_time=sold_time, duration_hours=duration_hours, final_status=status)
    rows["watcher_count"] = maybe_null(rng.choice([0, 1, 2, 3, 5, 9, 10, 25], n), 0.1)
    # NULL, a value spelled like the reserved label, a rare one and common ones
    rows["region"] = rng.choice(np.array([None, "__other__", "north", "south", "east", "west's"], dtype=object),
                                n, p=[0.1, 0.02, 0.4, 0.3, 0.17, 0.01])
    return rows


def cutoff_at_a_sale(rows: dict, quantile: float = 0.8) -> int:
    """A cutoff equal to some row's sold_time (that row is TRAIN SOLD)."""
    sold = np.sort(rows["sold_time"][rows["sold_time"] >= 0])
    return int(sold[int(quantile * (len(sold) - 1))])


def to_datetime(us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=int(us))


def epoch_us(t: dt.datetime) -> int:
    """Microseconds since the epoch of a timezone-aware datetime, exactly (no float seconds)."""
    delta = t - to_datetime(0)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _sql_value(column: str, v):
    kind = COLUMN_TYPES[column]
    if column in ("t0", "sold_time"):
        return None if v < 0 else to_datetime(v)
    if kind == "text":
        return v
    if isinstance(v, float) and np.isnan(v):
        if column not in NAN_COLUMNS:
            return None
        return Decimal("NaN") if kind == "numeric" else float("nan")
    if kind == "boolean":
        return bool(v)
    if kind in INTEGER_TYPES:
        return int(v)
    if kind == "numeric":
        return Decimal(repr(float(v))) if np.isfinite(v) else Decimal("Infinity" if v > 0 else "-Infinity")
    return float(v)


def load(conn, table: str, rows: dict) -> None:
    """Create ``table`` and COPY the rows in (NaN stays NaN where the type allows it)."""
    ident = sql.Identifier(*table.split("."))
    cols = list(COLUMN_TYPES)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(ident, sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(COLUMN_TYPES[c])) for c in cols)))
    n = len(rows["t0"])
    with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
            ident, sql.SQL(", ").join(map(sql.Identifier, cols)))) as copy:
        for i in range(n):
            copy.write_row([_sql_value(c, rows[c][i]) for c in cols])


def as_reference(rows: dict) -> dict:
    """The rows as the reference reads them: datetimes, NaN for NULL, float32 for real."""
    out = {}
    for c, kind in COLUMN_TYPES.items():
        a = rows[c]
        if c in ("t0", "sold_time"):
            a = np.where(a < 0, np.iinfo(np.int64).min, a).astype("datetime64[us]")
        elif COLUMN_TYPES[c] == "text":
            a = np.asarray(a, dtype=object)
        elif c in ("generation", "listing_id"):
            a = np.asarray(a, dtype=np.int64)
        else:
            a = np.asarray(a, dtype=np.float64)
            if kind == "real":
                a = a.astype(np.float32).astype(np.float64)
        out[c] = a
    return out


# ---- band schema 2: schema 1 without sale and bat, plus generation and watchers

SCHEMA_2_DROPPED = ("sale", "bat")
_WATCH_RULE = ('{"kind": "ladder", "input": {"column": "watcher_count"}, "null": "watch_missing", '
               '"steps": [{"op": "<", "value": 3, "label": "watch_lo"}, '
               '{"op": "<", "value": 10, "label": "watch_mid"}], "else": "watch_hi"}')


def define_schema_2(conn, version: int, min_weight: float) -> dict:
    """Create schema ``version`` the way a user would (copy, delete, insert); returns the reference variant."""
    conn.execute("SELECT ml.woe_anchor_copy_band_schema(1, %s, 'schema 1 minus sale and bat, plus generation "
                 "and watchers')", [version])
    conn.execute("DELETE FROM ml.woe_anchor_bands WHERE schema_version = %s AND band_name = ANY(%s)",
                 [version, list(SCHEMA_2_DROPPED)])
    conn.execute("INSERT INTO ml.woe_anchor_bands (schema_version, position, band_name, column_name, rule) VALUES "
                 "(%(v)s, 11, 'gen', 'gen_band', jsonb_build_object('kind', 'category', 'column', 'generation', "
                 "'min_weight', %(w)s::float8)), (%(v)s, 12, 'watch', 'watch_band', %(watch)s::jsonb)",
                 dict(v=version, w=min_weight, watch=_WATCH_RULE))
    return reference.schema_2_variant(SCHEMA_2_DROPPED, min_weight)


def skew_generations(rows: dict, seed: int) -> dict:
    """Generations 1..4 with 4 (and 3) rare, so a category floor has values to fold."""
    rng = np.random.default_rng(seed)
    rows["generation"] = rng.choice([1, 2, 3, 4], len(rows["t0"]), p=[0.5, 0.38, 0.09, 0.03]).astype(np.int64)
    return rows
