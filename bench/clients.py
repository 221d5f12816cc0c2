"""Client-side baselines for the benchmark: what a Python trainer does outside the database.

* ``trainer_style``: what the user's trainer does today. It fetches the rows
  with psycopg and bands them in pandas. It refits the WOE tables once per
  fold and once for the final mapping with ``groupby``, then writes the
  scores with ``executemany`` of ``INSERT ... ON CONFLICT``.
* ``best_effort``: the fastest reasonable client. It runs COPY out, bands and
  sums in numpy with ``bincount``, then runs COPY in and adds the primary key.

Both follow docs/contract.md closely enough to do the same work as the extension; they
are baselines for timing, not references for correctness (tests/reference.py
is that).
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import psycopg

FEATURES = ("delta_vs_sold_median_30d", "condition_score", "damage_severity_ai", "battery_pct_effective",
            "seller_rating", "review_count", "member_since_year", "ai_ship_can", "ai_ship_pickup",
            "ai_pickup_only_bin", "ai_sale_mode_firm", "ai_sale_mode_bids", "ai_sale_mode_obo",
            "image_count", "caption_share", "stock_photo_share", "photo_quality_avg", "bg_clean_avg",
            "dmg_band_hq_struct", "charger_bundle_level", "box_present", "receipt_present")
SELECT_COLUMNS = ("generation, listing_id, extract(epoch FROM t0)::float8 AS t0, "
                  "extract(epoch FROM sold_time)::float8 AS sold_time, duration_hours::float8 AS duration_hours, "
                  "final_status, " + ", ".join(f"{c}::int::float8" if c in ("box_present", "receipt_present")
                                              else f"{c}::float8" for c in FEATURES))
SCORES_DDL = """CREATE TABLE {t} (model_key text, generation int, listing_id bigint, t0 timestamptz,
                 fold_id int, is_oof boolean, woe_logit float8, woe_p float8{pk})"""
PK = ", PRIMARY KEY (model_key, generation, listing_id, t0)"
BANDS = ("dsold", "trust", "ship", "sale", "cond", "dmg", "bat", "present", "vdmg", "acc")
VISION = ("present", "vdmg", "acc")


def prepare(df: pd.DataFrame, slow=504.0, min_dur=48.0, half_life=150.0, n_folds=5):
    """Splits, label, weights, thresholds, band codes and folds (docs/contract.md 3-5, 7) in numpy."""
    cutoff = np.nanmax(df["sold_time"].to_numpy()) - 7 * 86400
    df = df[df["sold_time"].notna() & (df["sold_time"] <= cutoff)].reset_index(drop=True)
    col = {c: df[c].to_numpy(dtype=np.float64) for c in FEATURES + ("duration_hours", "t0", "sold_time")}
    dur = col["duration_hours"]
    y = ((dur >= slow) | (df["final_status"].to_numpy() == "older21days")).astype(np.float64)
    learned = dur >= min_dur
    label_ts = np.where(y == 1, col["t0"] + slow * 3600, col["sold_time"])
    ref = label_ts[learned].max()
    w_raw = 0.5 ** (np.maximum(0, ref - label_ts) / 86400 / half_life)
    img = col["image_count"]
    has_assets = np.nan_to_num(img) > 0
    z = {c: np.nan_to_num(col[c]) for c in FEATURES}
    with np.errstate(divide="ignore", invalid="ignore"):
        present = (0.30 * np.log(1 + z["image_count"]) + 0.25 * z["photo_quality_avg"] + 0.20 * z["bg_clean_avg"]
                   + 0.15 * (1 - z["stock_photo_share"]) + 0.10 * z["caption_share"])
    d = col["delta_vs_sold_median_30d"]
    t = (-0.15, -0.05, 0.05, 0.15) if np.nanmedian(np.abs(d[learned])) < 5 else (-2000, -500, 500, 2000)
    pl = present[learned & has_assets]
    c1, c2 = np.percentile(pl, [100 / 3, 200 / 3]) if len(pl) >= 50 else (np.median(pl),) * 2
    year = (col["t0"] // 86400).astype("datetime64[D]").astype("datetime64[Y]").astype(int) + 1970

    def ladder(x, conds, labels, missing=None):
        out = np.select(conds, labels[:len(conds)], labels[len(conds)])
        return np.where(np.isnan(x), missing, out) if missing is not None else out

    def damage(x):
        return ladder(x, [x >= 3, x == 2, x == 1], [1, 2, 3, 4], 0)

    acc = z["charger_bundle_level"] + z["box_present"] + z["receipt_present"]
    codes = {
        "dsold": ladder(d, [d <= t[0], d <= t[1], d <= t[2], d <= t[3]], [1, 2, 3, 4, 5], 0),
        "trust": np.select([(col["seller_rating"] >= 9.7) & (col["review_count"] >= 50)
                            & (col["member_since_year"] <= year - 3),
                            (col["seller_rating"] >= 9.0) & (col["review_count"] >= 10)], [0, 1], 2),
        "ship": np.select([(col["ai_pickup_only_bin"] == 1) | (col["ai_ship_pickup"] == 1),
                           col["ai_ship_can"] == 1], [0, 1], 2),
        "sale": np.select([col["ai_sale_mode_firm"] == 1, col["ai_sale_mode_bids"] == 1,
                           col["ai_sale_mode_obo"] == 1], [0, 1, 2], 3),
        "cond": ladder(col["condition_score"], [col["condition_score"] >= 0.9, col["condition_score"] >= 0.7],
                       [1, 2, 3], 0),
        "dmg": damage(col["damage_severity_ai"]),
        "bat": ladder(col["battery_pct_effective"], [col["battery_pct_effective"] >= 95,
                                                     col["battery_pct_effective"] >= 88], [1, 2, 3], 0),
        "present": np.select([present < c1, present < c2], [0, 1], 2),
        "vdmg": damage(col["dmg_band_hq_struct"]),
        "acc": np.select([acc <= 0, acc < 2], [0, 1], 2),
    }
    day = np.floor(col["t0"] / 86400).astype(np.int64)
    days, day_index = np.unique(day, return_inverse=True)
    fold = (day_index * n_folds) // len(days)
    return df, dict(codes=codes, y=y, learned=learned, w_raw=w_raw, has_assets=has_assets, fold=fold)


def _woe(s_pos, s_neg, t_pos, t_neg, eps=0.5):
    return np.log(((s_pos + eps) / t_pos) / ((s_neg + eps) / t_neg))


def scores_numpy(p, n_folds=5):
    """OOF logits: per fold, bincount sums of the complement, WOE, lookup by code."""
    logit = np.zeros(len(p["y"]))
    for k in range(n_folds):
        train = p["learned"] & (p["fold"] != k)
        w = p["w_raw"] * train
        w = w / w[train].mean()
        out = p["fold"] == k
        t_pos, t_neg = (w * p["y"]).sum(), (w * (1 - p["y"])).sum()
        base = np.log(t_pos / t_neg)
        logit[out] = base
        for b in BANDS:
            rows = p["has_assets"] if b in VISION else np.ones(len(w), dtype=bool)
            codes = p["codes"][b]
            wb = w * rows
            s_pos = np.bincount(codes, wb * p["y"], minlength=8)
            s_neg = np.bincount(codes, wb * (1 - p["y"]), minlength=8)
            table = _woe(s_pos, s_neg, (wb * p["y"]).sum(), (wb * (1 - p["y"])).sum())
            logit[out & rows] += table[codes[out & rows]]
    return logit


def scores_pandas(df, p, n_folds=5):
    """The trainer's way: a pandas groupby per band per fit, then Series.map per row."""
    frame = pd.DataFrame({b: p["codes"][b] for b in BANDS})
    frame["y"], frame["fold"], frame["has_assets"] = p["y"], p["fold"], p["has_assets"]
    logit = pd.Series(0.0, index=frame.index)
    for k in list(range(n_folds)) + [None]:  # every fold, then the final mapping
        train = frame[p["learned"] & ((frame["fold"] != k) if k is not None else True)].copy()
        train["w"] = p["w_raw"][train.index] / p["w_raw"][train.index].mean()
        train["wp"], train["wn"] = train["w"] * train["y"], train["w"] * (1 - train["y"])
        base = np.log(train["wp"].sum() / train["wn"].sum())
        target = frame.index[frame["fold"] == k] if k is not None else frame.index[:0]
        logit[target] = base
        for b in BANDS:
            sub = train[train["has_assets"]] if b in VISION else train
            g = sub.groupby(b)[["wp", "wn"]].sum()
            woe = _woe(g["wp"], g["wn"], sub["wp"].sum(), sub["wn"].sum())
            rows = target if b not in VISION else target[frame.loc[target, "has_assets"].to_numpy()]
            logit[rows] += frame.loc[rows, b].map(woe).fillna(0.0)
    return logit.to_numpy()


