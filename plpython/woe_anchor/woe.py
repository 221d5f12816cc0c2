"""WOE math on aggregated sums (docs/contract.md sections 4, 6, 7): numpy in, numpy out.

The database returns, per fold (a block of UTC days), the raw time-decay
weight sums of every band value. Every fit, the final one and each fold's
training complement, is a sum over a set of folds, so all K+1 fits come from
that one small table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .catalog import P_CLAMP


@dataclass
class FoldSums:
    """Sums of learned rows per fold; arrays have one row per fold 0..K-1 (one row without OOF)."""
    n_rows: np.ndarray          # all TRAIN SOLD rows of the fold (learned or not)
    n_learned: np.ndarray       # learned rows
    pos: np.ndarray             # sum of w_raw*y over learned rows
    neg: np.ndarray             # sum of w_raw*(1-y) over learned rows
    subset_pos: dict = field(default_factory=dict)   # subset name -> sum w_raw*y   (per fold)
    subset_neg: dict = field(default_factory=dict)   # subset name -> sum w_raw*(1-y)
    band_pos: dict = field(default_factory=dict)     # band name -> (folds, labels) sum w_raw*y
    band_neg: dict = field(default_factory=dict)     # band name -> (folds, labels) sum w_raw*(1-y)
    band_n: dict = field(default_factory=dict)       # band name -> (folds, labels) learned row count


@dataclass
class Fit:
    """One fitted mapping: base rate and per-band WOE over the band's labels."""
    fold_id: int | None
    n_learned: int
    sum_w: float     # raw time-decay weights of the learned rows, before normalising
    base_rate: float
    base_logit: float
    woe: dict        # band name -> float array over labels (0 where unseen)
    sum_pos: dict    # band name -> weighted S+ per label (normalised weights, no eps)
    sum_neg: dict
    n_rows: dict     # band name -> learned row count per label (0 = unseen)


def fold_of_days(n_days: int, n_folds: int) -> np.ndarray:
    """Day i of D sorted days goes to fold floor(i * K / D) (requirements 4.2)."""
    i = np.arange(n_days, dtype=np.int64)
    return (i * n_folds) // n_days


def base_logit_of(p: float) -> float:
    p = min(max(p, P_CLAMP), 1.0 - P_CLAMP)
    return math.log(p / (1.0 - p))


