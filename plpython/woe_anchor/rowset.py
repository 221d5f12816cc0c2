"""The fit's per-row read, decoded: the statistics, every fold's exact sums, the quality sets.

``Statements.rows`` returns every TRAIN SOLD and eval-window row as (label
flags, combination of every pack, t0 day, label moment, the inputs of the
learned thresholds). From those rows numpy takes

* the row counts, the weight reference and the learned thresholds' inputs,
  as ``Statements.stats`` would give them (``statistics``); then the bands
  with learned thresholds (``band_deferred``) and the exact weights
  (``weigh``), with PostgreSQL's own float steps;
* the per-pack sums a sharded fit gets from ``Statements.sums`` on its
  shards (``pack_sums``), from which ``fold_sums`` builds every band's
  per-fold statistics, with exact weight sums on both paths;
* in the same pass as the sums, the groups of rows that share a logit in
  each scored set (``quality_groups``), whose OOF, in-sample and eval logits
  ``quality_sets`` computes once the mapping is known: the quality figures
  need no second read.
"""
from __future__ import annotations

import base64
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from . import bands as b
from . import packs as pk
from . import quality, woe
from .passes import DAY_BITS, DAY_OFFSET, FIXED_POINT_BITS, INFINITE, NULL_KEY, SUBSET, UNDERFLOW_EXPONENT, VARINT_BYTES

TRAIN, Y, LEARNED = 4, 2, 1   # the flag bits of a row
PIECE = 21                     # weight pieces of 21 bits: float64 sums of them stay exact
# comparisons of a test, NaN (NULL) on either side satisfying none, as in SQL
_COMPARE = {"<": np.less, "<=": np.less_equal, "=": np.equal, ">=": np.greater_equal, ">": np.greater}


def int8_values(data: bytes | None) -> np.ndarray:
    """Concatenated int8send values (a ``rows`` column) as int64, NULL (no rows) as empty."""
    return _values(data, ">i8").astype(np.int64)


def float8_values(data: bytes | None) -> np.ndarray:
    """Concatenated float8send values as float64, bit for bit."""
    return _values(data, ">f8").astype(np.float64)


def _values(data: bytes | None, kind: str) -> np.ndarray:
    if data is not None and len(data) % 8:
        raise ValueError(f"a column of 8-byte values is {len(data)} bytes long")
    return np.frombuffer(data or b"", dtype=kind)


@dataclass(frozen=True)
class Shipment:
    """What the read carries besides the codes SQL computes, for one schema."""
    deferred: frozenset      # indexes of the bands with learned thresholds: banded here
    inputs: tuple            # the inputs their tests and the learned rules read, as float8
    subsets: tuple           # the subsets those bands and rules use
    read_in: tuple           # per input, the subsets it is read in (None: every row; NaN elsewhere)

    def value(self, rows: "RowSet", inp) -> np.ndarray:
        return rows.x[self.inputs.index(inp)]

    def in_subset(self, rows: "RowSet", name: str) -> np.ndarray:
        return (rows.marks & (SUBSET << self.subsets.index(name))) > 0


def shipment(schema: b.BandSchema) -> Shipment:
    """The bands whose rules compare with learned thresholds, and every value they and the learned rules read."""
    deferred = frozenset(i for i, band in enumerate(schema.bands)
                         if any(isinstance(t.operand, b.Learned) for r in band.rules for t in r.tests))
    read_in: dict = {}   # input -> the subsets it is read in (None among them: every row)
    subsets = []

    def reads(x, subset) -> None:
        if x is not None:
            read_in.setdefault(x, set()).add(subset)

    for rule in schema.learning:
        reads(rule.input, getattr(rule, "subset", None))
        subsets.append(getattr(rule, "subset", None))
    for i in sorted(deferred):
        band = schema.bands[i]
        for t in (t for r in band.rules for t in r.tests):
            reads(t.input, band.subset)
            if not isinstance(t.operand, (int, float, b.Learned)):
                reads(t.operand, band.subset)
        reads(band.null_input, band.subset)
        subsets.append(band.subset)
    return Shipment(frozenset(deferred), tuple(read_in),
                    tuple(dict.fromkeys(x for x in subsets if x is not None)),
                    tuple(None if None in where else tuple(sorted(where)) for where in read_in.values()))