def trainer_style(dsn, table, model_key, n_folds=5, batch=1000) -> int:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(f"SELECT {SELECT_COLUMNS} FROM {table}")
        df = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
        df, p = prepare(df, n_folds=n_folds)
        logit = scores_pandas(df, p, n_folds)
        conn.execute(SCORES_DDL.format(t="bench_trainer_scores", pk=PK).replace("CREATE TABLE",
                                                                                "CREATE TABLE IF NOT EXISTS"))
        rows = [(model_key, int(g), int(lid), float(t0), int(f), True, float(l), float(1 / (1 + np.exp(-l))))
                for g, lid, t0, f, l in zip(df["generation"], df["listing_id"], df["t0"], p["fold"], logit)]
        with conn.cursor() as c:
            for i in range(0, len(rows), batch):
                c.executemany(
                    "INSERT INTO bench_trainer_scores VALUES (%s, %s, %s, to_timestamp(%s), %s, %s, %s, %s) "
                    "ON CONFLICT (model_key, generation, listing_id, t0) DO UPDATE SET fold_id = EXCLUDED.fold_id, "
                    "is_oof = EXCLUDED.is_oof, woe_logit = EXCLUDED.woe_logit, woe_p = EXCLUDED.woe_p",
                    rows[i:i + batch])
        return len(rows)


