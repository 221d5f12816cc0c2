"""Pack several bands' codes into one small integer, so a fit aggregates and scores few keys.

A pack of bands with L1, L2, ... labels has (L1+1)(L2+1)... combinations
(the extra slot is NULL: a subset band outside its subset). Grouping by
(day, pack combination) for a handful of packs gives every band's per-day
sums after a cheap decode in numpy, and scoring a row is one array lookup
per pack: the sum of the pack's WOE for that combination.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import bands as b

COMBINATION_BUDGET = 256  # per pack: small hash tables, small lookup arrays


@dataclass(frozen=True)
class Pack:
    bands: tuple[int, ...]   # indexes into schema.bands
    radix: tuple[int, ...]   # slots per band: its labels plus the NULL slot
    mult: tuple[int, ...]    # place value of each band in the combination

    @property
    def size(self) -> int:
        return int(np.prod(self.radix))

    def codes(self, combos: np.ndarray) -> list[np.ndarray]:
        """Each band's code per combination (radix - 1 means NULL)."""
        return [(combos // m) % r for m, r in zip(self.mult, self.radix)]


def plan(schema: b.BandSchema, budget: int = COMBINATION_BUDGET) -> list[Pack]:
    """Greedy packing in band order, each pack at most ``budget`` combinations."""
    packs, current, size = [], [], 1
    for i, band in enumerate(schema.bands):
        slots = len(band.labels) + 1
        if current and size * slots > budget:
            packs.append(current)
            current, size = [], 1
        current.append(i)
        size *= slots
    packs.append(current)
    out = []
    for members in packs:
        radix = tuple(len(schema.bands[i].labels) + 1 for i in members)
        mult = tuple(int(np.prod(radix[:j])) for j in range(len(radix)))
        out.append(Pack(tuple(members), radix, mult))
    return out


def combination_sql(pack: Pack, band_sql: list[str]) -> str:
    """SQL integer of a row's combination; band_sql[i] is band i's code expression."""
    terms = []
    for i, r, m in zip(pack.bands, pack.radix, pack.mult):
        code = f"coalesce({band_sql[i]}, {r - 1})"
        terms.append(code if m == 1 else f"{code} * {m}")
    return " + ".join(terms)


def woe_table(pack: Pack, woe_by_band: list[np.ndarray]) -> np.ndarray:
    """Per combination, the sum of its bands' WOE (NULL slot and unseen values add 0)."""
    combos = np.arange(pack.size)
    total = np.zeros(pack.size)
    for i, codes in zip(pack.bands, pack.codes(combos)):
        padded = np.append(woe_by_band[i], 0.0)  # the NULL slot
        total = total + padded[codes]
    return total
