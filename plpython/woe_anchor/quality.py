"""Model quality from grouped scores: AUC and log loss, information value, fold stability.

Each scored set comes as groups of (logit, positive rows, negative rows);
``merged`` makes equal logits one group in ascending order, and AUC (ties
counted half), log loss and the score bins follow exactly from those counts.
"""
from __future__ import annotations

import math

import numpy as np

from . import woe

LOGLOSS_CLIP = 1e-15
SCORE_BINS = 40


def merged(logit: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray) -> tuple:
    """Groups with equal logits made one, in ascending logit order (ties must meet in ``auc``)."""
    distinct, at = np.unique(logit, return_inverse=True)
    return (distinct, np.bincount(at, n_pos, len(distinct)), np.bincount(at, n_neg, len(distinct)))


def grouped(logit: np.ndarray, y: np.ndarray) -> tuple:
    """``merged`` groups of rows given one by one: their logits and boolean labels."""
    return merged(logit, y.astype(np.float64), (~y).astype(np.float64))


def auc(logit: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray) -> float | None:
    """P(score of a positive > score of a negative) + 0.5 P(tie) over ``merged`` groups; None without both classes."""
    pos, neg = n_pos.astype(np.float64), n_neg.astype(np.float64)
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos == 0 or total_neg == 0:
        return None
    below = np.cumsum(neg) - neg  # negatives with a strictly lower score
    return float((pos * (below + 0.5 * neg)).sum() / (total_pos * total_neg))


def logloss(logit: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray, p: np.ndarray | None = None) -> float | None:
    """Mean log loss over ``merged`` groups: summed in their logit order, the same bits on every path.
    ``p``: ``probability(logit)``, when the caller has it already."""
    n = n_pos.sum() + n_neg.sum()
    if n == 0:
        return None
    p = np.clip(probability(logit) if p is None else p, LOGLOSS_CLIP, 1.0 - LOGLOSS_CLIP)
    return -woe.total(n_pos * woe.libm(math.log, p) + n_neg * woe.libm(math.log1p, -p)) / float(n)


def probability(logit) -> np.ndarray:
    """1 / (1 + e^-logit), with the C library's exp (``woe.libm``)."""
    return 1.0 / (1.0 + woe.libm(woe.exp, -np.asarray(logit, dtype=np.float64)))


def score_bins(groups: dict, n_bins: int = SCORE_BINS) -> dict | None:
    """Rows per equal-width logit bin of each scored set (``merged`` groups), on one shared range.

    ``{"edges": [n_bins + 1 logits], set: {"n_pos", "n_neg", "sum_p"}}``: the
    calibration (mean p against the observed rate per bin) and the score
    distribution of a model, small enough to keep with it. None without rows.
    """
    every = np.concatenate([g[0] for g in groups.values()])
    if every.size == 0:
        return None
    lo, hi = float(every.min()), float(every.max())
    width = (hi - lo) / n_bins or 1.0
    out = {"edges": [lo + i * width for i in range(n_bins)] + [hi if hi > lo else lo + width]}
    for name, (logit, n_pos, n_neg) in groups.items():
        # bin i holds edges[i] <= logit < edges[i + 1], the last bin closed (numpy.histogram's rule)
        at = np.clip(np.searchsorted(out["edges"], logit, side="right") - 1, 0, n_bins - 1)
        p = probability(logit)
        out[name] = {"n_pos": np.bincount(at, n_pos, n_bins).astype(np.int64).tolist(),
                     "n_neg": np.bincount(at, n_neg, n_bins).astype(np.int64).tolist(),
                     "sum_p": np.bincount(at, (n_pos + n_neg) * p, n_bins).tolist()}
    return out


def information_value(fit: woe.Fit, band: str, total_pos: float, total_neg: float) -> float:
    """IV = sum over seen values of (S+/T+ - S-/T-) * woe, on the fit's own totals."""
    seen = fit.n_rows[band] > 0
    if total_pos <= 0 or total_neg <= 0:
        return 0.0
    share = fit.sum_pos[band] / total_pos - fit.sum_neg[band] / total_neg
    return woe.total((share * fit.woe[band])[seen])


def fold_stability(final: woe.Fit, folds: dict, band: str) -> dict:
    """How much a band's WOE moves across the fold fits, weighted by the final row counts."""
    if not folds:
        return {"woe_fold_std": None, "woe_fold_max_abs_dev": None}
    per_fold = np.array([f.woe[band] for f in folds.values()])
    weights = final.n_rows[band].astype(np.float64)
    if weights.sum() == 0:
        return {"woe_fold_std": 0.0, "woe_fold_max_abs_dev": 0.0}
    mean = woe.column_totals(per_fold) / len(per_fold)
    spread = np.sqrt(woe.column_totals((per_fold - mean) ** 2) / len(per_fold))
    std = woe.total(spread * weights) / woe.total(weights)
    dev = float(np.abs(per_fold - final.woe[band])[:, weights > 0].max())
    return {"woe_fold_std": std, "woe_fold_max_abs_dev": dev}


def band_report(final: woe.Fit, folds: dict, band_subsets: dict) -> dict:
    """Per band: information value and fold stability (docs/contract.md band names)."""
    out = {}
    for band, subset in band_subsets.items():
        pos = sum(final.sum_pos[band])
        neg = sum(final.sum_neg[band])
        out[band] = {"iv": information_value(final, band, pos, neg), **fold_stability(final, folds, band)}
    return out


def metrics(groups: dict) -> dict:
    """AUC and log loss per scored set ('oof', 'insample', 'eval') from its ``merged`` groups."""
    out = {}
    for name, (logit, n_pos, n_neg) in groups.items():
        out[f"{name}_auc"] = auc(logit, n_pos, n_neg)
        out[f"{name}_logloss"] = logloss(logit, n_pos, n_neg)
        out[f"{name}_rows"] = int(n_pos.sum() + n_neg.sum())
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, ties sharing their mean rank."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def paired_auc(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """AUC of scores a and b of the same rows, and the standard error of AUC(a) - AUC(b) by DeLong,
    DeLong and Clarke-Pearson's (1988) structural components, computed from midranks."""
    y = np.asarray(y, dtype=bool)
    m, n = int(y.sum()), int((~y).sum())
    components = []
    for s in (np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)):
        x, z = s[y], s[~y]
        every = midranks(np.concatenate([x, z]))
        v10 = (every[:m] - midranks(x)) / n          # per positive: share of negatives below it (ties half)
        v01 = 1.0 - (every[m:] - midranks(z)) / m    # per negative: share of positives above it
        components.append((float(v10.mean()), v10, v01))
    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = components
    s10, s01 = np.cov(np.vstack([v10a, v10b])), np.cov(np.vstack([v01a, v01b]))
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return auc_a, auc_b, math.sqrt(max(variance, 0.0))


def row_logloss(y: np.ndarray, logit: np.ndarray) -> np.ndarray:
    """Each row's log loss of the probability 1 / (1 + e^-logit), clipped as the recorded log loss is."""
    p = np.clip(probability(logit), LOGLOSS_CLIP, 1 - LOGLOSS_CLIP)
    return -np.where(np.asarray(y, dtype=bool), woe.libm(math.log, p), woe.libm(math.log1p, -p))


def two_sided_p(z: float) -> float:
    """P(|N(0, 1)| > |z|)."""
    return math.erfc(abs(z) / math.sqrt(2.0))