def best_effort(dsn, table, model_key, n_folds=5) -> int:
    with psycopg.connect(dsn) as conn:
        buf = io.BytesIO()
        with conn.cursor().copy(f"COPY (SELECT {SELECT_COLUMNS} FROM {table}) TO STDOUT (FORMAT csv, HEADER)") as cp:
            for chunk in cp:
                buf.write(chunk)
        buf.seek(0)
        df, p = prepare(pd.read_csv(buf), n_folds=n_folds)
        logit = scores_numpy(p, n_folds)
        out = pd.DataFrame({"model_key": model_key, "generation": df["generation"], "listing_id": df["listing_id"],
                            "t0": pd.to_datetime(df["t0"], unit="s", utc=True), "fold_id": p["fold"],
                            "is_oof": True, "woe_logit": logit, "woe_p": 1 / (1 + np.exp(-logit))})
        csv = out.to_csv(index=False, header=False).encode()
        conn.execute("DROP TABLE IF EXISTS bench_best_effort_scores")
        conn.execute(SCORES_DDL.format(t="bench_best_effort_scores", pk=""))
        with conn.cursor().copy("COPY bench_best_effort_scores FROM STDIN (FORMAT csv)") as cp:
            cp.write(csv)
        conn.execute("ALTER TABLE bench_best_effort_scores ADD" + PK[1:])
        return len(out)
