"""Pack several bands' codes into one small integer, so a fit aggregates and scores few keys.

A pack of bands with L1, L2, ... labels has (L1+1)(L2+1)... combinations
(the extra slot is NULL: a subset band outside its subset). A row's
combination per pack, for a handful of packs, gives every band's per-fold
sums after a cheap decode in numpy, and scoring a row is one array lookup
per pack: the sum of the pack's WOE for that combination.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import bands as b

COMBINATION_BUDGET = 256  # per pack: small hash tables, small lookup arrays


@dataclass(frozen=True)
class Radix:
    """Small codes as one integer in mixed radices, the first code changing fastest."""
    radix: tuple[int, ...]

    @property
    def mult(self) -> tuple[int, ...]:
        return tuple(math.prod(self.radix[:j]) for j in range(len(self.radix)))

    @property
    def size(self) -> int:
        return math.prod(self.radix)

    def sql(self, parts: list[str], cast: str = "int8") -> str:
        """The SQL integer of the codes ``parts`` (each in 0 .. radix - 1), summed as ``cast``."""
        return " + ".join(f"({part})::{cast}" if m == 1 else f"({part})::{cast} * {m}"
                          for part, m in zip(parts, self.mult))

    def decode(self, values: np.ndarray) -> list[np.ndarray]:
        """The codes of non-negative integers, first code first: shifts and masks when every radix is
        a power of two (``words``), else one divmod per code (int64 division, a few times slower)."""
        if all(r & (r - 1) == 0 for r in self.radix):
            out = []
            for r, m in zip(self.radix, self.mult):
                code = values >> (m.bit_length() - 1)
                code &= r - 1   # in place: one array of every row per code, not two
                out.append(code)
            return out
        out, rest = [], values
        for r in self.radix:
            rest, code = np.divmod(rest, r)
            out.append(code)
        return out


@dataclass(frozen=True)
class Pack(Radix):
    """Bands whose codes (radix - 1 meaning NULL) make one combination."""
    bands: tuple[int, ...] = ()  # indexes into schema.bands

    def codes(self, combos: np.ndarray) -> list[np.ndarray]:
        """Each band's code per combination (radix - 1 means NULL)."""
        return self.decode(combos)


def words(radix: list[int], limit: int = 2 ** 62) -> list[Radix]:
    """Consecutive codes packed greedily into integers below ``limit``: the int8 words of a row's key.

    Each code gets a bit field (its radix rounded up to a power of two), so a word decodes with
    shifts and masks: the rows of a fit or of realized performance decode three times faster.
    """
    out, current = [], []
    for r in (1 << (r - 1).bit_length() for r in radix):
        if current and math.prod(current) * r >= limit:
            out.append(Radix(tuple(current)))
            current = []
        current.append(r)
    return out + [Radix(tuple(current))]


def words_sql(layout: list[Radix], parts: list[str]) -> list[str]:
    """The SQL int8 of each word of ``layout`` (``words``) over the codes ``parts``, taken in order."""
    out, at = [], 0
    for word in layout:
        out.append(word.sql(parts[at:at + len(word.radix)]))
        at += len(word.radix)
    return out


def decoded_words(layout: list[Radix], values: list[np.ndarray]) -> list[np.ndarray]:
    """The codes of every word of ``layout``, in order, from each word's integers ``values``."""
    return [code for word, v in zip(layout, values) for code in word.decode(v)]


def groups(schema: b.BandSchema, budget: int = COMBINATION_BUDGET) -> list[tuple[int, ...]]:
    """Which bands share a pack: greedy in band order, each pack at most ``budget`` combinations.

    A category band, whose values each model learns, is a pack of its own: the grouping is then
    the schema's alone, and the live views, made for a schema, add each pack's WOE in the same
    groups as the compiled scoring, so both give the same bits.
    """
    out, current, size = [], [], 1
    for i, band in enumerate(schema.bands):
        if band.category is not None:
            if current:
                out.append(tuple(current))
                current, size = [], 1
            out.append((i,))
            continue
        slots = len(band.labels) + 1
        if current and size * slots > budget:
            out.append(tuple(current))
            current, size = [], 1
        current.append(i)
        size *= slots
    if current or not out:
        out.append(tuple(current))
    return out


def plan(schema: b.BandSchema, budget: int = COMBINATION_BUDGET) -> list[Pack]:
    """The packs of a schema whose category bands know their values (``BandSchema.resolve``)."""
    return [Pack(radix=tuple(len(schema.bands[i].labels) + 1 for i in members), bands=members)
            for members in groups(schema, budget)]


def combination_sql(pack: Pack, band_sql: list[str]) -> str:
    """SQL integer of a row's combination; band_sql[i] is band i's code expression."""
    return pack.sql([f"coalesce({band_sql[i]}, {r - 1})" for i, r in zip(pack.bands, pack.radix)], cast="int")


def woe_table(pack: Pack, woe_by_band: list[np.ndarray]) -> np.ndarray:
    """Per combination, the sum of its bands' WOE (NULL slot and unseen values add 0)."""
    combos = np.arange(pack.size)
    total = np.zeros(pack.size)
    for i, codes in zip(pack.bands, pack.codes(combos)):
        padded = np.append(woe_by_band[i], 0.0)  # the NULL slot
        total = total + padded[codes]
    return total