@dataclass
class RowSet:
    flags: np.ndarray        # TRAIN | Y | LEARNED bits
    day: np.ndarray          # epoch day of t0
    combos: list             # per pack: the combination of its bands' codes
    label_ts: np.ndarray     # docs/contract.md 4's label moment, epoch seconds
    marks: np.ndarray        # NULL_KEY | INFINITE | SUBSET << k bits
    x: list = field(default_factory=list)  # the shipment's inputs, NaN for NULL
    w: np.ndarray | None = None       # weight in integers of 2^-61 (0 for rows not learned from), once weighed
    block: np.ndarray | None = None   # fit index of the row's fold (0 for eval rows), once folds are known

    @property
    def train(self) -> np.ndarray:
        return (self.flags & TRAIN) > 0

    @property
    def learned(self) -> np.ndarray:
        """TRAIN SOLD rows learned from."""
        return (self.flags & (TRAIN | LEARNED)) == TRAIN | LEARNED

    def train_days(self) -> np.ndarray:
        """The distinct t0 days of TRAIN SOLD, ascending."""
        return distinct_ints(self.day[self.train])

    def put_in_blocks(self, days: np.ndarray, block_of_day: np.ndarray) -> None:
        """Each TRAIN SOLD row's block from its day (``days``: ``train_days()``); eval rows are block 0."""
        train = self.train
        self.block = np.zeros(len(self.flags), dtype=np.int64)
        if not len(days):
            return
        day, block_of_day = self.day[train], np.asarray(block_of_day, dtype=np.int64)
        lo, span = int(days[0]), int(days[-1]) - int(days[0]) + 1
        if span <= _dense_limit(len(day)):
            lookup = np.zeros(span, dtype=np.int64)
            lookup[days - lo] = block_of_day
            self.block[train] = lookup[day - lo]
        else:
            self.block[train] = block_of_day[np.searchsorted(days, day)]

    def arrays(self) -> list[np.ndarray]:
        """The rows as read (before banding, weighing and blocks), for ``from_arrays``."""
        return [self.flags, self.marks, self.day, self.label_ts, *self.combos, *self.x]

    @classmethod
    def from_arrays(cls, arrays: list[np.ndarray], n_packs: int) -> "RowSet":
        flags, marks, day, label_ts, *rest = arrays
        return cls(flags=flags, marks=marks, day=day, label_ts=label_ts, combos=list(rest[:n_packs]),
                   x=list(rest[n_packs:]))

    def weigh(self, ref_epoch: float, half_life_days: float | None) -> None:
        """``Statements.weight`` of every learned row, by the same float steps and the same libm pow."""
        learned = self.learned
        if half_life_days is None or half_life_days <= 0:
            self.w = np.where(learned, 1 << FIXED_POINT_BITS, 0).astype(np.int64)
            return
        age = np.maximum(0.0, ref_epoch - self.label_ts[learned]) / 86400.0 / float(half_life_days)
        exponent = np.minimum(age, float(UNDERFLOW_EXPONENT - 1)) - float(FIXED_POINT_BITS)
        # math.pow is the C library's pow, as PostgreSQL's float8 ^ is: numpy's may differ in the last bit
        power = np.fromiter(map(math.pow, itertools.repeat(0.5), exponent.tolist()), np.float64, len(exponent))
        self.w = np.zeros(len(learned), dtype=np.int64)
        self.w[learned] = np.rint(power).astype(np.int64)

    def band_deferred(self, schema: b.BandSchema, plan: list[pk.Pack], ship: Shipment, learned: dict) -> None:
        """Add each deferred band's code (SQL put 0 there) into its pack's combination."""
        for i in ship.deferred:
            band = schema.bands[i]
            j = next(j for j, pack in enumerate(plan) if i in pack.bands)
            at = plan[j].bands.index(i)
            self.combos[j] = self.combos[j] + band_codes(band, ship, self, learned, plan[j].radix[at] - 1) * plan[j].mult[at]


