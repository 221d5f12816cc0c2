"""The fit's few set-based statements over the source, whatever n_folds is.

1. ``stats_sql``: row counts, the weight reference time and the inputs of
   the learned thresholds (one aggregate over TRAIN SOLD).
2. ``sums_sql``: per-UTC-day weighted sums of every band value, one
   GROUPING SETS aggregate; every fold's statistics are sums of its days.
3. ``score_sql``: scores each TRAIN SOLD row with its fold's mapping, looked
   up in flat arrays, as one INSERT ... SELECT.

Parameters are bound, never spliced: $1 cutoff timestamptz, $2
slow_threshold_hours float8, $3 min_duration_hours float8 throughout.
"""
from __future__ import annotations

from . import bands as b
from .sqlgen import Compiler, float_lit

PARAM_TYPES = ["timestamptz", "float8", "float8"]
DAY_SQL = "((s.t0 AT TIME ZONE 'UTC')::date - '1970-01-01'::date)"


def _train_sold_where() -> str:
    return "s.sold_time IS NOT NULL AND s.sold_time <= $1"


def _label_sql(src: Compiler) -> str:
    """y = 1 iff duration >= threshold or final_status = 'older21days' (SPEC.md 3)."""
    dur = src.reads['duration_hours']
    return f"(coalesce({dur} >= $2, false) OR coalesce(s.final_status = 'older21days', false))"


def _learned_sql(src: Compiler) -> str:
    return f"coalesce({src.reads['duration_hours']} >= $3, false)"


def _label_ts_sql(src: Compiler) -> str:
    """Seconds since epoch of the label's moment (SPEC.md 4)."""
    return (f"CASE WHEN {_label_sql(src)} THEN date_part('epoch', s.t0) + $2 * 3600::float8 "
            f"ELSE date_part('epoch', s.sold_time) END")


def cutoff_sql(qualified: str) -> str:
    """Default cutoff: max(sold_time) minus 7 days (SPEC.md 3)."""
    return f"SELECT max(s.sold_time) - interval '7 days' AS cutoff FROM {qualified} AS s"


def stats_sql(src: Compiler, qualified: str, presentation: b.Input, subset: str) -> str:
    """Counts, ref and threshold inputs over TRAIN SOLD (one read of the source)."""
    dsold = src.reads[b.DSOLD_INPUT]
    return f"""
SELECT count(*) AS n_train_sold,
       count(*) FILTER (WHERE r.learned) AS n_learned,
       count(*) FILTER (WHERE r.null_key) AS n_null_keys,
       max(r.label_ts) FILTER (WHERE r.learned) AS ref_epoch,
       percentile_cont(0.5::float8) WITHIN GROUP (ORDER BY abs(r.dsold))
           FILTER (WHERE r.learned) AS dsold_abs_median,
       count(r.present) FILTER (WHERE r.learned AND r.in_subset) AS n_present,
       percentile_cont(ARRAY[1::float8 / 3, 2::float8 / 3, 0.5::float8])
           WITHIN GROUP (ORDER BY r.present) FILTER (WHERE r.learned AND r.in_subset) AS present_q
FROM (SELECT {_learned_sql(src)} AS learned,
             (s.generation IS NULL OR s.listing_id IS NULL OR s.t0 IS NULL) AS null_key,
             {_label_ts_sql(src)} AS label_ts,
             {dsold} AS dsold,
             {src.subset(subset)} AS in_subset,
             {src.input(presentation)} AS present
      FROM {qualified} AS s
      WHERE {_train_sold_where()}
      OFFSET 0) AS r
"""


def weight_sql(label_ts: str, ref_epoch: float, half_life_days: float | None) -> str:
    """w_raw = 0.5 ^ (age_days / half_life), 0 once it underflows (SPEC.md 4)."""
    if half_life_days is None or half_life_days <= 0:
        return "1::float8"
    x = (f"(greatest(0::float8, {float_lit(ref_epoch)} - {label_ts}) / 86400::float8 "
         f"/ {float_lit(half_life_days)})")
    # PostgreSQL raises on float underflow where numpy returns 0
    return f"CASE WHEN {x} >= 1075::float8 THEN 0::float8 ELSE 0.5::float8 ^ {x} END"