def exp(x: float) -> float:
    """e^x, inf past the float8 range (math.exp raises there)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def libm(fn, x) -> np.ndarray:
    """``fn`` (math.log, math.log1p, or ``exp``) of each element, computed by the C library.

    numpy's own vectorised log and exp differ between numpy versions in the last
    bit (1.24 and 2.2 gave different WOE for 67 of one model's 240 map values),
    and a model must not depend on the numpy of the server that fitted it; glibc's
    log, exp and pow give the same bits in every release this runs on.
    """
    a = np.asarray(x, dtype=np.float64)
    if fn is exp:
        # math.exp itself where it cannot overflow (NaN included): no Python frame per value
        big = a > EXP_FINITE
        if big.any():
            out = np.empty(a.shape)
            out[~big] = libm(math.exp, a[~big])
            out[big] = [exp(v) for v in a[big].tolist()]
            return out
        fn = math.exp
    return np.fromiter(map(fn, a.ravel().tolist()), np.float64, a.size).reshape(a.shape)


EXP_FINITE = 709.0  # math.exp of anything up to this is finite (it overflows past 709.78)


def total(x) -> float:
    """The exactly rounded sum (math.fsum): numpy's summation order, and so the last bit of its
    sums, changes between numpy versions, and a stored figure must not."""
    return math.fsum(np.asarray(x, dtype=np.float64).ravel().tolist())


def column_totals(a) -> np.ndarray:
    """``total`` of each column of a 2-D array (per label, over the folds)."""
    a = np.asarray(a, dtype=np.float64)
    return np.array([total(column) for column in a.T], dtype=np.float64).reshape(a.shape[1:])


def _woe(s_pos, s_neg, t_pos, t_neg, eps):
    if t_pos <= 0 or t_neg <= 0:
        return np.zeros_like(s_pos)
    return libm(math.log, ((s_pos + eps) / t_pos) / ((s_neg + eps) / t_neg))


def fold_rare_values(sp: np.ndarray, sn: np.ndarray, cnt: np.ndarray, min_weight: float) -> np.ndarray:
    """A category band's values rarer than ``min_weight`` in this fit join OTHER, in place.

    Labels are (values..., OTHER, NULL_VALUE); a value's weighted count is its
    normalised weight sum, and an unseen value counts as rare whatever the floor.
    Returns the mask of folded values.
    """
    other = len(sp) - 2
    rare = np.zeros(len(sp), dtype=bool)
    rare[:other] = ((sp[:other] + sn[:other]) < min_weight) | (cnt[:other] == 0)
    for a in (sp, sn, cnt):
        a[other] += a[rare].sum()
        a[rare] = 0
    return rare


def fit_folds(sums: FoldSums, mask: np.ndarray, band_subsets: dict, eps: float,
              fold_id: int | None, floors: dict | None = None) -> Fit:
    """Fit section 6 on the learned rows of the folds in ``mask``.

    ``band_subsets`` maps each band to its row set: None for all learned rows,
    else a subset name (e.g. 'has_assets') whose totals come from ``subset_pos``.
    Weights are divided by their mean over the fit's learned rows (section 4).
    ``floors`` maps category bands to their min_weight: their rare values are
    stored nowhere and score as OTHER.
    """
    floors = floors or {}
    n = int(sums.n_learned[mask].sum())
    sw = total(sums.pos[mask]) + total(sums.neg[mask])
    # an empty or fully underflowed fit has zero weights: T+ = T- = 0, every woe 0
    scale = n / sw if n > 0 and sw > 0 else 0.0

    def totals(subset):
        pos = sums.pos if subset is None else sums.subset_pos[subset]
        neg = sums.neg if subset is None else sums.subset_neg[subset]
        return total(pos[mask]) * scale, total(neg[mask]) * scale

    t_pos, t_neg = totals(None)
    t_all = t_pos + t_neg
    base_rate = t_pos / t_all if t_all > 0 else 0.5
    woe, sp, sn, cnt = {}, {}, {}, {}
    for band, subset in band_subsets.items():
        b_pos, b_neg = totals(subset)
        sp[band] = column_totals(sums.band_pos[band][mask]) * scale
        sn[band] = column_totals(sums.band_neg[band][mask]) * scale
        cnt[band] = sums.band_n[band][mask].sum(axis=0)
        rare = fold_rare_values(sp[band], sn[band], cnt[band], floors[band]) if band in floors else None
        woe[band] = np.where(cnt[band] > 0, _woe(sp[band], sn[band], b_pos, b_neg, eps), 0.0)
        if rare is not None:
            woe[band][rare] = woe[band][-2]
    return Fit(fold_id, n, sw, base_rate, base_logit_of(base_rate), woe, sp, sn, cnt)


def fit_all(sums: FoldSums, band_subsets: dict, eps: float, fold_ids: list | None, floors: dict | None = None):
    """The final fit and, with OOF on, one fit per fold that has rows.

    Rows of ``sums`` are blocks: fold_ids[i] is block i's fold id (None: OOF off,
    one block). Returns (final, folds) where folds is {fold_id: Fit}.
    """
    n_blocks = len(sums.n_rows)
    final = fit_folds(sums, np.ones(n_blocks, dtype=bool), band_subsets, eps, None, floors)
    if fold_ids is None:
        return final, {}
    blocks = np.arange(n_blocks)
    folds = {int(f): fit_folds(sums, blocks != k, band_subsets, eps, int(f), floors)
             for k, f in enumerate(fold_ids)}
    return final, folds