def chunk_statistics(r: RowSet, schema: b.BandSchema, ship: Shipment) -> tuple[dict, dict]:
    """One chunk's part of ``statistics``: the counts, extremes and sums that add up across chunks
    (``add_statistics``), and per quantile rule the values it takes its percentiles from."""
    train, learned = r.train, r.learned
    part = {"n_train_sold": int(train.sum()), "n_learned": int(learned.sum()),
            "n_null_keys": int(((r.marks & NULL_KEY) > 0)[train].sum()),
            "n_infinite": int(((r.marks & INFINITE) > 0)[train].sum()),
            "ref_epoch": float(r.label_ts[learned].max()) if learned.any() else None}
    values = {}
    for i, rule in enumerate(schema.learning):
        x = ship.value(r, rule.input)
        if isinstance(rule, b.ScaleRule):
            x = np.abs(x[learned & ~np.isnan(x)])
            below = x < rule.below
            part.update({f"n_{i}": len(x), f"below_{i}": int(below.sum()),
                         f"under_{i}": float(x[below].max()) if below.any() else None,
                         f"over_{i}": float(x[~below].min()) if (~below).any() else None})
        else:
            values[i] = x[learned & ~np.isnan(x) & (ship.in_subset(r, rule.subset) if rule.subset else True)]
            part[f"n_{i}"] = len(values[i])
    return part, values


def add_statistics(total: dict | None, part: dict) -> dict:
    """Two chunks' ``chunk_statistics`` parts as one: counts added, extremes kept (None: no value)."""
    if total is None:
        return dict(part)
    out = {}
    for k, v in part.items():
        extreme = max if k == "ref_epoch" or k.startswith("under_") else min if k.startswith("over_") else None
        if extreme is None:
            out[k] = total[k] + v
        else:
            out[k] = extreme((x for x in (total[k], v) if x is not None), default=None)
    return out


def statistics(total: dict, values, schema: b.BandSchema) -> dict:
    """What ``Statements.stats`` returns (its ``days`` aside): the chunks' ``add_statistics`` and the
    percentiles of each quantile rule, from ``values(i)`` -> its value arrays of every chunk (an
    iterable that can be read more than once)."""
    out = dict(total)
    for i, rule in enumerate(schema.learning):
        if isinstance(rule, b.ScaleRule):
            continue
        n, probs = out[f"n_{i}"], (*rule.probs, 0.5)
        ranks = sorted({k for p in probs for k in percentile_position(n, p)[1:]}) if n else []
        at = order_statistics(values(i), ranks)
        out[f"q_{i}"] = [percentile_cont(n, p, at.__getitem__) for p in probs] if n else None
    return out


_SIGN = np.uint64(1 << 63)


def order_statistics(batches, ranks: list[int]) -> dict[int, float]:
    """The values at 0-based ``ranks`` of the sorted union of float arrays (no NaN), exactly, in
    memory bounded by the largest array: each of four reads of ``batches`` fixes 16 more bits of
    an integer key with the floats' order (a radix select)."""
    state = {k: (0, k) for k in ranks}   # rank -> (the key's leading bits so far, rank among keys with them)
    for level in range(4 if ranks else 0):
        shift = 48 - 16 * level
        counts = {p: np.zeros(1 << 16, dtype=np.int64) for p, _ in state.values()}
        for x in batches:
            key = ordered_key(x)
            for p, c in counts.items():
                mine = key if level == 0 else key[(key >> np.uint64(shift + 16)) == np.uint64(p)]
                c += np.bincount(((mine >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.int64), minlength=1 << 16)
        for k, (p, r) in state.items():
            below = np.cumsum(counts[p])
            digit = int(np.searchsorted(below, r, side="right"))
            state[k] = ((p << 16) | digit, r - (int(below[digit - 1]) if digit else 0))
    return {k: float(key_value(p)) for k, (p, _) in state.items()}


def ordered_key(x: np.ndarray) -> np.ndarray:
    """uint64 keys in the order of the floats (negatives' bits inverted, positives' sign bit set)."""
    bits = np.ascontiguousarray(x, dtype=np.float64).view(np.uint64)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN)


