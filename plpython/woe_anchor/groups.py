"""The fit's grouped read, decoded: every fold's exact sums, then the quality sets.

``Statements.groups`` returns one group per (label flags, fold, combination
of every pack) over TRAIN SOLD and the eval window. Those groups give

* the per-pack sums a sharded fit gets from ``Statements.sums`` on its
  shards (``pack_sums``), from which ``fold_sums`` builds every band's
  per-fold statistics, with exact weight sums on both paths;
* once the mapping is known, every group's OOF, in-sample and eval logit
  (``quality_sets``): the quality figures need no second read.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from . import packs as pk
from . import woe
from .passes import FIXED_POINT_BITS, HALF_BITS

TRAIN, Y, LEARNED = 4, 2, 1   # the flag bits of a group
PIECE = 21                     # weight pieces of 21 bits: float64 sums of them stay exact
INT8_OID = 20


def int8_array(data: bytes | None) -> np.ndarray:
    """An int8[] in PostgreSQL's binary format (array_send) as numpy, NULL as empty."""
    if data is None:
        return np.zeros(0, dtype=np.int64)
    ndim, has_nulls, element = struct.unpack_from(">iii", data)
    if ndim != 1 or has_nulls or element != INT8_OID:
        raise ValueError(f"expected a one-dimensional int8[] without NULLs, got ndim={ndim} type={element}")
    # each element: its length (always 8) then its value, big-endian
    body = np.frombuffer(data, dtype=[("len", ">i4"), ("value", ">i8")], offset=12 + 8 * ndim)
    if (body["len"] != 8).any():
        raise ValueError("an int8[] element is not 8 bytes long")
    return body["value"].astype(np.int64)


@dataclass
class Groups:
    flags: np.ndarray        # TRAIN | Y | LEARNED bits
    block: np.ndarray        # fit index of the row's fold (0 for eval rows)
    combos: list             # per pack: the combination of its bands' codes
    n: np.ndarray            # rows
    hi: np.ndarray           # learned rows' weights: sum of w >> 31
    lo: np.ndarray           # and of w & (2^31 - 1)


def word_layout(plan: list[pk.Pack], n_blocks: int) -> list[pk.Radix]:
    """The int8 words of a group key: flags, fold, then each pack's combination."""
    return pk.words([8, max(n_blocks, 1)] + [p.size for p in plan])


def read(row: dict, plan: list[pk.Pack], words: list[pk.Radix]) -> Groups:
    parts = []
    for i, word in enumerate(words):
        parts += word.decode(int8_array(row[f"w{i}"]))
    return Groups(flags=parts[0], block=parts[1], combos=parts[2:], n=int8_array(row["n"]),
                  hi=int8_array(row["hi"]), lo=int8_array(row["lo"]))


def exact_sums(index: np.ndarray, hi: np.ndarray, lo: np.ndarray, n_cells: int) -> list[int]:
    """Σ (hi * 2^31 + lo) per cell as exact integers, whatever the order of the groups.

    Each group's value is cut into 21-bit pieces; float64 sums of those stay
    below 2^53, so bincount adds them exactly, for cells of fewer than 2^34
    rows (the top piece of a weight <= 2^61 is at most 2^19).
    """
    mask = (1 << PIECE) - 1
    if len(hi) and int(hi.max()) >= 1 << (62 - (HALF_BITS - PIECE)):
        # a group of millions of identical rows: Python integers, slower and as exact
        out = np.zeros(n_cells, dtype=object)
        np.add.at(out, index, hi.astype(object) * (1 << HALF_BITS) + lo.astype(object))
        return [int(v) for v in out]
    low = lo & mask
    shifted = (lo >> PIECE) + (hi << (HALF_BITS - PIECE))  # the value >> 21
    mid, top = shifted & mask, shifted >> PIECE
    a, b, c = (np.bincount(index, x.astype(np.float64), n_cells) for x in (top, mid, low))
    return [(int(x) << 2 * PIECE) + (int(y) << PIECE) + int(z) for x, y, z in zip(a, b, c)]


def pack_sums(g: Groups, plan: list[pk.Pack]) -> dict:
    """What ``Statements.sums`` returns (per pack and key: rows, exact Σw), from the groups."""
    train = (g.flags & TRAIN) > 0
    learned = (g.flags & LEARNED) > 0
    flags = np.where(learned, (g.flags & Y) + 1, 0)  # 2y + learned, 0 for rows not learned from
    out = {"grouping": [], "key": [], "n": [], "sw": []}
    every = (1 << len(plan)) - 1
    rows, hi, lo = g.n[train].astype(np.float64), g.hi[train], g.lo[train]
    blocks = int(g.block.max(initial=0)) + 1
    for j, pack in enumerate(plan):
        key = ((g.block * pack.size + np.where(learned, g.combos[j], 0)) * 4 + flags)[train]
        # the key space is small (blocks x combinations x 4): count densely, keep the cells with rows
        n = np.bincount(key, rows, blocks * pack.size * 4)
        cells = np.flatnonzero(n)
        exact = exact_sums(key, hi, lo, len(n))
        out["grouping"] += [every ^ (1 << (len(plan) - 1 - j))] * len(cells)
        out["key"] += cells.tolist()
        out["n"] += n[cells].astype(np.int64).tolist()
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


def logits(g: Groups, plan: list[pk.Pack], lookups: tuple, fit: np.ndarray) -> np.ndarray:
    """base_logit[fit] + per pack tables[j][fit, combination], added in ``passes.logit_sql``'s order."""
    base, tables = lookups
    out = np.asarray(base, dtype=np.float64)[fit]
    for pack, table, combo in zip(plan, tables, g.combos):
        out = out + np.asarray(table, dtype=np.float64)[fit * pack.size + combo]
    return out


def quality_sets(g: Groups, plan: list[pk.Pack], oof: tuple | None, final: tuple) -> dict:
    """Per scored set ('oof', 'insample', 'eval'): (logit, n_pos, n_neg) per group, as ``quality`` needs."""
    train = (g.flags & TRAIN) > 0
    y = (g.flags & Y) > 0
    pos, neg = np.where(y, g.n, 0).astype(np.float64), np.where(y, 0, g.n).astype(np.float64)
    zero = np.zeros(len(g.n), dtype=np.int64)
    final_logit = logits(g, plan, final, zero)
    sets = {"insample": train, "eval": ~train}
    out = {name: (final_logit[mine], pos[mine], neg[mine]) for name, mine in sets.items()}
    if oof is None:
        out["oof"] = (np.zeros(0), np.zeros(0), np.zeros(0))
    else:
        out["oof"] = (logits(g, plan, oof, g.block)[train], pos[train], neg[train])
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
