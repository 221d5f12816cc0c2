"""Where a fit's rows come from: one interface (``Rows``), two implementations.

* ``LocalRows`` reads every TRAIN SOLD and eval-window row once, as compact
  codes (``passes.Statements.rows``), and numpy does the rest (``rowset``):
  the fastest path for a table on this server. Past ``woe_anchor.fit_memory``
  it reads them in chunks kept on disk (``spill``), each step going over the
  chunks one at a time.
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

import math
from typing import Protocol

import numpy as np

from . import errors, passes, quality, rowset, sharded, spill
from .catalog import EVAL_WINDOW
from .passes import Statements
from .persist import write_scores_here
from .source import Leaf
from .sqlgen import quote_literal, utc_iso_sql

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
                     on_shards: bool | None) -> tuple[list, list, int]:
        """(staging tables here, tables on shards, rows written)."""

    def quality_sets(self, st: Statements, plan: list, fold: str, oof, final) -> dict:
        """Per scored set: runs of ``quality.merged`` groups (``quality.summary`` reads them)."""

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
    """The rows read into numpy (``rowset``), in one piece, or in chunks of at most
    ``woe_anchor.fit_memory`` kept on disk (``spill``) when the table is larger: every statistic,
    sum and quality group is added up from the chunks, the same figures however the rows are cut."""

    def __init__(self, plpy, qualified: str):
        self.plpy, self.qualified = plpy, qualified
        self.ship = self.plan = self.spill = None
        self.chunks: spill.Kept | None = None
        self.groups: spill.Kept | None = None    # per chunk, rowset.quality_groups
        self.days = np.zeros(0, dtype=np.int64)  # the distinct TRAIN SOLD days, gathered by the read
        self.banding = None

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
        self.plan, self.ship = plan, rowset.shipment(schema)
        words = rowset.word_layout(plan, self.ship)
        ranges = self._ranges(rowset.bytes_per_row(words, self.ship))
        self.chunks = spill.Kept(self.spill)
        values: dict[int, spill.Kept] = {}
        total = None
        read = st.rows(plan, words, self.ship.deferred, self.ship.inputs, self.ship.read_in, self.ship.subsets, ranges)
        # one statement, so one snapshot, however many chunks: a cursor hands them over one by one;
        # chunks are read past the memory setting only: at its default, always rows enough to compile
        with passes.compiled_pass(self.plpy, always=ranges is not None):
            for row in (self.plpy.execute(read) if ranges is None else self.plpy.cursor(read)):
                r = rowset.read(row, plan, words, self.ship)
                part, vals = rowset.chunk_statistics(r, schema, self.ship)
                total = rowset.add_statistics(total, part)
                for i, v in vals.items():
                    values.setdefault(i, spill.Kept(self.spill)).append([v])
                self.days = np.union1d(self.days, r.train_days())
                self.chunks.append(r.arrays())
                del r, row
        out = rowset.statistics(total, lambda i: values[i].column(0), schema)
        if self.spill is not None:
            self.plpy.notice(f"[fit] read {out['n_train_sold']} TRAIN SOLD rows in {len(ranges)} chunks "
                             f"(woe_anchor.fit_memory), {self.spill.bytes / 2**20:.0f} MiB kept on disk")
        if stats is not None and stats["n_train_sold"] != out["n_train_sold"]:
            errors.source_changed(self.qualified)
        return out

    def _ranges(self, per_row: int) -> list[tuple[int, int]] | None:
        """Block ranges of the source's heaps (every partition's and child's: a range is cut from
        each) holding about ``woe_anchor.fit_memory`` of rows each, and the file that keeps the
        chunks open; None when the rows fit, or for a view (read in one piece)."""
        try:
            with self.plpy.subtransaction():
                limits = self.plpy.execute(_LIMITS_SQL.format(setting=MEMORY_SETTING,
                                                              default=quote_literal(DEFAULT_FIT_MEMORY)))[0]
        except self.plpy.SPIError as e:  # not a size, or one past bigint: name the setting
            raise errors.Refusal(errors.INVALID_PARAMETER_VALUE,
                                 f"{MEMORY_SETTING} is not a size of memory PostgreSQL reads: {e.args[0] if e.args else e}",
                                 hint=f"SET {MEMORY_SETTING} = '256MB' (the default).") from None
        if limits["budget"] < MIN_FIT_MEMORY:
            raise errors.Refusal(errors.INVALID_PARAMETER_VALUE,
                                 f"{MEMORY_SETTING} must be at least {MIN_FIT_MEMORY // 1024} kB")
        heaps = [(int(h["blocks"]), float(h["density"]))
                 for h in self.plpy.execute(_HEAPS_SQL.format(source=quote_literal(self.qualified)))]
        cuts = chunk_cuts(heaps, per_row, limits["budget"])
        if cuts is None:
            return None
        self.spill = spill.Spill(spill.temp_dir(limits["tablespace"], limits["major"]), limits["temp_limit"],
                                 check=lambda: self.plpy.execute("SELECT"))
        return list(zip(cuts[:-1], cuts[1:]))

    def prepare(self, schema, plan: list, learned: dict, ref_epoch: float, half_life_days) -> None:
        self.banding = (schema, plan, self.ship, learned)

    def train_days(self, stats: dict) -> np.ndarray:
        return self.days

    def pack_sums(self, st: Statements, plan: list, fold: str, days, block_of_day, ref_epoch: float,
                  half_life_days) -> dict:
        """The sums, and in the same pass each chunk's quality groups (they need no mapping), so
        the rows are gone through once after the read."""
        n_blocks = int(np.max(block_of_day, initial=0)) + 1
        sums = rowset.PackSums(plan, n_blocks)
        # the groups go to a file of their own, and the rows' file closes after this pass: the disk
        # holds the rows and the groups, then the groups and the quality runs, never all three
        rows_file = self.spill
        if rows_file is not None:
            self.spill = rows_file.successor()
        self.groups = spill.Kept(self.spill)
        try:
            for arrays in self.chunks:
                r = rowset.RowSet.from_arrays(arrays, len(plan))
                r.band_deferred(*self.banding)
                r.weigh(ref_epoch, half_life_days)
                r.put_in_blocks(days, block_of_day)
                sums.add(r)
                # out of fold means blocks: several of them (one block is the final fit alone)
                self.groups.append(rowset.quality_groups(r, plan, out_of_fold=n_blocks > 1))
        finally:
            self.chunks = None  # the rows are done with, whatever happened: their groups stay
            if rows_file is not None:
                rows_file.close()
        return sums.result()

    def write_scores(self, st: Statements, plan: list, fold: str, lookups, fold_ids, phases,
                     on_shards: bool | None) -> tuple[list, list, int]:
        if on_shards:
            raise sharded.not_sharded(self.qualified)
        return write_scores_here(self.plpy, st, plan, fold, lookups, fold_ids, phases)

    def quality_sets(self, st: Statements, plan: list, fold: str, oof, final) -> dict:
        runs = {name: spill.Kept(self.spill) for name in ("oof", "insample", "eval")}
        for groups in self.groups:
            for name, sets in rowset.quality_sets(groups, plan, oof, final).items():
                runs[name].append(quality.merged(*sets))
        return {name: kept.runs() for name, kept in runs.items()}

    def finish(self) -> None:
        self.close()  # the rows' memory and files go before persisting

    def close(self) -> None:
        self.chunks = self.groups = None
        if self.spill is not None:
            self.spill.close()
            self.spill = None


MEMORY_SETTING = "woe_anchor.fit_memory"
DEFAULT_FIT_MEMORY = "256MB"
MIN_FIT_MEMORY = 64 * 1024
MAX_CHUNKS = 256               # past it chunks grow: a small setting must not make the merges quadratic
MAX_CHUNK_ROWS = 100_000_000   # a chunk's column is one bytea value, at most 1 GB: 8 bytes a row
MAX_BLOCKS = (1 << 32) - 1     # past every block of a heap: the last chunk's end
UNKNOWN_DENSITY = 128.0        # rows per page of a heap never analyzed: 64 bytes a row, more than there are


def chunk_cuts(heaps: list[tuple[int, float]], per_row: int, budget: int) -> list[int] | None:
    """Block numbers cutting heaps of (blocks, rows per block) into chunks of about ``budget``
    bytes of rows: the same block range is cut from every heap (a partitioned table's), so the
    cuts split F(c) = sum of rows in blocks [0, c) of each heap evenly. None: one piece will do."""
    total = sum(blocks * density for blocks, density in heaps)
    n = min(max(math.ceil(total * per_row / budget), math.ceil(total / MAX_CHUNK_ROWS)), MAX_CHUNKS)
    if n <= 1:
        return None

    blocks, densities = np.array([h[0] for h in heaps]), np.array([h[1] for h in heaps])

    def rows_below(c: int) -> float:
        return float(np.minimum(c, blocks) @ densities)

    cuts, last = [0], int(blocks.max())
    for k in range(1, n):
        lo, hi = cuts[-1], last   # the first block count whose rows below reach k / n of them
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if rows_below(mid) < total * k / n else (lo, mid)
        if lo > cuts[-1]:
            cuts.append(lo)
    return cuts + [MAX_BLOCKS] if len(cuts) > 1 else None


_LIMITS_SQL = """
SELECT pg_catalog.pg_size_bytes(coalesce(nullif(pg_catalog.current_setting('{setting}', true), ''), {default}))
         AS budget,
       CASE WHEN pg_catalog.current_setting('temp_file_limit') <> '-1'
            THEN pg_catalog.pg_size_bytes(pg_catalog.current_setting('temp_file_limit')) END AS temp_limit,
       pg_catalog.current_setting('server_version_num')::int / 10000 AS major,
       -- the first listed tablespace the caller may use; an empty name ("", as an empty setting
       -- reads) is the database's default tablespace, as PostgreSQL reads it
       (SELECT coalesce(t.oid, d.dattablespace)::int8
        FROM unnest(pg_catalog.string_to_array(
                 coalesce(nullif(pg_catalog.current_setting('temp_tablespaces'), ''), '""'), ','))
             WITH ORDINALITY AS n(name, i)
        LEFT JOIN pg_catalog.pg_tablespace t
          ON t.spcname = CASE WHEN pg_catalog.btrim(n.name) <> '""'
                              THEN (pg_catalog.parse_ident(pg_catalog.btrim(n.name)))[1] END
        CROSS JOIN pg_catalog.pg_database d
        WHERE d.datname = pg_catalog.current_database()
          AND (pg_catalog.btrim(n.name) = '""' OR t.spcname = 'pg_default'
               OR pg_catalog.has_tablespace_privilege(t.oid, 'CREATE'))
        ORDER BY n.i LIMIT 1) AS tablespace
"""

# the heaps a scan of the source reads (itself, its partitions and inheritance children), their
# blocks now and their rows per block at the last ANALYZE (as the planner estimates)
_HEAPS_SQL = f"""
WITH RECURSIVE tree(oid) AS (
    SELECT {{source}}::regclass::oid
    UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree ON i.inhparent = tree.oid)
SELECT pg_catalog.pg_relation_size(l.oid) / pg_catalog.current_setting('block_size')::int8 AS blocks,
       CASE WHEN l.reltuples > 0 AND l.relpages > 0 THEN l.reltuples / l.relpages
            ELSE {UNKNOWN_DENSITY} END AS density
FROM tree JOIN pg_catalog.pg_class l ON l.oid = tree.oid AND l.relkind IN ('r', 'm')
"""
