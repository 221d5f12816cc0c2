"""Where a fit's rows come from: one interface (``Rows``), two implementations.

* ``LocalRows`` reads every TRAIN SOLD and eval-window row once, as compact
  codes (``passes.Statements.rows``), and numpy does the rest (``rowset``):
  the fastest path for a table on this server.
* ``sharded.ShardedRows`` sends set-based statements (``passes.Statements``:
  statistics, sums, quality) to each leaf of a source through a ``Fanout``
  and adds up the parts: for sources on postgres_fdw servers, whose rows
  stay where they are. Setting ``woe_anchor.reader = 'statements'`` runs it
  over a local table too (one local leaf, no dblink).

Both give the same statistics, the same exact weight sums and the same
quality groups, so a fit's artifacts are bit-identical whichever reads
(tests/test_readers.py drives both on the same rows). ``fit._fit_source``
calls these methods in this order, on either:

    default_cutoff -> first_statistics -> all_statistics -> prepare ->
    train_days -> pack_sums -> write_scores -> quality_sets -> finish | close
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from . import errors, rowset, sharded
from .catalog import EVAL_WINDOW
from .passes import Statements
from .persist import write_scores_here
from .source import Leaf
from .sqlgen import utc_iso_sql

READER_SETTING = "woe_anchor.reader"


class Rows(Protocol):
    def default_cutoff(self) -> str | None:
        """max(finite sold_time) - EVAL_WINDOW as exact ISO text (None: no sale)."""

    def first_statistics(self, st: Statements) -> dict | None:
        """The statistics known before the category bands' values are (None: nothing read yet)."""

    def all_statistics(self, st: Statements, plan: list, stats: dict | None) -> dict:
        """Every statistic of ``Statements.stats`` (``days`` aside), once the packs are planned."""

    def prepare(self, schema, plan: list, learned: dict, ref_epoch: float, half_life_days) -> None:
        """Band what needs the learned thresholds and weigh the learned rows, where rows are held."""

    def train_days(self, stats: dict) -> np.ndarray:
        """The distinct t0 days (epoch days) of TRAIN SOLD, ascending."""

    def pack_sums(self, st: Statements, plan: list, fold: str, days, block_of_day, ref_epoch: float,
                  half_life_days) -> dict:
        """Per pack and block: row counts and exact weight sums (``rowset.fold_sums`` reads them)."""

    def write_scores(self, st: Statements, plan: list, fold: str, lookups, fold_ids, phases,
                     on_shards: bool) -> tuple[list, list, int]:
        """(staging tables here, tables on shards, rows written)."""

    def quality_sets(self, st: Statements, plan: list, fold: str, oof, final) -> dict:
        """Per scored set: (logit, n_pos, n_neg) groups."""

    def finish(self) -> None:
        """The reads are done and succeeded (before persisting)."""

    def close(self) -> None:
        """Release what the reads hold, whatever happened."""


def open_rows(plpy, src) -> Rows:
    """The reader for ``src``: its shards' fan-out, else ``LocalRows`` (or, with the setting, the
    statements over the local table)."""
    fanout = sharded.open_fanout(plpy, src)
    if fanout is None and not src.leaves:
        chosen = plpy.execute(f"SELECT current_setting('{READER_SETTING}', true) AS r")[0]["r"] or "rows"
        if chosen not in ("rows", "statements"):
            raise errors.Refusal(errors.INVALID_PARAMETER_VALUE,
                                  f"{READER_SETTING} must be 'rows' or 'statements', not {chosen!r}")
        if chosen == "statements":
            plpy.notice(f"[fit] {READER_SETTING} = statements: set-based statements read {src.qualified}")
            fanout = sharded.Fanout(plpy, (Leaf(src.qualified, None),), None)
    if fanout is not None:
        return sharded.ShardedRows(plpy, fanout, src.qualified)
    return LocalRows(plpy, src.qualified)


class LocalRows:
    """One read of the rows into numpy (``rowset``); everything else is computed from them."""

    def __init__(self, plpy, qualified: str):
        self.plpy, self.qualified = plpy, qualified
        self.rows: rowset.RowSet | None = None
        self.ship = None

    def default_cutoff(self) -> str | None:
        latest = f"max(s.sold_time) FILTER (WHERE isfinite(s.sold_time)) - {EVAL_WINDOW}"
        return self.plpy.execute(f"SELECT {utc_iso_sql(latest)} AS t FROM {self.qualified} AS s")[0]["t"]

    def first_statistics(self, st: Statements) -> dict | None:
        # only a category band's values need a read of their own: the rows carry everything else
        if any(band.category for band in st.c.schema.bands):
            return self.plpy.execute(st.stats(percentiles=False, days=False))[0]
        return None

    def all_statistics(self, st: Statements, plan: list, stats: dict | None) -> dict:
        schema = st.c.schema
        self.ship = rowset.shipment(schema)
        words = rowset.word_layout(plan, self.ship)
        read = st.rows(plan, words, self.ship.deferred, self.ship.inputs, self.ship.subsets)
        self.rows = rowset.read(self.plpy.execute(read)[0], plan, words, self.ship)
        out = self.rows.statistics(schema, self.ship)
        if stats is not None and stats["n_train_sold"] != out["n_train_sold"]:
            errors.source_changed(self.qualified)
        return out

    def prepare(self, schema, plan: list, learned: dict, ref_epoch: float, half_life_days) -> None:
        self.rows.band_deferred(schema, plan, self.ship, learned)
        self.rows.weigh(ref_epoch, half_life_days)

    def train_days(self, stats: dict) -> np.ndarray:
        return self.rows.train_days()

    def pack_sums(self, st: Statements, plan: list, fold: str, days, block_of_day, ref_epoch: float,
                  half_life_days) -> dict:
        self.rows.put_in_blocks(days, block_of_day)
        return rowset.pack_sums(self.rows, plan)

    def write_scores(self, st: Statements, plan: list, fold: str, lookups, fold_ids, phases,
                     on_shards: bool) -> tuple[list, list, int]:
        if on_shards:
            raise sharded.not_sharded(self.qualified)
        return write_scores_here(self.plpy, st, plan, fold, lookups, fold_ids, phases)

    def quality_sets(self, st: Statements, plan: list, fold: str, oof, final) -> dict:
        return rowset.quality_sets(self.rows, plan, oof, final)

    def finish(self) -> None:
        self.rows = None  # the rows' memory goes before persisting

    def close(self) -> None:
        self.rows = None
