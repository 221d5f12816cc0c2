"""Independent reference implementation of the woe_anchor contract (docs/contract.md, sections 2-7).

Written only from the user's specification and OOF requirements (restated in docs/contract.md), in plain
Python + numpy, for tests to compare the PostgreSQL extension against.  Clarity over speed.

Entry point: ``fit_reference(rows, ...)``; see its docstring for the input and output shapes.
"""

import math

import numpy as np

BAND_NAMES_GLOBAL = ("dsold", "trust", "ship", "sale", "cond", "dmg", "bat")
BAND_NAMES_VISION = ("present", "vdmg", "acc")

FEATURE_COLUMNS = (
    "delta_vs_sold_median_30d", "condition_score", "damage_severity_ai", "battery_pct_effective",
    "seller_rating", "review_count", "member_since_year",
    "ai_ship_can", "ai_ship_pickup", "ai_pickup_only_bin",
    "ai_sale_mode_firm", "ai_sale_mode_bids", "ai_sale_mode_obo",
    "image_count", "caption_share", "stock_photo_share", "photo_quality_avg", "bg_clean_avg",
    "dmg_band_hq_struct", "charger_bundle_level", "box_present", "receipt_present",
)

# Band schemas other than schema 1, for the band-schema tests: a ``variant`` drops some
# of schema 1's bands and adds bands, each {"name", "subset": None or "has_assets", "labels":
# f(columns, cuts) -> labels of the rows (None for NULL), "min_weight": float for a category band}.
# ``columns`` maps every source column to its TRAIN SOLD (or scored) rows; ``cuts`` is (c1, c2).
# The rules below are the rule kinds of docs/band-schemas.md, written here from their description.
OTHER, NULL_VALUE = "__other__", "__null__"
WATCH_STEPS = (("<", 3.0, "watch_lo"), ("<", 10.0, "watch_mid"))   # x < 3, x < 10, else watch_hi

_OPS = {"<": np.less, "<=": np.less_equal, "=": np.equal, ">=": np.greater_equal, ">": np.greater}


def ladder_labels(x, steps, otherwise, null=None):
    """Per value, the label of the first (op, threshold, label) step that holds; a NULL (NaN)
    input gets ``null`` if given, else ``otherwise``, as does a value no step holds for."""
    out = np.empty(len(x), dtype=object)
    for i, v in enumerate(np.asarray(x, dtype=np.float64)):
        if np.isnan(v):
            out[i] = otherwise if null is None else null
            continue
        out[i] = next((label for op, t, label in steps if _OPS[op](v, t)), otherwise)
    return out


def sum_input(columns, terms):
    """A weighted sum of (coef, column) terms, left to right, NULL read as 0; NaN (from
    infinities of both signs) stays NaN, which a ladder reads as NULL."""
    total = 0.0
    with np.errstate(invalid="ignore"):
        for coef, name in terms:
            total = total + coef * _null_as_zero(np.asarray(columns[name], dtype=np.float64))
    return total


def category_values(x):
    """A column's values as a category band reads them: text as is, integers printed, NULL None."""
    return np.array([None if v is None or (isinstance(v, float) and np.isnan(v))
                     else v if isinstance(v, str) else str(int(v)) for v in x], dtype=object)


def schema_2_variant(drop, min_weight):
    """Issue #8's schema 2: schema 1 without ``drop``, plus generation as a category and a
    ladder on watcher_count."""
    return {"drop": tuple(drop), "bands": [
        {"name": "gen", "subset": None, "min_weight": min_weight,
         "labels": lambda cols, cuts: category_values(cols["generation"])},
        {"name": "watch", "subset": None,
         "labels": lambda cols, cuts: ladder_labels(cols["watcher_count"], WATCH_STEPS, "watch_hi", "watch_missing")},
    ]}