def key_value(key: int) -> float:
    bits = key & ~(1 << 63) if key >> 63 else ~key & ((1 << 64) - 1)
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def band_codes(band: b.Band, ship: Shipment, rows: RowSet, learned: dict, null_slot: int) -> np.ndarray:
    """A band's code per row as ``Compiler.band``'s CASE gives it: first matching rule, NULL never matches."""
    labels = band.labels

    def operand(o) -> np.ndarray | float:
        if isinstance(o, b.Learned):
            return learned[o.name]
        return float(o) if isinstance(o, (int, float)) else ship.value(rows, o)

    code = np.full(len(rows.flags), labels.index(band.default), dtype=np.int64)
    for rule in reversed(band.rules):
        holds = np.ones(len(code), dtype=bool)
        for t in rule.tests:
            holds &= _COMPARE[t.op](ship.value(rows, t.input), operand(t.operand))
        code[holds] = labels.index(rule.label)
    if band.null_label:
        code[np.isnan(ship.value(rows, band.null_input))] = labels.index(band.null_label)
    if band.subset:
        code[~ship.in_subset(rows, band.subset)] = null_slot
    return code


def percentile_position(n: int, p: float) -> tuple[float, int, int]:
    """Where percentile_cont(p) falls among n sorted values: its position and the ranks either side."""
    pos = p * (n - 1)
    return pos, math.floor(pos), math.ceil(pos)


def percentile_cont(n: int, p: float, at) -> float:
    """PostgreSQL's percentile_cont over n sorted values, ``at(rank)`` giving each: the same float steps."""
    pos, first, second = percentile_position(n, p)
    lo = at(first)
    if first == second:
        return float(lo)
    return float(lo + (pos - first) * (at(second) - lo))


def word_layout(plan: list[pk.Pack], ship: Shipment) -> list[pk.Radix]:
    """The int8 words of a row: flags, marks, day, then each pack's combination."""
    return pk.words([8, SUBSET << len(ship.subsets), 1 << DAY_BITS] + [p.size for p in plan])


def bytes_per_row(words: list[pk.Radix], ship: Shipment) -> int:
    """What a row read takes in memory at the peak: its values as bytes (Python's copy of what the
    server sent), a word's codes decoded as int64, and the ``RowSet`` they become."""
    kept = 1 + 8 + 4 + 8 + 8 * len(ship.inputs) + 4 * (sum(len(w.radix) for w in words) - 3)
    return 8 * (len(words) + 1 + len(ship.inputs)) + 8 * sum(len(w.radix) for w in words) + kept


def read(row: dict, plan: list[pk.Pack], words: list[pk.Radix], ship: Shipment) -> RowSet:
    """The rows of ``Statements.rows``, decoded into small integer types."""
    names = [f"w{i}" for i in range(len(words))] + ["label_ts"] + [f"x{k}" for k in range(len(ship.inputs))]
    if len({len(row[name] or b"") for name in names}) > 1:
        raise ValueError("the columns of the per-row read differ in length: a value was NULL")
    flags, marks, day, *combos = pk.decoded_words(words, [int8_values(row[f"w{i}"]) for i in range(len(words))])
    return RowSet(flags=flags.astype(np.uint8), marks=marks,
                  day=(day - DAY_OFFSET).astype(np.int32), combos=[c.astype(np.int32) for c in combos],
                  label_ts=float8_values(row["label_ts"]),
                  x=[float8_values(row[f"x{k}"]) for k in range(len(ship.inputs))])


def weight_pieces(w: np.ndarray) -> tuple:
    """Weights (< 2^62) cut into three 21-bit pieces as float64: sums of pieces stay exact below 2^53."""
    mask = (1 << PIECE) - 1
    return tuple(x.astype(np.float64) for x in (w >> 2 * PIECE, (w >> PIECE) & mask, w & mask))


