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
    return classed(logit[y], logit[~y])


def classed(pos: np.ndarray, neg: np.ndarray) -> tuple:
    """``merged`` groups of the logits of the positive rows and of the negative rows: each side's
    values sorted and counted (no sort of indices), then the two sides' distinct values joined."""
    pos_at, pos_rows = np.unique(pos, return_counts=True)
    neg_at, neg_rows = np.unique(neg, return_counts=True)
    distinct, at = np.unique(np.concatenate([pos_at, neg_at]), return_inverse=True)
    # float64 counts, as ``merged`` gives (bincount of no values would give int64)
    return (distinct, np.bincount(at[:len(pos_at)], pos_rows, len(distinct)).astype(np.float64),
            np.bincount(at[len(pos_at):], neg_rows, len(distinct)).astype(np.float64))


MERGE_GROUPS = 1 << 20   # groups held at once while runs are merged, all runs together


def merged_runs(runs: list, block: int | None = None):
    """Batches of ``merged`` groups, in ascending logit order, of several runs that are each
    ``merged`` already: the runs' groups with equal logits made one, ``block`` groups of each
    run read at a time (a run: ``len(run)`` and ``run.read(start, stop)`` -> (logit, n_pos, n_neg);
    by default, ``MERGE_GROUPS`` shared out among the runs).

    Every group up to the smallest last logit of the runs' read blocks is in those blocks (a run
    holds each logit once), so each batch is final and above the previous one.
    """
    block = block or max(1024, MERGE_GROUPS // max(len(runs), 1))
    at = [0] * len(runs)
    held = [run.read(0, min(block, len(run))) for run in runs]
    while any(len(h[0]) for h in held):
        if any(np.isnan(h[0][-1:]).any() for h in held):
            raise ValueError("a run of groups holds a NaN logit")  # it would never sort below a limit
        # runs read to their end place no limit
        limit = min((h[0][-1] for h, run, i in zip(held, runs, at) if len(h[0]) and i + len(h[0]) < len(run)),
                    default=np.inf)
        taken = []
        for k, h in enumerate(held):
            cut = int(np.searchsorted(h[0], limit, side="right"))
            taken.append(tuple(a[:cut] for a in h))
            rest = tuple(a[cut:] for a in h)
            if not len(rest[0]):
                at[k] += len(h[0])
                rest = runs[k].read(at[k], min(at[k] + block, len(runs[k])))
            else:
                at[k] += cut
                # keep the unread part only: ``at`` is where the held block starts
            held[k] = rest
        yield taken[0] if len(runs) == 1 else merged_ascending_runs(*(np.concatenate(parts) for parts in zip(*taken)))


def merged_ascending_runs(logit: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray) -> tuple:
    """``merged`` of groups that come as runs each ascending already, one after another: a
    stable sort merges the runs (timsort finds them) rather than sorting every group anew."""
    order = np.argsort(logit, kind="stable")
    ordered = logit[order]
    first = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1]))) if len(ordered) else order
    return (ordered[first], *(np.add.reduceat(n[order], first) if len(first) else n[:0] for n in (n_pos, n_neg)))


class ArrayRun:
    """A run of ``merged`` groups held in memory."""

    def __init__(self, logit, n_pos, n_neg):
        self.arrays = (logit, n_pos, n_neg)

    def __len__(self):
        return len(self.arrays[0])

    def read(self, start: int, stop: int) -> tuple:
        return tuple(a[start:stop] for a in self.arrays)