def band_set(variant):
    """(global band names, vision band names, {category band: min_weight}) of a variant."""
    if variant is None:
        return BAND_NAMES_GLOBAL, BAND_NAMES_VISION, {}
    extra = variant["bands"]
    kept = [n for n in BAND_NAMES_GLOBAL + BAND_NAMES_VISION if n not in variant["drop"]]
    names_global = tuple(n for n in kept if n in BAND_NAMES_GLOBAL) + tuple(
        b["name"] for b in extra if b["subset"] is None)
    names_vision = tuple(n for n in kept if n in BAND_NAMES_VISION) + tuple(
        b["name"] for b in extra if b["subset"] == "has_assets")
    return names_global, names_vision, {b["name"]: b["min_weight"] for b in extra if "min_weight" in b}


def add_variant_bands(out, variant, columns, has_assets, cuts):
    """A variant's added bands, labelled on the given rows; NULL outside a band's subset."""
    for band in variant["bands"]:
        labels = band["labels"](columns, cuts)
        if band["subset"] == "has_assets":
            labels = np.where(has_assets, labels, None)
        out[band["name"]] = labels


def category_labels(vals, ws, min_weight):
    """Per row, its value if the value's weight in this fit is at least min_weight, else OTHER.

    ``ws`` are the fit's normalised weights of these rows; NULL is its own value.
    Returns (labels, the kept values).
    """
    weight = {}
    for v, w in zip(vals, ws):
        if v is not None:
            weight[v] = weight.get(v, 0.0) + w
    kept = {v for v, total in weight.items() if total >= min_weight}
    return np.array([NULL_VALUE if v is None else v if v in kept else OTHER for v in vals], dtype=object), kept


US_PER_S = 1e6
SECONDS_PER_DAY = 86400.0
SEVEN_DAYS = np.timedelta64(7 * 24 * 3600 * 1_000_000, "us")
DSOLD_NARROW = (-0.15, -0.05, 0.05, 0.15)
DSOLD_WIDE = (-2000.0, -500.0, 500.0, 2000.0)


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------

def _percentile_cont(values, q):
    """PostgreSQL ``percentile_cont(q)`` over non-NULL float values (docs/contract.md section 5).

    position = q * (n - 1); first = floor(position), second = ceil(position);
    result = v[first] if first == second else v[first] + (v[second] - v[first]) * frac.
    Returns NaN (i.e. SQL NULL) when there are no values.
    """
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = len(v)
    if n == 0:
        return float("nan")
    pos = q * (n - 1)
    first = math.floor(pos)
    second = math.ceil(pos)
    lo = float(v[first])
    if second == first:
        return lo
    hi = float(v[second])
    frac = pos - first
    with np.errstate(invalid="ignore"):
        return float(np.float64(lo) + (np.float64(hi) - np.float64(lo)) * np.float64(frac))


def _sigmoid(logit):
    """p = 1 / (1 + e^(-logit)) without overflow for any logit (docs/contract.md section 6).

    Uses the literal formula except where e^(-logit) would overflow, where the
    algebraically identical e^logit / (1 + e^logit) is used instead.
    """
    x = float(logit)
    if x < -700.0:
        e = math.exp(x)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(-x))


def _null_as_zero(a):
    """NULL (NaN) read as 0 (docs/contract.md section 5, presentation score and accessories)."""
    return np.where(np.isnan(a), 0.0, a)


# --------------------------------------------------------------------------------------
# bands (docs/contract.md section 5)
# --------------------------------------------------------------------------------------

def _dsold_band(x, t):
    if np.isnan(x):
        return "dSold_missing"
    if x <= t[0]:
        return "dSold_cheap"
    if x <= t[1]:
        return "dSold_under"
    if x <= t[2]:
        return "dSold_fair"
    if x <= t[3]:
        return "dSold_over"
    return "dSold_overpriced"


def _trust_tier(rating, reviews, member_since, t0_year):
    # NaN comparisons are False, so NULLs never satisfy a test.
    if rating >= 9.7 and reviews >= 50 and member_since <= t0_year - 3:
        return "HIGH"
    if rating >= 9.0 and reviews >= 10:
        return "MED"
    return "LOW"