class PackSums:
    """What ``Statements.sums`` returns (per pack and key: rows, exact sum of w), added up from the
    rows of one or more chunks: the same figures however the rows are cut."""

    def __init__(self, plan: list[pk.Pack], n_blocks: int):
        self.plan = plan
        # per pack, dense over (block * size + combination) * 4 + 2y + learned: rows and w's pieces
        self.n = [np.zeros(n_blocks * pack.size * 4, dtype=np.int64) for pack in plan]
        self.pieces = [np.zeros((3, n_blocks * pack.size * 4)) for pack in plan]

    def add(self, r: RowSet) -> None:
        train = r.train
        learned = r.learned[train]
        # combination and flags 0 for rows not learned from
        flags = np.where(learned, (r.flags[train] & Y) + 1, 0)
        block, pieces = r.block[train], weight_pieces(r.w[train])
        for j, pack in enumerate(self.plan):
            key = (block * pack.size + np.where(learned, r.combos[j][train], 0)) * 4 + flags
            self.n[j] += np.bincount(key, minlength=len(self.n[j]))
            for k, x in enumerate(pieces):
                # pieces of < 2^21 added over < 2^32 rows: exact in float64
                self.pieces[j][k] += np.bincount(key, x, len(self.n[j]))

    def result(self) -> dict:
        out = {"grouping": [], "key": [], "n": [], "sw": []}
        every = (1 << len(self.plan)) - 1
        for j, (n, (high, mid, low)) in enumerate(zip(self.n, self.pieces)):
            cells = np.flatnonzero(n)
            out["grouping"] += [every ^ (1 << (len(self.plan) - 1 - j))] * len(cells)
            out["key"] += cells.tolist()
            out["n"] += n[cells].tolist()
            out["sw"] += [(int(x) << 2 * PIECE) + (int(y) << PIECE) + int(z)
                          for x, y, z in zip(high[cells], mid[cells], low[cells])]
        return out


def fold_sums(row: dict, schema, plan: list[pk.Pack], n_blocks: int) -> woe.FoldSums:
    """Decode per-pack sums (``pack_sums``, or a sharded fit's ``Statements.sums``) into per-fold arrays.

    A key is (fold * size + combination) * 4 + 2y + learned; ``sw`` holds exact
    integers of 2^-61. Fold totals come from the first pack (every row is in
    exactly one of its combinations); a subset's totals from one of its bands,
    whose NULL slot is the rows outside. Weights are added up exactly and
    rounded once per cell, so the arrays do not depend on how rows were grouped.
    """
    n_packs = len(plan)
    grouping = np.asarray(row["grouping"], dtype=np.int64)
    key = np.asarray(row["key"], dtype=np.int64)
    n = np.asarray(row["n"], dtype=np.float64)
    sw = np.array([int(v) for v in row["sw"]], dtype=object)
    # GROUPING() has a 0 bit for the pack the row groups by, leftmost pack first
    pack_of = n_packs - 1 - np.log2(((1 << n_packs) - 1) ^ grouping).astype(np.int64)
    key, flags = np.divmod(key, 4)
    learned, y = (flags & 1).astype(bool), (flags & 2).astype(bool)
    pos, neg = np.where(learned & y, sw, 0), np.where(learned & ~y, sw, 0)
    n_learned = np.where(learned, n, 0.0)

    def counted(shape, index, values):
        out = np.zeros(shape)
        np.add.at(out, index, values)
        return out

    def weighed(shape, index, values):
        out = np.zeros(shape, dtype=object)
        np.add.at(out, index, values)
        return np.array([float(v) for v in out.ravel()]).reshape(shape) / float(1 << FIXED_POINT_BITS)

    first = pack_of == 0
    fold = key[first] // plan[0].size
    sums = woe.FoldSums(n_rows=counted(n_blocks, fold, n[first]),
                        n_learned=counted(n_blocks, fold, n_learned[first]),
                        pos=weighed(n_blocks, fold, pos[first]),
                        neg=weighed(n_blocks, fold, neg[first]))
    for j, pack in enumerate(plan):
        mine = pack_of == j
        fold, combo = np.divmod(key[mine], pack.size)
        for i, codes in zip(pack.bands, pack.codes(combo)):
            band = schema.bands[i]
            shape = (n_blocks, len(band.labels) + 1)  # + the NULL slot, dropped below
            sums.band_pos[band.name] = weighed(shape, (fold, codes), pos[mine])[:, :-1]
            sums.band_neg[band.name] = weighed(shape, (fold, codes), neg[mine])[:, :-1]
            sums.band_n[band.name] = counted(shape, (fold, codes), n_learned[mine])[:, :-1].astype(np.int64)
            if band.subset and band.subset not in sums.subset_pos:
                sums.subset_pos[band.subset] = sums.band_pos[band.name].sum(axis=1)
                sums.subset_neg[band.subset] = sums.band_neg[band.name].sum(axis=1)
    return sums


