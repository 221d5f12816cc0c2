"""The fit's per-row read, decoded: every fold's exact sums, then the quality sets.

``Statements.rows`` returns every TRAIN SOLD and eval-window row as (label
flags, combination of every pack, t0 day, exact weight). Those rows give

* the per-pack sums a sharded fit gets from ``Statements.sums`` on its
  shards (``pack_sums``), from which ``fold_sums`` builds every band's
  per-fold statistics, with exact weight sums on both paths;
* once the mapping is known, every row's OOF, in-sample and eval logit
  (``quality_sets``): the quality figures need no second read.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from . import packs as pk
from . import woe
from .passes import FIXED_POINT_BITS

TRAIN, Y, LEARNED = 4, 2, 1   # the flag bits of a row
PIECE = 21                     # weight pieces of 21 bits: float64 sums of them stay exact
INT8_OID, INT4_OID = 20, 23


def int_array(data: bytes | None, oid: int = INT8_OID) -> np.ndarray:
    """An int8[] (or int4[]) in PostgreSQL's binary format (array_send) as int64 numpy, NULL as empty."""
    if data is None:
        return np.zeros(0, dtype=np.int64)
    ndim, has_nulls, element = struct.unpack_from(">iii", data)
    if ndim != 1 or has_nulls or element != oid:
        raise ValueError(f"expected a one-dimensional array of type {oid} without NULLs, got ndim={ndim} "
                         f"type={element}")
    # each element: its length then its value, big-endian
    size = 8 if oid == INT8_OID else 4
    body = np.frombuffer(data, dtype=[("len", ">i4"), ("value", f">i{size}")], offset=12 + 8 * ndim)
    if (body["len"] != size).any():
        raise ValueError(f"an array element is not {size} bytes long")
    return body["value"].astype(np.int64)


@dataclass
class RowSet:
    flags: np.ndarray        # TRAIN | Y | LEARNED bits
    day: np.ndarray          # epoch day of t0
    combos: list             # per pack: the combination of its bands' codes
    w: np.ndarray            # weight in integers of 2^-61 (0 for rows not learned from)
    block: np.ndarray | None = None  # fit index of the row's fold (0 for eval rows), once folds are known

    def train_days(self) -> np.ndarray:
        """The distinct t0 days of TRAIN SOLD, ascending."""
        return np.unique(self.day[(self.flags & TRAIN) > 0])

    def put_in_blocks(self, days: np.ndarray, block_of_day: np.ndarray) -> None:
        """Each TRAIN SOLD row's block from its day (``days`` ascending); eval rows are block 0."""
        train = (self.flags & TRAIN) > 0
        at = np.searchsorted(days, self.day).clip(0, max(len(days) - 1, 0))
        self.block = np.where(train, np.asarray(block_of_day, dtype=np.int64)[at] if len(days) else 0, 0)


def word_layout(plan: list[pk.Pack]) -> list[pk.Radix]:
    """The int8 words of a row's key: flags, then each pack's combination."""
    return pk.words([8] + [p.size for p in plan])


def read(row: dict, plan: list[pk.Pack], words: list[pk.Radix]) -> RowSet:
    parts = []
    for i, word in enumerate(words):
        parts += word.decode(int_array(row[f"w{i}"]))
    return RowSet(flags=parts[0], combos=parts[1:], day=int_array(row["day"], INT4_OID), w=int_array(row["w"]))


def exact_sums(index: np.ndarray, w: np.ndarray, n_cells: int) -> list[int]:
    """Σ w per cell as exact integers, whatever the order of the rows.

    Each weight (< 2^62) is cut into 21-bit pieces; float64 sums of those
    stay below 2^53, so bincount adds them exactly, for cells of fewer than
    2^32 rows.
    """
    mask = (1 << PIECE) - 1
    a, b, c = (np.bincount(index, x.astype(np.float64), n_cells)
               for x in (w >> 2 * PIECE, (w >> PIECE) & mask, w & mask))
    return [(int(x) << 2 * PIECE) + (int(y) << PIECE) + int(z) for x, y, z in zip(a, b, c)]


def pack_sums(r: RowSet, plan: list[pk.Pack]) -> dict:
    """What ``Statements.sums`` returns (per pack and key: rows, exact Σw), from the rows."""
    train = (r.flags & TRAIN) > 0
    learned = (r.flags & LEARNED) > 0
    flags = np.where(learned, (r.flags & Y) + 1, 0)  # 2y + learned, 0 for rows not learned from
    out = {"grouping": [], "key": [], "n": [], "sw": []}
    every = (1 << len(plan)) - 1
    w = r.w[train]
    blocks = int(r.block.max(initial=0)) + 1
    for j, pack in enumerate(plan):
        key = ((r.block * pack.size + np.where(learned, r.combos[j], 0)) * 4 + flags)[train]
        # the key space is small (blocks x combinations x 4): count densely, keep the cells with rows
        n = np.bincount(key, minlength=blocks * pack.size * 4)
        cells = np.flatnonzero(n)
        exact = exact_sums(key, w, len(n))
        out["grouping"] += [every ^ (1 << (len(plan) - 1 - j))] * len(cells)
        out["key"] += cells.tolist()
        out["n"] += n[cells].tolist()
        out["sw"] += [exact[c] for c in cells]
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


def logits(r: RowSet, plan: list[pk.Pack], lookups: tuple, fit: np.ndarray) -> np.ndarray:
    """base_logit[fit] + per pack tables[j][fit, combination], added in ``passes.logit_sql``'s order."""
    base, tables = lookups
    out = np.asarray(base, dtype=np.float64)[fit]
    for pack, table, combo in zip(plan, tables, r.combos):
        out = out + np.asarray(table, dtype=np.float64)[fit * pack.size + combo]
    return out


def quality_sets(r: RowSet, plan: list[pk.Pack], oof: tuple | None, final: tuple) -> dict:
    """Per scored set ('oof', 'insample', 'eval'): (logit, n_pos, n_neg) per row, as ``quality`` needs."""
    train = (r.flags & TRAIN) > 0
    y = (r.flags & Y) > 0
    pos, neg = y.astype(np.float64), (~y).astype(np.float64)
    final_logit = logits(r, plan, final, np.zeros(len(r.flags), dtype=np.int64))
    sets = {"insample": train, "eval": ~train}
    out = {name: (final_logit[mine], pos[mine], neg[mine]) for name, mine in sets.items()}
    if oof is None:
        out["oof"] = (np.zeros(0), np.zeros(0), np.zeros(0))
    else:
        out["oof"] = (logits(r, plan, oof, r.block)[train], pos[train], neg[train])
    return out


def statement_sets(row: dict) -> dict:
    """The same sets from ``Statements.quality``'s grouped logits (a sharded fit)."""
    grouping = np.asarray(row["grouping"] or [], dtype=np.int64)
    logit = np.asarray([np.nan if v is None else v for v in row["logit"] or []], dtype=np.float64)
    n_pos = np.asarray(row["n_pos"] or [], dtype=np.float64)
    n_neg = np.asarray(row["n_neg"] or [], dtype=np.float64)
    out = {}
    # GROUPING(oof, ins, ev): the set a row belongs to has its bit 0 (4, 2, 1 from the left)
    for name, bit in (("oof", 4), ("insample", 2), ("eval", 1)):
        mine = ((grouping & bit) == 0) & ~np.isnan(logit)
        out[name] = (logit[mine], n_pos[mine], n_neg[mine])
    return out