class ExactSum:
    """The exactly rounded sum of floats given in batches: ``math.fsum`` of all of them, bit for bit,
    however they are batched (log loss over groups read a block at a time).

    Each float is m * 2^e with an integer |m| < 2^53: the sum is kept as one integer of 2^-1126
    (the smallest exponent a float's m * 2^e has), rounded once, by Python's correctly rounded
    integer division, when read.
    """
    SCALE = 1126
    HALF = 26            # m cut in halves of < 2^27, added up exactly as float64 per exponent
    BATCH = 1 << 25      # at most this many per bincount: its float sums of halves stay below 2^53

    def __init__(self):
        self.total = 0
        self.special = set()   # the values that are not finite (NaN, -inf, inf)

    def add(self, x) -> None:
        x = np.asarray(x, dtype=np.float64).ravel()
        finite = np.isfinite(x)
        if not finite.all():
            self.special |= {float(v) for v in x[~finite]}
            x = x[finite]
        for start in range(0, len(x), self.BATCH):
            m, e = np.frexp(x[start:start + self.BATCH])
            if not len(m):
                continue
            m = np.ldexp(m, 53).astype(np.int64)
            e = e.astype(np.int64) - 53 + self.SCALE
            first = int(e.min())   # exponents span at most 2,100 values: counted densely
            high = np.bincount(e - first, (m >> self.HALF).astype(np.float64))
            low = np.bincount(e - first, (m & ((1 << self.HALF) - 1)).astype(np.float64))
            for k in np.flatnonzero((high != 0) | (low != 0)).tolist():
                self.total += (int(high[k]) << (first + k + self.HALF)) + (int(low[k]) << (first + k))

    def value(self) -> float:
        if self.special:
            return math.fsum(self.special)   # what fsum makes of them with any finite values
        return self.total / (1 << self.SCALE)


class SetFigures:
    """AUC (ties counted half), log loss and rows of one scored set, and its rows per score bin,
    from its ``merged`` groups given in batches of ascending logits (every batch above the last).

    The AUC's numerator, sum of n_pos * (negatives below + n_neg / 2), is kept exactly (twice it,
    as an integer): the same figure however the groups are batched, and exact past 2^53.
    """

    def __init__(self, edges: list | None = None, loss: bool = True):
        self.n_pos = self.n_neg = self.auc_twice = 0
        self.loss = ExactSum() if loss else None
        self.edges = edges
        if edges is not None:
            n_bins = len(edges) - 1
            self.bins = {"n_pos": np.zeros(n_bins), "n_neg": np.zeros(n_bins), "sum_p": np.zeros(n_bins)}

    def add(self, logit: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray, p: np.ndarray | None = None,
            logs: tuple | None = None) -> None:
        if not len(logit):
            return
        counted_pos, counted_neg = n_pos.astype(np.int64), n_neg.astype(np.int64)
        below = np.cumsum(counted_neg) - counted_neg + self.n_neg  # negatives with a strictly lower score
        # int64 holds twice the numerator (at most N^2 / 2) for sets of up to 4e9 rows
        self.auc_twice += int((counted_pos * (2 * below + counted_neg)).sum())
        self.n_pos += int(counted_pos.sum())
        self.n_neg += int(counted_neg.sum())
        if self.loss is None and self.edges is None:
            return
        pos, neg = n_pos.astype(np.float64), n_neg.astype(np.float64)
        p = probability(logit) if p is None else p
        if self.loss is not None:
            log_p, log_q = log_terms(p, pos > 0, neg > 0) if logs is None else logs
            self.loss.add(pos * log_p + neg * log_q)
        if self.edges is not None:
            # bin i holds edges[i] <= logit < edges[i + 1], the last bin closed (numpy.histogram's rule)
            at = np.clip(np.searchsorted(self.edges, logit, side="right") - 1, 0, len(self.edges) - 2)
            for name, values in (("n_pos", pos), ("n_neg", neg), ("sum_p", (pos + neg) * p)):
                self.bins[name] = added_in_order(self.bins[name], at, values)

    @property
    def rows(self) -> int:
        return self.n_pos + self.n_neg

    def auc(self) -> float | None:
        """P(score of a positive > score of a negative) + 0.5 P(tie); None without both classes."""
        if self.n_pos == 0 or self.n_neg == 0:
            return None
        return (self.auc_twice / 2) / (float(self.n_pos) * float(self.n_neg))

    def logloss(self) -> float | None:
        """Mean log loss (p clipped to [LOGLOSS_CLIP, 1 - LOGLOSS_CLIP])."""
        return -self.loss.value() / float(self.rows) if self.rows else None

    def binned(self) -> dict:
        return {"n_pos": self.bins["n_pos"].astype(np.int64).tolist(),
                "n_neg": self.bins["n_neg"].astype(np.int64).tolist(), "sum_p": self.bins["sum_p"].tolist()}