def logits(combos: list, plan: list[pk.Pack], lookups: tuple, fit: np.ndarray) -> np.ndarray:
    """base_logit[fit] + per pack tables[j][fit, combination], added in ``passes.logit_sql``'s order."""
    base, tables = lookups
    out = np.asarray(base, dtype=np.float64)[fit]
    for pack, table, combo in zip(plan, tables, combos):
        out = out + np.asarray(table, dtype=np.float64)[fit * pack.size + combo]
    return out


def quality_groups(r: RowSet, plan: list[pk.Pack], out_of_fold: bool) -> list[np.ndarray]:
    """The rows of the scored sets as groups that share a logit, with their label counts: what
    ``quality_sets`` needs once the mapping is known, taken in the pass that adds up the sums.

    Rows with the same combinations (and, out of fold, the same block) share
    their logit: numbering those groups takes linear time, and only the
    groups' logits are computed later. Arrays, in int32 (a chunk holds fewer
    than 2^31 rows) to keep them small on disk: each pack's combination per
    group, then per set ('insample', 'eval', 'oof') the groups with rows in it
    and their positive and negative rows; out of fold (when ``out_of_fold``,
    else empty), a group is a combination group (``number``) within one block.
    """
    train = r.train
    y = (r.flags & Y) > 0
    group, n_groups, combos = dense_groups([(c, pack.size) for c, pack in zip(r.combos, plan)], len(y))
    out = [c.astype(np.int32, copy=False) for c in combos]
    out += [*_counted(group[train], y[train], n_groups), *_counted(group[~train], y[~train], n_groups)]
    if not out_of_fold:
        return out + [np.zeros(0, dtype=np.int32)] * 4
    block = r.block[train]
    group, n_oof, (number, block) = dense_groups([(group[train], n_groups), (block, int(block.max(initial=0)) + 1)],
                                                 len(block))
    kept, n_pos, n_neg = _counted(group, y[train], n_oof)
    return out + [number[kept].astype(np.int32), block[kept].astype(np.int32), n_pos, n_neg]


def quality_sets(groups: list[np.ndarray], plan: list[pk.Pack], oof: tuple | None, final: tuple) -> dict:
    """Per scored set ('oof', 'insample', 'eval'): (logit, n_pos, n_neg) of ``quality_groups``'
    groups with rows in it, their logits computed once per group, their counts as float64."""
    n = len(plan)
    combos = groups[:n]
    ins, ins_pos, ins_neg, ev, ev_pos, ev_neg, number, block, oof_pos, oof_neg = groups[n:]
    final_logit = logits(combos, plan, final, np.zeros(len(combos[0]), dtype=np.int64))

    def counts(*c):
        return tuple(x.astype(np.float64) for x in c)

    out = {"insample": (final_logit[ins], *counts(ins_pos, ins_neg)),
           "eval": (final_logit[ev], *counts(ev_pos, ev_neg))}
    if oof is None:
        out["oof"] = (np.zeros(0), np.zeros(0), np.zeros(0))
    elif len(number) or not len(ins):
        out["oof"] = (logits([c[number] for c in combos], plan, oof, block), *counts(oof_pos, oof_neg))
    else:
        raise ValueError("out-of-fold figures asked of groups counted without folds")
    return out