def _ship_band(pickup_only, ship_pickup, ship_can):
    if pickup_only == 1 or ship_pickup == 1:
        return "pickup_heavy"
    if ship_can == 1:
        return "shipping_ok"
    return "ship_unknown"


def _sale_band(firm, bids, obo):
    if firm == 1:
        return "firm"
    if bids == 1:
        return "bids"
    if obo == 1:
        return "obo"
    return "sale_unspec"


def _cond_band(x):
    if np.isnan(x):
        return "cond_missing"
    if x >= 0.90:
        return "cond_hi"
    if x >= 0.70:
        return "cond_mid"
    return "cond_lo"


def _damage_band(x, prefix):
    """Shared rule of dmg_ai_band and vdmg_band: NULL, >= 3, = 2, = 1, else 0."""
    if np.isnan(x):
        return prefix + "_missing"
    if x >= 3:
        return prefix + "_3p"
    if x == 2:
        return prefix + "_2"
    if x == 1:
        return prefix + "_1"
    return prefix + "_0"


def _bat_band(x):
    if np.isnan(x):
        return "bat_missing"
    if x >= 95:
        return "bat_hi"
    if x >= 88:
        return "bat_mid"
    return "bat_lo"


def _presentation_band(score, c1, c2):
    # A NaN score (only possible from mixed +/-inf inputs) fails both tests -> present_hi.
    if score < c1:
        return "present_lo"
    if score < c2:
        return "present_mid"
    return "present_hi"


def _accessories_band(acc):
    if acc <= 0:
        return "acc_lo"
    if acc < 2:
        return "acc_mid"
    return "acc_hi"


def presentation_score(c):
    """Presentation score of docs/contract.md section 5, each NULL input read as 0 (summed left to right)."""
    ic = _null_as_zero(c["image_count"])
    pq = _null_as_zero(c["photo_quality_avg"])
    bg = _null_as_zero(c["bg_clean_avg"])
    st = _null_as_zero(c["stock_photo_share"])
    cap = _null_as_zero(c["caption_share"])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (0.30 * np.log(1.0 + ic) + 0.25 * pq + 0.20 * bg
                + 0.15 * (1.0 - st) + 0.10 * cap)


def accessories_value(c):
    """charger_bundle_level + box_present + receipt_present, NULL as 0 (docs/contract.md section 5)."""
    with np.errstate(invalid="ignore"):
        return (_null_as_zero(c["charger_bundle_level"]) + _null_as_zero(c["box_present"])
                + _null_as_zero(c["receipt_present"]))


def compute_bands(c, t0, has_assets, thresholds, cuts):
    """Band labels of every row (docs/contract.md section 5).

    Returns {band_name: object array}; vision bands are None where not has_assets.
    """
    n = len(t0)
    t0_year = t0.astype("datetime64[Y]").astype(np.int64) + 1970
    pres = presentation_score(c)
    acc = accessories_value(c)
    c1, c2 = cuts
    out = {name: np.empty(n, dtype=object) for name in BAND_NAMES_GLOBAL + BAND_NAMES_VISION}
    for i in range(n):
        out["dsold"][i] = _dsold_band(c["delta_vs_sold_median_30d"][i], thresholds)
        out["trust"][i] = _trust_tier(c["seller_rating"][i], c["review_count"][i],
                                      c["member_since_year"][i], t0_year[i])
        out["ship"][i] = _ship_band(c["ai_pickup_only_bin"][i], c["ai_ship_pickup"][i],
                                    c["ai_ship_can"][i])
        out["sale"][i] = _sale_band(c["ai_sale_mode_firm"][i], c["ai_sale_mode_bids"][i],
                                    c["ai_sale_mode_obo"][i])
        out["cond"][i] = _cond_band(c["condition_score"][i])
        out["dmg"][i] = _damage_band(c["damage_severity_ai"][i], "dmg")
        out["bat"][i] = _bat_band(c["battery_pct_effective"][i])
        if has_assets[i]:
            out["present"][i] = _presentation_band(pres[i], c1, c2)
            out["vdmg"][i] = _damage_band(c["dmg_band_hq_struct"][i], "vdmg")
            out["acc"][i] = _accessories_band(acc[i])
        else:
            out["present"][i] = None
            out["vdmg"][i] = None
            out["acc"][i] = None
    return out