def summary(sets: dict, n_bins: int = SCORE_BINS) -> tuple[dict, dict | None]:
    """``metrics`` and ``score_bins`` of scored sets given as runs (``merged_runs``): each set's
    groups are read once, a block at a time, whatever their number."""
    ends = [x for runs in sets.values() for run in runs if len(run)
            for x in (float(run.read(0, 1)[0][0]), float(run.read(len(run) - 1, len(run))[0][0]))]
    edges = bin_edges(min(ends), max(ends), n_bins) if ends else None
    figures, bins = {}, {"edges": edges} if edges else None
    for name, runs in sets.items():
        f = SetFigures(edges)
        for batch in merged_runs(runs):
            f.add(*batch)
        figures.update({f"{name}_auc": f.auc(), f"{name}_logloss": f.logloss(), f"{name}_rows": f.rows})
        if bins is not None:
            bins[name] = f.binned()
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in figures.items()}, bins


def bin_edges(lo: float, hi: float, n_bins: int = SCORE_BINS) -> list[float]:
    """``n_bins`` equal-width bins over [lo, hi] (one of width 1 when lo == hi)."""
    width = (hi - lo) / n_bins or 1.0
    return [lo + i * width for i in range(n_bins)] + [hi if hi > lo else lo + width]


def auc(logit: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray) -> float | None:
    """P(score of a positive > score of a negative) + 0.5 P(tie) over ``merged`` groups; None without both classes."""
    f = SetFigures(loss=False)
    f.add(logit, n_pos, n_neg)
    return f.auc()


def logloss(logit: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray, p: np.ndarray | None = None,
            logs: tuple | None = None) -> float | None:
    """Mean log loss over ``merged`` groups: exactly summed, the same bits on every path.
    ``p``: ``probability(logit)``, and ``logs``: ``log_terms(p)``, when the caller has them already."""
    f = SetFigures()
    f.add(logit, n_pos, n_neg, p, logs)
    return f.logloss()


def added_in_order(bins: np.ndarray, at: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``bins`` with each of ``values`` added to its bin ``at`` one after another, as ``np.add.at``
    adds them: one bincount that starts each bin from its value (numpy's bincount adds in input
    order; 6 to 10 times faster than ``np.add.at`` on numpy 1.24). The same bits but for a -0.0
    bin, which becomes 0.0: bins here start at 0.0 and take counts and probabilities."""
    n = len(bins)
    return np.bincount(np.concatenate([np.arange(n), at]), np.concatenate([bins, values]), n)


def log_terms(p: np.ndarray, pos: np.ndarray | None = None,
              neg: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """log(p) and log(1 - p) of each probability clipped to [LOGLOSS_CLIP, 1 - LOGLOSS_CLIP], with the
    C library's log and log1p (``woe.libm``): a positive's and a negative's log loss terms. Given
    boolean masks ``pos`` and ``neg``, only where they hold, 0 elsewhere: there the term is
    multiplied by a count of 0, and a group's other term, never 0 for a clipped p, makes the same
    sum. That needs every group to hold a row, as every caller's groups do."""
    clipped = np.clip(p, LOGLOSS_CLIP, 1.0 - LOGLOSS_CLIP)
    return _libm_where(math.log, clipped, pos), _libm_where(math.log1p, -clipped, neg)


def _libm_where(fn, x: np.ndarray, where: np.ndarray | None) -> np.ndarray:
    if where is None:
        return woe.libm(fn, x)
    out = np.zeros(x.shape)
    out[where] = woe.libm(fn, x[where])
    return out


def probability(logit) -> np.ndarray:
    """1 / (1 + e^-logit), with the C library's exp (``woe.libm``)."""
    return 1.0 / (1.0 + woe.libm(woe.exp, -np.asarray(logit, dtype=np.float64)))


def score_bins(groups: dict, n_bins: int = SCORE_BINS) -> dict | None:
    """Rows per equal-width logit bin of each scored set (``merged`` groups), on one shared range.

    ``{"edges": [n_bins + 1 logits], set: {"n_pos", "n_neg", "sum_p"}}``: the
    calibration (mean p against the observed rate per bin) and the score
    distribution of a model, small enough to keep with it. None without rows.
    """
    return summary({name: [ArrayRun(*g)] for name, g in groups.items()}, n_bins)[1]


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
    return summary({name: [ArrayRun(*g)] for name, g in groups.items()})[0]


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