def _counted(group: np.ndarray, y: np.ndarray, n_groups: int) -> tuple:
    """(the groups with rows in this set, their n_pos, their n_neg), as int32."""
    n_pos = np.bincount(group, y, n_groups)
    n_neg = np.bincount(group, ~y, n_groups)
    kept = np.flatnonzero((n_pos + n_neg) > 0)
    return kept.astype(np.int32), n_pos[kept].astype(np.int32), n_neg[kept].astype(np.int32)


def dense_groups(codes: list[tuple[np.ndarray, int]], n: int) -> tuple[np.ndarray, int, list[np.ndarray]]:
    """Each row's number (0 .. D-1, in order of the tuples) among the D distinct tuples of its codes,
    D, and each position's code of every tuple (D values per position).

    ``codes``: per position, (each row's code, number of codes). The tuple is
    built as one integer, position by position, renumbered densely (marks in
    an array over its range, no sort) whenever the range would outgrow a few
    times the number of rows. The tuples' codes come back from the distinct
    integers of each renumbering (D values), not from a row of each tuple.
    """
    key, space, sizes, levels = np.zeros(n, dtype=np.int64), 1, [], []
    for values, size in codes:
        if space * size > _dense_limit(n):
            key, distinct = _renumbered(key, space)
            levels.append((distinct, sizes))
            space, sizes = len(distinct), []
        key *= size   # in place: a fresh array of every row costs its page faults each time
        key += values
        space *= size
        sizes.append(size)
    key, distinct = _renumbered(key, space)
    levels.append((distinct, sizes))
    # unwound from the last renumbering: each one's integers hold (the number before, the codes after
    # it); each renumbering's keys are let go once read
    out, number, count = [], None, len(distinct)
    del distinct
    while levels:
        level, sizes = levels.pop()
        value = level if number is None else level[number]
        del level
        for size in reversed(sizes):
            value, code = np.divmod(value, size) if len(value) else (value, value)
            out.append(code)
        number = value
    return key, count, out[::-1]


def _renumbered(key: np.ndarray, space: int) -> tuple[np.ndarray, np.ndarray]:
    """Each key's number among the distinct keys, and the distinct keys, ascending."""
    if not len(key):
        return key.astype(np.int64), np.zeros(0, dtype=np.int64)
    if space > _dense_limit(len(key)):
        distinct, number = np.unique(key, return_inverse=True)
        # int32 keys only when every code of them is below 2^31 too (a key unwinds by its sizes)
        return number, (distinct.astype(np.int32) if space < 1 << 31 else distinct)
    seen = np.zeros(space, dtype=bool)
    seen[key] = True
    # int32 keys and numbers: space < 2^31 (_dense_limit); only the seen slots of number are read
    distinct = np.flatnonzero(seen).astype(np.int32)
    number = np.empty(space, dtype=np.int32)
    number[distinct] = np.arange(len(distinct), dtype=np.int32)
    # int64 ids: the next position multiplies them
    return number[key].astype(np.int64), distinct


def distinct_ints(values: np.ndarray) -> np.ndarray:
    """The distinct integers, ascending, as int64: marked over their range when it is small, else sorted."""
    if not len(values):
        return np.zeros(0, dtype=np.int64)
    lo, hi = int(values.min()), int(values.max())
    if hi - lo >= _dense_limit(len(values)):
        return np.unique(values).astype(np.int64)
    seen = np.zeros(hi - lo + 1, dtype=bool)
    seen[values - lo] = True
    return np.flatnonzero(seen) + lo


def _dense_limit(n: int) -> int:
    """The largest range marked in an array for n values: 5 bytes a slot, 20 a value, below 2^31."""
    return min(4 * n + (1 << 20), (1 << 31) - 1)