# --------------------------------------------------------------------------------------
# one fit and scoring (docs/contract.md sections 4 and 6)
# --------------------------------------------------------------------------------------

def _fit_one(learned_idx, w_raw, y, bands, has_assets, eps, variant=None):
    """One WOE fit on the given learned rows (docs/contract.md section 6).

    Weights are w_raw divided by their mean over these learned rows (section 4).
    Global bands use all of them, vision bands only the has_assets ones.
    """
    learned_idx = np.asarray(learned_idx, dtype=np.int64)
    n_learned = len(learned_idx)
    w = np.zeros(n_learned, dtype=np.float64)
    if n_learned > 0:
        mean_w = float(np.mean(w_raw[learned_idx]))
        # mean_w == 0 only if every w_raw underflowed to 0; then all weights stay 0.
        w = w_raw[learned_idx] / mean_w if mean_w > 0 else w_raw[learned_idx].copy()
    yl = y[learned_idx].astype(np.float64)
    ha = has_assets[learned_idx]

    fit_map, kept = {}, {}
    base_tp = base_tn = 0.0
    names_global, names_vision, categories = band_set(variant)
    for names, row_mask in ((names_global, np.ones(n_learned, dtype=bool)),
                            (names_vision, ha)):
        ws, ys = w[row_mask], yl[row_mask]
        t_pos = float(np.sum(ws * ys))
        t_neg = float(np.sum(ws * (1.0 - ys)))
        if names is names_global:
            base_tp, base_tn = t_pos, t_neg
        degenerate = t_pos <= 0 or t_neg <= 0
        for name in names:
            vals = bands[name][learned_idx][row_mask]
            if name in categories:
                vals, kept[name] = category_labels(vals, ws, categories[name])
            for value in sorted(set(vals)):
                m = vals == value
                s_pos = float(np.sum(ws[m] * ys[m]))
                s_neg = float(np.sum(ws[m] * (1.0 - ys[m])))
                if degenerate:
                    woe = 0.0
                else:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        woe = float(np.log(((s_pos + eps) / t_pos) / ((s_neg + eps) / t_neg)))
                fit_map[(name, value)] = (woe, s_pos, s_neg, int(np.sum(m)))

    total = base_tp + base_tn
    base_rate = base_tp / total if total != 0 else 0.5
    p = min(max(base_rate, 1e-12), 1.0 - 1e-12)
    base_logit = math.log(p / (1.0 - p))
    return {"base_rate": base_rate, "base_logit": base_logit, "n_learned": n_learned,
            "map": fit_map, "kept": kept, "variant": variant}


def _score_row(fit, i, bands, has_assets):
    """logit = base_logit + sum of woe of the row's bands; unseen values add 0 (docs/contract.md section 6)."""
    logit = fit["base_logit"]
    names_global, names_vision, categories = band_set(fit["variant"])
    names = names_global + (names_vision if has_assets[i] else ())
    for name in names:
        value = bands[name][i]
        if name in categories:
            value = NULL_VALUE if value is None else value if value in fit["kept"][name] else OTHER
        entry = fit["map"].get((name, value))
        if entry is not None:
            logit += entry[0]
    return logit


# --------------------------------------------------------------------------------------
# the whole CALL (docs/contract.md sections 3-7)
# --------------------------------------------------------------------------------------