def code_base(schema: b.BandSchema) -> int:
    """Multiplier that packs (day, code) into one integer key: more than any code."""
    return max(2, max(len(band.labels) for band in schema.bands))


def sums_sql(src: Compiler, qualified: str, schema: b.BandSchema,
             ref_epoch: float, half_life_days: float | None) -> str:
    """Per-day sums for the global row set, each subset and each band value.

    Each grouping set is one integer key, day * base + code (a subset's code
    is 1 inside it), so the planner estimates few groups and hashes every
    set in a single pass. ``g`` is GROUPING() over the keys: a 0 bit names
    the key a row groups by; the row with every bit set is the day total.
    """
    subsets = list(schema.subsets)
    base = code_base(schema)
    codes = [f"({src.subset(name)})::int AS s_{i}" for i, name in enumerate(subsets)]
    codes += [f"{src.band(band)} AS b_{i}" for i, band in enumerate(schema.bands)]
    names = [c.rsplit(" AS ", 1)[1] for c in codes]
    w = weight_sql(_label_ts_sql(src), ref_epoch, half_life_days)
    sets = ["(k.day)"] + [f"(k.{n})" for n in names]
    return f"""
SELECT GROUPING({', '.join('k.' + n for n in names)}) AS g, k.day,
       {', '.join('k.' + n for n in names)},
       count(*) AS n_rows,
       count(*) FILTER (WHERE k.learned) AS n_learned,
       coalesce(sum(k.w), 0) AS sw,
       coalesce(sum(k.w) FILTER (WHERE k.y), 0) AS sw_pos,
       coalesce(sum(k.w) FILTER (WHERE NOT k.y), 0) AS sw_neg
FROM (SELECT r.day, r.y, r.learned, r.w, {', '.join(f'r.day * {base} + r.{n} AS {n}' for n in names)}
      FROM (SELECT {DAY_SQL} AS day,
                   {_label_sql(src)} AS y,
                   {_learned_sql(src)} AS learned,
                   CASE WHEN {_learned_sql(src)} THEN {w} END AS w,
                   {', '.join(codes)}
            FROM {qualified} AS s
            WHERE {_train_sold_where()}
            OFFSET 0) AS r
      OFFSET 0) AS k
GROUP BY GROUPING SETS ({', '.join(sets)})
"""


def score_sql(src: Compiler, qualified: str, schema: b.BandSchema, target: str,
              band_offsets: list[int], stride: int, oof: bool) -> str:
    """INSERT every TRAIN SOLD row's score, looked up by fold in flat arrays.

    Extra parameters: $4 model_key text, $5 day0 int (first UTC day),
    $6 fit index per day offset int[], $7 base logit per fit float8[],
    $8 woe per (fit, band, code) float8[] with 0 for unseen values.
    """
    lookups = []
    for i, (band, off) in enumerate(zip(schema.bands, band_offsets)):
        cell = f"$8[q.f * {stride} + {off + 1} + q.b_{i}]"
        # a subset band is NULL outside its subset and contributes nothing
        lookups.append(f"coalesce({cell}, 0::float8)" if band.subset else cell)
    logit = " + ".join([f"$7[q.f + 1]"] + lookups)
    fold_id = "q.f" if oof else "NULL::int"
    inner = ", ".join(f"{src.band(band)} AS b_{i}" for i, band in enumerate(schema.bands))
    return f"""
INSERT INTO {target} (model_key, generation, listing_id, t0, fold_id, is_oof, woe_logit, woe_p)
SELECT $4, z.generation, z.listing_id, z.t0, z.fold_id, {'true' if oof else 'false'}, z.l,
       1::float8 / (1::float8 + exp(-least(greatest(z.l, -709::float8), 745::float8)))
FROM (SELECT q.generation, q.listing_id, q.t0, {fold_id} AS fold_id, {logit} AS l
      FROM (SELECT s.generation, s.listing_id, s.t0,
                   $6[{DAY_SQL} - $5 + 1] AS f,
                   {inner}
            FROM {qualified} AS s
            WHERE {_train_sold_where()}
            OFFSET 0) AS q
      OFFSET 0) AS z
"""