def statement_sets(row: dict) -> dict:
    """The same sets from ``Statements.quality``'s grouped logits (a sharded fit): per set, one run
    of ``quality.merged`` groups."""
    grouping = np.asarray(row["grouping"] or [], dtype=np.int64)
    logit = np.asarray([np.nan if v is None else v for v in row["logit"] or []], dtype=np.float64)
    n_pos = np.asarray(row["n_pos"] or [], dtype=np.float64)
    n_neg = np.asarray(row["n_neg"] or [], dtype=np.float64)
    out = {}
    # GROUPING(oof, ins, ev): the set a row belongs to has its bit 0 (4, 2, 1 from the left)
    for name, bit in (("oof", 4), ("insample", 2), ("eval", 1)):
        mine = ((grouping & bit) == 0) & ~np.isnan(logit)
        out[name] = [quality.ArrayRun(*quality.merged(logit[mine], n_pos[mine], n_neg[mine]))]
    return out


def quality_key(packs: list[pk.Pack], oof: tuple | None) -> pk.Radix:
    """The radix of ``Statements.quality_codes``'s keys: label, each pack's combination, fit slot
    (one per fit out of fold and one for none, or a single slot with one fit), TRAIN SOLD."""
    fits = len(oof[0]) if oof else 1
    return pk.Radix((2, *(p.size for p in packs), fits + 1 if fits > 1 else 1, 2))


def varints(data: bytes) -> np.ndarray:
    """The integers of ``passes.varint_sql``'s bytes, in order, as int64."""
    b = np.frombuffer(data, dtype=np.uint8)
    if not len(b):
        return np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero(b < 128)
    if b[-1] >= 128 or np.any(np.diff(ends, prepend=-1) > VARINT_BYTES):
        raise ValueError("malformed varints")
    starts = np.concatenate(([0], ends[:-1] + 1))
    place = np.arange(len(b)) - np.repeat(starts, ends - starts + 1)
    return np.add.reduceat((b & 127).astype(np.int64) << (7 * place), starts)


def coded_groups(row: dict) -> tuple[np.ndarray, np.ndarray]:
    """(key, rows) of each group of one ``Statements.quality_codes`` result, keys ascending."""
    w = varints(base64.b64decode(row["keys"] or ""))
    more = varints(base64.b64decode(row["counts"] or ""))
    several = (w & 1) == 1
    if len(w) != int(row["groups"]) or len(more) != int(several.sum()):
        raise ValueError("the coded groups do not add up")
    n = np.ones(len(w), dtype=np.int64)
    n[several] = more + 2
    return np.cumsum(w >> 1), n


def coded_sets(parts: list[dict], key: pk.Radix, plan: list[pk.Pack], oof: tuple | None, final: tuple) -> dict:
    """``quality_sets`` from every shard's ``Statements.quality_codes`` (``key``: ``quality_key``): the
    groups' logits computed here from their combinations, as the rows' would be."""
    groups = [coded_groups(p) for p in parts]
    keys = np.concatenate([g[0] for g in groups] or [np.zeros(0, dtype=np.int64)])
    n = np.concatenate([g[1] for g in groups] or [np.zeros(0, dtype=np.int64)])
    y, *combos, slot, train = key.decode(keys)
    y, train = y == 1, train == 1
    n_pos, n_neg = np.where(y, n, 0).astype(np.float64), np.where(y, 0, n).astype(np.float64)

    def run(mine, lookups, fit):
        logit = logits([c[mine] for c in combos], plan, lookups, fit[mine])
        return [quality.ArrayRun(*quality.merged(logit, n_pos[mine], n_neg[mine]))]

    zeros = np.zeros(len(keys), dtype=np.int64)
    out = {"insample": run(train, final, zeros), "eval": run(~train, final, zeros)}
    if oof is None:
        out["oof"] = [quality.ArrayRun(np.zeros(0), np.zeros(0), np.zeros(0))]
    else:
        # of several slots, the last is a row without a fit: it has no OOF score (docs/contract.md 6)
        slots = key.radix[-2]
        out["oof"] = run(train & (slot < max(slots - 1, 1)), oof, slot)
    return out