def fit_reference(rows, *, cutoff=None, n_folds=5, half_life_days=150.0, eps=0.5,
                  slow_threshold_hours=504.0, min_duration_hours=48.0,
                  dsold_thresholds=None, oof=True, variant=None) -> dict:
    """Reference for ml.fit_woe_anchor's computation (docs/contract.md sections 3-7; no persistence).

    rows: dict of equal-length numpy arrays, one per docs/contract.md section 2 column
    (t0/sold_time datetime64[us], NaT = NULL; numeric features float64, NaN = NULL;
    final_status object array of str/None).

    Returns {"cutoff", "ref_epoch_s", "ref_us", "dsold_thresholds", "cuts", "n_train_sold",
    "n_learned", "n_days", "fits", "scores"}; see the module's caller brief.
    Raises ValueError for an empty TRAIN SOLD set, or fewer than 2 distinct days with OOF on.
    ``variant`` (None: schema 1) describes another band schema (see band_set).
    """
    # ---- inputs (section 2) ----
    generation = np.asarray(rows["generation"]).astype(np.int64)
    listing_id = np.asarray(rows["listing_id"]).astype(np.int64)
    t0_all = np.asarray(rows["t0"]).astype("datetime64[us]")
    sold_all = np.asarray(rows["sold_time"]).astype("datetime64[us]")
    duration_all = np.asarray(rows["duration_hours"], dtype=np.float64)
    status_all = np.asarray(rows["final_status"], dtype=object)
    feat_all = {name: np.asarray(rows[name], dtype=np.float64) for name in FEATURE_COLUMNS}

    if n_folds is None or int(n_folds) < 1:
        raise ValueError("n_folds must be >= 1")
    n_folds = int(n_folds)
    use_oof = bool(oof) and n_folds > 1

    # ---- cutoff and TRAIN SOLD (section 3) ----
    if cutoff is None:
        sold_known = sold_all[~np.isnat(sold_all)]
        if len(sold_known) == 0:
            raise ValueError("empty TRAIN SOLD set: no sold_time in the source")
        cutoff = sold_known.max() - SEVEN_DAYS
    cutoff = np.datetime64(cutoff, "us")
    train = ~np.isnat(sold_all) & (sold_all <= cutoff)
    n_train = int(np.sum(train))
    if n_train == 0:
        raise ValueError("empty TRAIN SOLD set")

    # From here on every array covers TRAIN SOLD rows only.
    gen = generation[train]
    lid = listing_id[train]
    t0 = t0_all[train]
    sold = sold_all[train]
    duration = duration_all[train]
    status = status_all[train]
    c = {name: a[train] for name, a in feat_all.items()}

    # ---- label and learned rows (section 3) ----
    older21 = np.array([s == "older21days" for s in status], dtype=bool)
    y = ((duration >= slow_threshold_hours) | older21).astype(np.int64)   # NaN >= x is False
    learned = duration >= min_duration_hours                              # NULL never learned
    final_idx = np.flatnonzero(learned)
    ic = c["image_count"]
    has_assets = ~np.isnan(ic) & (ic > 0)

    # ---- weights (section 4), float64 seconds since the epoch ----
    t0_s = t0.astype(np.int64) / US_PER_S
    sold_s = sold.astype(np.int64) / US_PER_S
    label_ts = np.where(y == 1, t0_s + slow_threshold_hours * 3600.0, sold_s)
    ref = float(np.max(label_ts[final_idx])) if len(final_idx) > 0 else float("nan")
    # the same instant in whole microseconds, as a timestamptz stores it
    label_us = np.where(y == 1, t0.astype(np.int64) + round(slow_threshold_hours * 3600 * US_PER_S),
                        sold.astype(np.int64))
    ref_us = int(np.max(label_us[final_idx])) if len(final_idx) > 0 else None
    hl = half_life_days
    if hl is None or not (float(hl) > 0):          # NULL, NaN or <= 0: no decay
        w_raw = np.ones(n_train, dtype=np.float64)
    else:
        age_days = np.maximum(0.0, ref - label_ts) / SECONDS_PER_DAY
        w_raw = 0.5 ** (age_days / float(hl))

    # ---- thresholds and cuts, learned once on the final learned rows (section 5) ----
    if dsold_thresholds is not None:
        thresholds = tuple(float(t) for t in dsold_thresholds)
        if len(thresholds) != 4:
            raise ValueError("dsold_thresholds needs exactly 4 values")
    else:
        delta = c["delta_vs_sold_median_30d"][final_idx]
        med = _percentile_cont(np.abs(delta[~np.isnan(delta)]), 0.5)
        thresholds = DSOLD_NARROW if med < 5 else DSOLD_WIDE   # NULL median -> not < 5
    pres = presentation_score(c)[final_idx[has_assets[final_idx]]]
    pres = pres[~np.isnan(pres)]
    if len(pres) >= 50:
        cuts = (_percentile_cont(pres, 1.0 / 3.0), _percentile_cont(pres, 2.0 / 3.0))
    elif len(pres) >= 1:
        m = _percentile_cont(pres, 0.5)
        cuts = (m, m)
    else:
        cuts = (0.0, 0.0)

    bands = compute_bands(c, t0, has_assets, thresholds, cuts)
    if variant is not None:
        add_variant_bands(bands, variant, {name: np.asarray(a)[train] for name, a in rows.items()}, has_assets, cuts)

    # ---- final fit (sections 6, 7) ----
    fits = {None: _fit_one(final_idx, w_raw, y, bands, has_assets, eps, variant)}

    # ---- day-blocked folds (section 7) ----
    t0_day = t0.astype("datetime64[D]")
    days = np.unique(t0_day)                         # sorted ascending
    n_days = len(days)
    day_fold = {d: (i * n_folds) // n_days for i, d in enumerate(days)}
    fold_of_row = np.array([day_fold[d] for d in t0_day], dtype=np.int64)

    keys = [(int(gen[i]), int(lid[i]), int(t0[i].astype(np.int64))) for i in range(n_train)]
    scores = {}
    if use_oof:
        if n_days < 2:
            raise ValueError("OOF requested but TRAIN SOLD spans fewer than 2 distinct days "
                             "(%d); use n_folds = 1 or oof = false" % n_days)
        for k in sorted(set(fold_of_row.tolist())):
            in_fold = fold_of_row == k
            train_idx = np.flatnonzero(~in_fold & learned)
            fit_k = _fit_one(train_idx, w_raw, y, bands, has_assets, eps, variant)
            fits[k] = fit_k
            for i in np.flatnonzero(in_fold):
                logit = _score_row(fit_k, i, bands, has_assets)
                scores[keys[i]] = (int(k), True, logit, _sigmoid(logit))
    else:
        for i in range(n_train):
            logit = _score_row(fits[None], i, bands, has_assets)
            scores[keys[i]] = (None, False, logit, _sigmoid(logit))

    return {
        "cutoff": cutoff,
        "ref_epoch_s": ref,
        "ref_us": ref_us,
        "dsold_thresholds": tuple(float(t) for t in thresholds),
        "cuts": (float(cuts[0]), float(cuts[1])),
        "n_train_sold": n_train,
        "n_learned": int(len(final_idx)),
        "n_days": int(n_days),
        "fits": fits,
        "scores": scores,
    }


# --------------------------------------------------------------------------------------
# self-check
# --------------------------------------------------------------------------------------

def _random_rows(n=400, n_days=20, seed=7):
    """A small random source relation with NULLs, unsold rows and 'older21days' rows."""
    rng = np.random.default_rng(seed)
    base = np.datetime64("2024-03-01T00:00:00", "us")
    t0 = base + (rng.uniform(0, n_days * 86400, n) * 1e6).astype(np.int64).astype("timedelta64[us]")
    duration = rng.gamma(1.5, 250.0, n)
    duration[rng.random(n) < 0.05] = np.nan
    sold = rng.random(n) < 0.8
    sold_time = np.where(sold & ~np.isnan(duration),
                         t0 + (np.nan_to_num(duration) * 3.6e9).astype(np.int64).astype("timedelta64[us]"),
                         np.datetime64("NaT", "us"))
    # a few sold rows with NULL duration
    sold_time = np.where(np.isnan(duration) & (rng.random(n) < 0.5),
                         t0 + np.timedelta64(3, "D"), sold_time)
    status = np.array([rng.choice(["sold", "active", "inactive", "older21days", None])
                       for _ in range(n)], dtype=object)

    def col(low, high, p_null=0.15, integer=False):
        a = rng.uniform(low, high, n)
        if integer:
            a = np.floor(a)
        a[rng.random(n) < p_null] = np.nan
        return a

    def bit(p_null=0.15):
        return col(0, 2, p_null, integer=True)

    rows = {
        "generation": rng.integers(1, 4, n).astype(np.int64),
        "listing_id": np.arange(n, dtype=np.int64) + 1000,
        "t0": t0, "sold_time": sold_time.astype("datetime64[us]"),
        "duration_hours": duration, "final_status": status,
        "delta_vs_sold_median_30d": col(-0.3, 0.3),
        "condition_score": col(0.5, 1.0),
        "damage_severity_ai": col(0, 4.5, integer=True),
        "battery_pct_effective": col(80, 100),
        "seller_rating": col(8.5, 10.0),
        "review_count": col(0, 200, integer=True),
        "member_since_year": col(2010, 2024, integer=True),
        "ai_ship_can": bit(), "ai_ship_pickup": bit(), "ai_pickup_only_bin": bit(),
        "ai_sale_mode_firm": bit(), "ai_sale_mode_bids": bit(), "ai_sale_mode_obo": bit(),
        "image_count": col(0, 8, 0.2, integer=True),
        "caption_share": col(0, 1), "stock_photo_share": col(0, 1),
        "photo_quality_avg": col(0, 1), "bg_clean_avg": col(0, 1),
        "dmg_band_hq_struct": col(0, 4, integer=True),
        "charger_bundle_level": col(0, 2, integer=True),
        "box_present": bit(), "receipt_present": bit(),
    }
    rows["delta_vs_sold_median_30d"][:3] = [np.inf, -np.inf, 1.5]
    rows["damage_severity_ai"][3] = 1.5
    return rows


def _summarise(label, res):
    final = res["fits"][None]
    print("== %s ==" % label)
    print("cutoff=%s ref_epoch_s=%.1f n_train_sold=%d n_learned=%d n_days=%d"
          % (res["cutoff"], res["ref_epoch_s"], res["n_train_sold"], res["n_learned"],
             res["n_days"]))
    print("dsold_thresholds=%s cuts=(%.6f, %.6f)" % (res["dsold_thresholds"], *res["cuts"]))
    print("fits: %s" % sorted(res["fits"], key=lambda k: -1 if k is None else k))
    for k in sorted(res["fits"], key=lambda k: -1 if k is None else k):
        f = res["fits"][k]
        print("  fit %-4s n_learned=%-4d base_rate=%.6f base_logit=%+.6f map_entries=%d"
              % (k, f["n_learned"], f["base_rate"], f["base_logit"], len(f["map"])))
    for (name, value), (woe, sp, sn, nr) in sorted(final["map"].items()):
        print("    %-8s %-18s woe=%+.6f S+=%.6f S-=%.6f n=%d" % (name, value, woe, sp, sn, nr))
    ps = np.array([s[3] for s in res["scores"].values()])
    n_oof = sum(1 for s in res["scores"].values() if s[1])
    print("scores: %d rows, %d oof, p in [%.6f, %.6f], mean p %.6f"
          % (len(ps), n_oof, ps.min(), ps.max(), ps.mean()))


def _check(res):
    """Invariants that follow from docs/contract.md sections 4-7."""
    assert len(res["scores"]) == res["n_train_sold"]
    for k, f in res["fits"].items():
        for name in BAND_NAMES_GLOBAL:
            ent = [v for (b, _), v in f["map"].items() if b == name]
            assert sum(e[3] for e in ent) == f["n_learned"], (k, name)
            if f["n_learned"]:   # normalised weights sum to n_learned
                assert abs(sum(e[1] + e[2] for e in ent) - f["n_learned"]) < 1e-6, (k, name)
    for fold_id, is_oof, logit, p in res["scores"].values():
        assert 0.0 <= p <= 1.0 and abs(p - 1.0 / (1.0 + math.exp(-logit))) < 1e-12
        assert (fold_id is not None) == is_oof
    assert _sigmoid(-1e6) == 0.0 and _sigmoid(1e6) == 1.0


def _check_band_edges():
    """A few band edge cases of docs/contract.md section 5."""
    t = DSOLD_NARROW
    assert _dsold_band(np.inf, t) == "dSold_overpriced" and _dsold_band(-np.inf, t) == "dSold_cheap"
    assert _dsold_band(-0.15, t) == "dSold_cheap" and _dsold_band(np.nan, t) == "dSold_missing"
    assert _damage_band(1.5, "dmg") == "dmg_0" and _damage_band(3.0, "vdmg") == "vdmg_3p"
    assert _trust_tier(9.7, 50, np.nan, 2024) == "MED" and _trust_tier(9.7, 50, 2021, 2024) == "HIGH"
    assert _accessories_band(0.0) == "acc_lo" and _accessories_band(1.9) == "acc_mid"
    assert _percentile_cont([1.0, 2.0, 3.0, 4.0], 1.0 / 3.0) == 2.0
    assert abs(_percentile_cont([0.0, 1.0, 2.0, 10.0, 20.0], 2.0 / 3.0) - (2.0 + 8.0 * (2.0 / 3.0 * 4 - 2))) < 1e-12


if __name__ == "__main__":
    _check_band_edges()
    data = _random_rows()
    res_oof = fit_reference(data)
    _check(res_oof)
    _summarise("default (OOF, 5 folds)", res_oof)
    res_in = fit_reference(data, oof=False)
    _check(res_in)
    _summarise("oof=False", res_in)
    assert res_in["fits"].keys() == {None}
    assert res_in["fits"][None] == res_oof["fits"][None]
    # one-day data with OOF must fail; with n_folds=1 it works
    one_day = {k: v.copy() for k, v in data.items()}
    one_day["t0"] = np.full(len(data["t0"]), np.datetime64("2024-03-01T12:00:00", "us"))
    one_day["sold_time"] = np.where(np.isnat(data["sold_time"]), data["sold_time"],
                                    np.datetime64("2024-03-20T00:00:00", "us"))
    try:
        fit_reference(one_day, cutoff=np.datetime64("2024-03-25T00:00:00", "us"))
        raise AssertionError("expected ValueError for a single day")
    except ValueError as exc:
        print("single day with OOF ->", exc)
    fit_reference(one_day, cutoff=np.datetime64("2024-03-25T00:00:00", "us"), n_folds=1)
    print("self-check OK")


def score_rows(rows, result):
    """Score every row of ``rows`` with the final mapping of a ``fit_reference`` result (docs/contract.md 6).

    Returns {(generation, listing_id, t0 µs): logit}; only the model's stored
    pieces are used: thresholds, cuts and the final fit's base logit and map.
    """
    c = {name: np.asarray(rows[name], dtype=np.float64) for name in FEATURE_COLUMNS}
    t0 = np.asarray(rows["t0"]).astype("datetime64[us]")
    ic = c["image_count"]
    has_assets = ~np.isnan(ic) & (ic > 0)
    bands = compute_bands(c, t0, has_assets, result["dsold_thresholds"], result["cuts"])
    final = result["fits"][None]
    if final["variant"] is not None:
        add_variant_bands(bands, final["variant"], rows, has_assets, result["cuts"])
    return {(int(g), int(l), int(t.astype(np.int64))): _score_row(final, i, bands, has_assets)
            for i, (g, l, t) in enumerate(zip(rows["generation"], rows["listing_id"], t0))}
