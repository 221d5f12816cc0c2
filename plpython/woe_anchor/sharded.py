"""A fit over a source whose rows live on postgres_fdw servers: each shard aggregates its own rows.

PostgreSQL 15 decides by cost whether to push an aggregate down to a foreign
partition, and for the fit's grouped keys (expressions over t0 and the band
inputs) it estimates about one group per row, so it pulls the rows instead.
The fit therefore sends its aggregate statements to every shard itself,
through dblink and the foreign server's user mapping, all shards at once,
and adds up what comes back: counts and exact integer weight sums, so the
result is bit-identical to the same rows in one table. Percentiles, which do
not add up, are found by exact distributed selection: per-shard histograms
over a narrowing value range until the range holding a rank is small enough
to fetch. The quality figures come back as the scored rows grouped by their
codes, a few bytes a group, and the coordinator computes each group's logits
(grouped logits where a schema has too many codes for that). Scores are
written on the shards, next to their rows, unless scores_on_shards => false
(or a shard has no schema woe_anchor_scores the mapping's user may write to)
brings the rows here.
"""
from __future__ import annotations

import math
import os
import uuid

import numpy as np

from . import bands as b
from . import errors
from .catalog import EVAL_WINDOW
from .passes import Statements, array_lit, constrain_scores_sql
from .persist import STAGING_COLUMNS, staging_table, write_scores_here
from .rowset import coded_sets, percentile_cont, percentile_position, quality_key, statement_sets
from .sqlgen import float_lit, quote_ident, quote_literal, utc_iso_sql

# exact floats, the fit's time settings, only built-in names, and one snapshot per shard for the whole
# fit: its writes (scores_on_shards) commit when the fit succeeds and roll back when it does not
REMOTE_SETTINGS = ("SET extra_float_digits = 3; SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET jit = off; "
                   "SET search_path = pg_catalog, pg_temp; SET constraint_exclusion = partition; "
                   "BEGIN ISOLATION LEVEL REPEATABLE READ")
CUTOFF_OF_LATEST = f"max(u.m::timestamptz) - {EVAL_WINDOW}"  # docs/contract.md 3, as the local fit has it
SPI_OK_SELECT = 5       # plpy result status of a query (others are commands)
SHARDS_CHANGED = "Stop writes to the shards during the fit, or retry."
BUCKETS = 1024          # histogram buckets per narrowing round
FETCH_AT_MOST = 4096    # a value range with this few rows left is fetched and sorted
MAX_ROUNDS = 6
CODED_KEYS = 1 << 48    # quality_codes' keys below this: a gap and its flag fit passes.varint_sql


def not_sharded(qualified: str) -> errors.Refusal:
    """The refusal of scores_on_shards for a source with no leaf on a postgres_fdw server."""
    return errors.Refusal(errors.INVALID_PARAMETER_VALUE,
                          f"scores_on_shards => true needs a source partitioned over postgres_fdw servers "
                          f"(with dblink installed); {qualified} is not one",
                          hint="Pass scores_on_shards => false to write the scores here.")


def dblink_schema(plpy) -> str | None:
    """The quoted schema of the dblink extension, or None when it is not installed."""
    return plpy.execute("SELECT woe_anchor_internal.dblink() AS s")[0]["s"]


def open_fanout(plpy, src) -> "Fanout | None":
    """A fan-out over the source's shards; None for a local source, or (with a notice) without dblink."""
    if not src.leaves:
        return None
    schema = dblink_schema(plpy)
    if schema is None:
        plpy.notice(f"[shards] {src.qualified} has rows on postgres_fdw servers, but dblink is not installed: "
                    "the rows travel to this server (CREATE EXTENSION dblink to aggregate them on the shards)")
        return None
    return Fanout(plpy, src.leaves, schema)


class Fanout:
    """The transport: one statement per leaf of a source, on its shard through dblink (all shards at
    once) or, for a local leaf, here. A fan-out over local leaves only needs no dblink."""

    def __init__(self, plpy, leaves: tuple, dblink: str | None):
        self.plpy, self.leaves, self.dblink = plpy, leaves, dblink
        self.values_returned = 0  # groups (the longest array of a row) and rows that came back from shards
        self.bytes_returned = 0   # their text
        self.rounds = 0           # statements sent to every shard at once, one round after another
        self.succeeded = False    # set by the fit once its artifacts are written: shards then commit
        self.names = {}
        try:
            for i, leaf in enumerate(leaves):
                if leaf.server is not None:
                    name = quote_literal(f"woe_anchor_{os.getpid()}_{i}")
                    plpy.execute(f"SELECT {dblink}.dblink_connect({name}, {quote_literal(leaf.server)})")
                    self.names[i] = name
                    plpy.execute(f"SELECT {dblink}.dblink_exec({name}, {quote_literal(REMOTE_SETTINGS)})")
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        """End every shard's transaction (COMMIT after a successful fit, else ROLLBACK) and disconnect."""
        end = "COMMIT" if self.succeeded else "ROLLBACK"
        for name in self.names.values():
            try:
                self.plpy.execute(f"SELECT {self.dblink}.dblink_cancel_query({name}) "
                                  f"WHERE {self.dblink}.dblink_is_busy({name}) = 1")
                self.plpy.execute(f"SELECT {self.dblink}.dblink_exec({name}, {quote_literal(end)}, false)")
                self.plpy.execute(f"SELECT {self.dblink}.dblink_disconnect({name})")
            except Exception:  # noqa: BLE001 - closing after an error: the first error is what the caller sees
                pass
        self.names = {}

    def run(self, statement, columns: str) -> list[dict]:
        """``statement(relation)`` on every leaf; ``columns`` types its result, e.g. '(n bigint, w numeric)'."""
        return self.run_each([statement(leaf.relation) for leaf in self.leaves], columns)

    def run_each(self, statements: list, columns: str) -> list[dict]:
        """statements[i] on leaf i: sent to every shard first, so they all work at once."""
        return [row for rows in self.results(statements, columns) for row in rows]

    def results(self, statements: list, columns: str) -> list[list[dict]]:
        """Each leaf's rows of ``run_each``, in leaf order."""
        self.rounds += 1
        for i, name in self.names.items():
            self.plpy.debug(f"[shards] {self.leaves[i].server}: {statements[i]}")
            self.plpy.execute(f"SELECT {self.dblink}.dblink_send_query({name}, {quote_literal(statements[i])})")
        out = [[] for _ in self.leaves]
        for i, leaf in enumerate(self.leaves):
            if leaf.server is None:
                result = self.plpy.execute(statements[i])
                out[i] = list(result) if result.status() == SPI_OK_SELECT else [{"status": f"SELECT {result.nrows()}"}]
        for i, name in self.names.items():
            got = list(self.plpy.execute(f"SELECT * FROM {self.dblink}.dblink_get_result({name}) AS t{columns}"))
            # a sent query's results end with an empty one; reading it frees the connection
            self.plpy.execute(f"SELECT * FROM {self.dblink}.dblink_get_result({name}) AS t{columns}")
            self.values_returned += sum(max([len(v) for v in r.values() if isinstance(v, list)] or [1]) for r in got)
            self.bytes_returned += sum(_text_size(v) for r in got for v in r.values())
            out[i] = got
        return out



class ShardedRows:
    """The fit's reads of a source as set-based statements (``passes.Statements``) run on each leaf by
    a ``Fanout``, the parts added up here: the other implementation of ``readers.Rows``."""

    def __init__(self, plpy, fanout: Fanout, qualified: str):
        self.plpy, self.fanout, self.qualified = plpy, fanout, qualified
        self.leaves = fanout.leaves
        self.run, self.run_each, self.results = fanout.run, fanout.run_each, fanout.results
        self._n_train_sold = 0
        self._returned: list[tuple[str, int, int, int]] = []  # per pass: values, bytes the shards sent back; rounds
        self._mark = (0, 0, 0)
        self._scores_here = None  # why the scores were written here, when they were

    def close(self) -> None:
        self.fanout.close()

    def finish(self) -> None:
        """The shards' work is done: commit it and close their connections before anything else runs
        in this session (an activation hook must find no connection with the caller's shard rights)."""
        self.fanout.succeeded = True
        self.fanout.close()

    def default_cutoff(self) -> str | None:
        """max(finite sold_time) - EVAL_WINDOW, as the exact ISO text the fit uses (None: no sale)."""
        rows = self.run(lambda rel: f"SELECT {utc_iso_sql('max(s.sold_time) FILTER (WHERE isfinite(s.sold_time))')} "
                                    f"AS m FROM {rel} AS s", "(m text)")
        latest = [r["m"] for r in rows if r["m"] is not None]
        plan = self.plpy.prepare(f"SELECT {utc_iso_sql(CUTOFF_OF_LATEST)} AS t FROM unnest($1::text[]) AS u (m)",
                                 ["text[]"])
        return self.plpy.execute(plan, [latest])[0]["t"]

    def first_statistics(self, st: Statements) -> dict:
        """Every statistic at once (``Statements.stats`` over all leaves together)."""
        out = self._stats(st)
        self._n_train_sold = out["n_train_sold"]
        self._count("statistics")
        return out

    def all_statistics(self, st: Statements, plan: list, stats: dict) -> dict:
        return stats

    def prepare(self, schema, plan, learned: dict, ref_epoch: float, half_life_days) -> None:
        """Nothing to do here: each statement bands and weighs its rows itself."""

    def train_days(self, stats: dict) -> np.ndarray:
        return np.asarray(stats["days"], dtype=np.int64)

    def pack_sums(self, st: Statements, packs: list, fold: str, days, block_of_day, ref_epoch: float,
                  half_life_days) -> dict:
        """``Statements.sums`` over all leaves: groups added up, weights as exact integers first."""
        parts = self.run(lambda rel: st.over(rel).sums(packs, fold, ref_epoch, half_life_days),
                         "(grouping int[], key bigint[], n bigint[], sw numeric[])")
        self._count("sums")
        return add_up(parts, ("grouping", "key"), ("n", "sw"))

    def quality_sets(self, st: Statements, packs: list, fold: str, oof, final) -> dict:
        """The scored sets over all leaves: each shard groups its rows by their codes
        (``Statements.quality_codes``), or by their logits when the codes are too many."""
        key = quality_key(packs, oof)
        if key.size <= CODED_KEYS:
            parts = self.run(lambda rel: st.over(rel).quality_codes(packs, fold, key),
                             "(groups bigint, keys text, counts text)")
            self._count("quality", values=sum(int(p["groups"]) for p in parts))
            out = coded_sets(parts, key, packs, oof, final)
        else:
            parts = self.run(lambda rel: st.over(rel).quality(packs, fold, oof, final),
                             "(grouping int[], logit float8[], n_pos bigint[], n_neg bigint[])")
            self._count("quality")
            out = statement_sets(add_up(parts, ("grouping", "logit"), ("n_pos", "n_neg")))
        self._report()
        return out

    def _count(self, name: str, values: int | None = None) -> None:
        """What the shards returned in the pass just run: values (rows, or a row's groups), or the
        ``values`` it says it encoded; and the bytes of their text."""
        total_values, total_bytes = self.fanout.values_returned, self.fanout.bytes_returned
        self._returned.append((name, total_values - self._mark[0] if values is None else values,
                               total_bytes - self._mark[1], self.fanout.rounds - self._mark[2]))
        self._mark = (total_values, total_bytes, self.fanout.rounds)

    def _report(self) -> None:
        """The NOTICE of everything the shards sent back, every pass of the fit counted."""
        servers = sum(1 for leaf in self.leaves if leaf.server)
        if not servers:
            return
        passes = ", ".join(f"{name} {values} ({size / 1000:.1f} kB, {rounds} round{'' if rounds == 1 else 's'})"
                           for name, values, size, rounds in self._returned)
        self.plpy.notice(f"[shards] {servers} of {len(self.leaves)} leaves aggregated on their shards: they returned "
                         f"{sum(r[1] for r in self._returned)} values in {sum(r[2] for r in self._returned) / 1000:.1f} "
                         f"kB of text in {self.fanout.rounds} rounds for {self._n_train_sold} TRAIN SOLD rows: "
                         f"{passes}{self._scores_here or ''}")

    def write_scores(self, st: Statements, packs: list, fold: str, lookups, fold_ids, phases, on_shards: bool | None):
        """(local staging tables, shard tables, rows written): on the shards unless ``on_shards`` is
        false, or is NULL and a shard is not ready for them (then with a word in the NOTICE)."""
        servers = sorted({leaf.server for leaf in self.leaves if leaf.server})
        if on_shards and not servers:
            raise not_sharded(self.qualified)
        unready = [] if on_shards is False else [(s, why) for s in servers
                                                  if (why := self._scores_schema_unready(s, create=bool(on_shards)))]
        if unready and on_shards:
            raise errors.Refusal("42501", f"server {unready[0][0]} {unready[0][1]}, where scores_on_shards writes",
                                 hint="On that server, as a superuser: CREATE SCHEMA woe_anchor_scores; GRANT USAGE, "
                                      "CREATE ON SCHEMA woe_anchor_scores TO <the user your mapping names>; or pass "
                                      "scores_on_shards => false to write the scores here.")
        if unready:
            self._scores_here = ("; the scores were written here, their rows read through postgres_fdw (not counted "
                                 "above), as " + "; ".join(f"server {server} {why}" for server, why in unready))
        elif on_shards is False and servers:
            self._scores_here = ("; the scores were written here (scores_on_shards => false), their rows read through "
                                 "postgres_fdw (not counted above)")
        if on_shards is False or unready or not servers:
            return write_scores_here(self.plpy, st, packs, fold, lookups, fold_ids, phases)
        try:
            out = self._write_scores_on_shards(st, packs, fold, lookups, fold_ids, phases)
        except self.plpy.spiexceptions.UniqueViolation:
            errors.duplicate_keys(self.qualified)
        self._count("scores")
        return out

    def _stats(self, st: Statements) -> dict:
        """What ``Statements.stats`` returns over all leaves together."""
        schema = st.c.schema
        cats = [j for j, band in enumerate(schema.bands) if band.category is not None]
        scales = [i for i, rule in enumerate(schema.learning) if isinstance(rule, b.ScaleRule)]
        quantiles = {i: rule for i, rule in enumerate(schema.learning) if isinstance(rule, b.QuantileRule)}
        columns = ("(n_train_sold bigint, n_learned bigint, n_null_keys bigint, n_infinite bigint, days int[], "
                   "ref_epoch float8"
                   + "".join(f", n_{i} bigint, below_{i} bigint, under_{i} float8, over_{i} float8" for i in scales)
                   + "".join(f", values_{j} text[]" for j in cats)
                   + "".join(f", qn_{i} bigint, qneg_{i} bigint, qpos_{i} bigint, qlo_{i} float8, qhi_{i} float8"
                             for i in quantiles) + ")")
        parts = self.run(lambda rel: self._stats_and_counts(st.over(rel), quantiles), columns)
        out = {k: sum(int(p[k] or 0) for p in parts) for k in ("n_train_sold", "n_learned", "n_null_keys", "n_infinite")}
        out["days"] = sorted({d for p in parts for d in (p["days"] or ()) if d is not None}) or None
        out["ref_epoch"] = max((p["ref_epoch"] for p in parts if p["ref_epoch"] is not None), default=None)
        for j in cats:
            out[f"values_{j}"] = sorted({v for p in parts for v in (p[f"values_{j}"] or ())})
        for i in scales:  # counts add up, the values either side of the bound are the extremes
            for name, combine in (("n", sum), ("below", sum), ("under", max), ("over", min)):
                found = [p[f"{name}_{i}"] for p in parts if p[f"{name}_{i}"] is not None]
                out[f"{name}_{i}"] = combine(found) if found else None
        found = self._select(st, quantiles, parts)
        for i, rule in quantiles.items():
            n = out[f"n_{i}"] = sum(int(p[f"qn_{i}"] or 0) for p in parts)
            out[f"q_{i}"] = [percentile_cont(n, q, found[i].__getitem__) for q in (*rule.probs, 0.5)] if n else None
        return out

    @staticmethod
    def _search_input(st: Statements, rule: b.QuantileRule) -> tuple[str, str]:
        """(x, whether a row's x is one of the values a quantile rule's percentiles are taken over)."""
        x = st.c.input_in(rule.input, (rule.subset,) if rule.subset else None)
        return x, (st.learned + (f" AND {st.c.subset(rule.subset)}" if rule.subset else "") + f" AND {x} IS NOT NULL")

    def _stats_and_counts(self, st: Statements, quantiles: dict) -> str:
        """``Statements.stats`` without percentiles and, in the same round, per quantile rule the count
        of its values, of its infinities either side, and its finite extremes."""
        if not quantiles:
            return st.stats(percentiles=False)
        counts = []
        for i, rule in quantiles.items():
            x, ok = self._search_input(st, rule)
            finite = f"{ok} AND {x} > '-Infinity'::float8 AND {x} < 'Infinity'::float8"
            counts += [f"count(*) FILTER (WHERE {ok}) AS qn_{i}",
                       f"count(*) FILTER (WHERE {ok} AND {x} = '-Infinity'::float8) AS qneg_{i}",
                       f"count(*) FILTER (WHERE {ok} AND {x} = 'Infinity'::float8) AS qpos_{i}",
                       f"min({x}) FILTER (WHERE {finite}) AS qlo_{i}", f"max({x}) FILTER (WHERE {finite}) AS qhi_{i}"]
        return (f"SELECT * FROM ({st.stats(percentiles=False)}) AS a CROSS JOIN "
                f"(SELECT {', '.join(counts)} FROM {st.qualified} AS s WHERE {st.where}) AS q")

    def _select(self, st: Statements, quantiles: dict, parts: list) -> dict:
        """Per quantile rule, {rank: value} of its sorted values at every rank its percentiles need.

        Exact distributed selection, every rule and rank at once: a search is a value range
        holding a rank (its rule, lowest and highest value, the rank of its first value, its
        count). Each round sends one statement to every shard with a histogram per search that
        is still wide, and each rank moves to the bucket that holds it (the bucket's own extremes
        bound it); the ranges left are then fetched in one more round and sorted here.
        """
        found: dict = {i: {} for i in quantiles}
        searches: dict = {}  # (rule, lo, hi, below, count) -> ranks
        for i, rule in quantiles.items():
            n, neg, pos = (sum(int(p[f"{k}_{i}"] or 0) for p in parts) for k in ("qn", "qneg", "qpos"))
            lows = [p[f"qlo_{i}"] for p in parts if p[f"qlo_{i}"] is not None]
            highs = [p[f"qhi_{i}"] for p in parts if p[f"qhi_{i}"] is not None]
            for q in (*rule.probs, 0.5) if n else ():
                for rank in percentile_position(n, q)[1:]:
                    if rank < neg:
                        found[i][rank] = -math.inf
                    elif rank >= n - pos:
                        found[i][rank] = math.inf
                    else:
                        searches.setdefault((i, min(lows), max(highs), neg, n - neg - pos), set()).add(rank)
        for _ in range(MAX_ROUNDS):
            wide = {s: e for s in searches if (e := _edges(s[1], s[2], s[4])) is not None}
            if not wide:
                break
            histograms = self._histograms(st, quantiles, wide)
            narrowed: dict = {}
            for search, ranks in searches.items():
                if search not in wide:
                    narrowed.setdefault(search, set()).update(ranks)
                    continue
                i, _, _, below, count = search
                counts, mins, maxs = histograms[search]
                if int(counts.sum()) != count:
                    errors.source_changed(st.qualified, SHARDS_CHANGED)
                starts = below + np.concatenate(([0], np.cumsum(counts)[:-1]))
                for rank in ranks:
                    bucket = int(np.searchsorted(starts + counts, rank, side="right"))
                    if bucket >= len(counts) or counts[bucket] == 0:
                        errors.source_changed(st.qualified, SHARDS_CHANGED)
                    # the bucket's own smallest and largest values bound what is left (ties end the search)
                    key = (i, float(mins[bucket]), float(maxs[bucket]), int(starts[bucket]), int(counts[bucket]))
                    narrowed.setdefault(key, set()).add(rank)
            searches = narrowed
        fetch = [s for s in searches if s[1] != s[2]]
        values = self._fetch(st, quantiles, fetch) if fetch else {}
        for search, ranks in searches.items():
            i, lo, hi, below, count = search
            if lo != hi and len(values[search]) != count:
                errors.source_changed(st.qualified, SHARDS_CHANGED)
            for rank in ranks:
                # with lo == hi every value left is this one
                found[i][rank] = lo if lo == hi else float(values[search][rank - below])
        return found

    def _search_rows(self, st: Statements, quantiles: dict, searches: list) -> str:
        """FROM ... WHERE of the source's values in a search's range, as (x, t): t the search's index
        (a rule's searches are disjoint ranges, buckets of one histogram: a value is in one at most).
        Each rule's input is computed once a row."""
        rules = sorted({s[0] for s in searches})
        reads = ", ".join(f"{x} AS x{i}, {ok} AS ok{i}" for i in rules for x, ok in [self._search_input(st, quantiles[i])])
        values = []
        for i in rules:
            whens = " ".join(f"WHEN r.ok{i} AND r.x{i} >= {float_lit(lo)} AND r.x{i} <= {float_lit(hi)} THEN {t}"
                             for t, (rule, lo, hi, _, _) in enumerate(searches) if rule == i)
            values.append(f"(r.x{i}, CASE {whens} END)")
        return (f"(SELECT {reads} FROM {st.qualified} AS s WHERE {st.where} OFFSET 0) AS r "
                f"CROSS JOIN LATERAL (VALUES {', '.join(values)}) AS v (x, t) WHERE v.t IS NOT NULL")

    def _histograms(self, st: Statements, quantiles: dict, wide: dict) -> dict:
        """search -> (rows, smallest, largest value) per bucket of its edges, all shards added up."""
        searches = list(wide)
        edges = " ".join(f"WHEN {t} THEN {array_lit(wide[search], 'float8')}" for t, search in enumerate(searches))
        rows = self.run(lambda rel: f"SELECT array_agg(g.t) AS t, array_agg(g.b) AS b, array_agg(g.c) AS c, "
                                    f"array_agg(g.lo) AS lo, array_agg(g.hi) AS hi FROM (SELECT v.t, "
                                    f"width_bucket(v.x, CASE v.t {edges} END) AS b, count(*) AS c, min(v.x) AS lo, "
                                    f"max(v.x) AS hi FROM {self._search_rows(st.over(rel), quantiles, searches)} "
                                    f"GROUP BY 1, 2) AS g",
                        "(t int[], b int[], c bigint[], lo float8[], hi float8[])")
        t, b, c = (np.concatenate([np.asarray(r[k] or [], dtype=np.int64) for r in rows]) for k in ("t", "b", "c"))
        lo, hi = (np.concatenate([np.asarray(r[k] or [], dtype=np.float64) for r in rows]) for k in ("lo", "hi"))
        out = {}
        for k, search in enumerate(searches):
            size, mine = len(wide[search]) + 1, t == k
            counts, mins, maxs = np.zeros(size, dtype=np.int64), np.full(size, np.inf), np.full(size, -np.inf)
            np.add.at(counts, b[mine], c[mine])
            np.minimum.at(mins, b[mine], lo[mine])
            np.maximum.at(maxs, b[mine], hi[mine])
            out[search] = (counts, mins, maxs)
        return out

    def _fetch(self, st: Statements, quantiles: dict, searches: list) -> dict:
        """search -> the sorted values of its range, from every shard."""
        rows = self.run(lambda rel: f"SELECT array_agg(v.t) AS t, array_agg(v.x) AS x "
                                    f"FROM {self._search_rows(st.over(rel), quantiles, searches)}",
                        "(t int[], x float8[])")
        t = np.concatenate([np.asarray(r["t"] or [], dtype=np.int64) for r in rows])
        x = np.concatenate([np.asarray(r["x"] or [], dtype=np.float64) for r in rows])
        return {search: np.sort(x[t == k]) for k, search in enumerate(searches)}

    def _write_scores_on_shards(self, st: Statements, packs: list, fold: str, lookups, fold_ids, phases):
        """Scores written next to the rows they score: (local staging tables, shard tables, rows written).

        Each shard runs a CREATE TABLE AS of its own rows' scores into schema
        woe_anchor_scores there and builds its primary key, all shards at once;
        a local leaf's rows go to a staging table of the caller's, as an
        unsharded fit's do. Nothing but the statements crosses the network.
        """
        # a shard may serve other coordinators (or a restored copy of this one): names of its own
        tag = uuid.uuid4().hex[:12]
        remote = {i: f"woe_anchor_scores_v1_{tag}_p{i}" for i, leaf in enumerate(self.leaves) if leaf.server}
        target = [f"woe_anchor_scores.{quote_ident(remote[i])}" if i in remote else staging_table(self.plpy)
                  for i in range(len(self.leaves))]
        created = self.results([st.over(leaf.relation).scores(packs, target[i], fold, *lookups, fold_ids)
                                for i, leaf in enumerate(self.leaves)], "(status text)")
        written = [int(rows[0]["status"].split()[-1]) for rows in created]
        phases.done("scores_write")
        self.run_each([constrain_scores_sql(target[i]) if i in remote else "SELECT"
                       for i in range(len(self.leaves))], "(status text)")
        phases.done("scores_index")
        shard_tables = [{"server": self.leaves[i].server, "remote_table": name, "n_rows": written[i]}
                        for i, name in remote.items()]
        return [t for i, t in enumerate(target) if i not in remote], shard_tables, sum(written)

    def _scores_schema_unready(self, server: str, create: bool) -> str | None:
        """Why a shard cannot take score tables, or None. Schema woe_anchor_scores there must be a
        superuser's: its owner could rename it and put other objects under the names that readers of
        the model's tables look up. With ``create`` (scores_on_shards => true), a superuser's mapping
        creates it (committed at once, outside the fit's shard transactions); a fit left to choose
        does no DDL there. The mapping's user must be allowed to use it and create tables in it."""
        name = quote_literal(f"woe_anchor_schema_{uuid.uuid4().hex[:16]}")
        dblink = self.fanout.dblink
        self.plpy.execute(f"SELECT {dblink}.dblink_connect({name}, {quote_literal(server)})")
        try:
            if create:
                self.plpy.execute(f"SELECT {dblink}.dblink_exec({name}, {quote_literal(CREATE_SCORES_SCHEMA)})")
            ready = self.plpy.execute(f"SELECT t.owned, t.writable FROM {dblink}.dblink({name}, "
                                      f"{quote_literal(SCORES_SCHEMA_READY)}) AS t (owned boolean, writable boolean)")[0]
        finally:
            self.plpy.execute(f"SELECT {dblink}.dblink_disconnect({name})")
        if not ready["owned"]:
            return "has no schema woe_anchor_scores owned by a superuser"
        if not ready["writable"]:
            return "does not let the user of your mapping use schema woe_anchor_scores and create tables in it"
        return None


def _text_size(value) -> int:
    """The size of a value as PostgreSQL's text output sent it (an array as {a,b}, NULL as nothing)."""
    if value is None:
        return 0
    if isinstance(value, list):
        return 1 + sum(_text_size(v) + 1 for v in value) if value else 2
    return len(str(value))


def _edges(lo: float, hi: float, count: int) -> np.ndarray | None:
    """The inner edges of a histogram over [lo, hi], or None when the range is to be fetched (few
    values left, or no float between its extremes) or holds one value."""
    if lo == hi or count <= FETCH_AT_MOST:
        return None
    # halves first: hi - lo may overflow for values near the float8 limits
    edges = np.unique(2.0 * np.linspace(lo / 2.0, hi / 2.0, BUCKETS + 1)[1:-1])
    edges = edges[(edges > lo) & (edges < hi)]
    return edges if len(edges) else None


def add_up(parts: list, keys: tuple, counts: tuple) -> dict:
    """Per-leaf rows of parallel arrays merged into one: the ``counts`` (exact integers) of equal keys added."""
    total: dict = {}
    for p in parts:
        for row in zip(*(p[c] or () for c in keys + counts)):
            key, values = row[:len(keys)], row[len(keys):]
            total[key] = [a + int(v) for a, v in zip(total.get(key, [0] * len(counts)), values)]
    # callers order the groups themselves (by key, by logit): no sort here, it is a hot loop
    return {c: [k[i] for k in total] for i, c in enumerate(keys)} | \
        {c: [v[i] for v in total.values()] for i, c in enumerate(counts)}


# What a shard's score table must be before anyone reads it: a plain table of exactly the score
# columns, without row-level security, inheritance, statistics objects or indexes on expressions or
# with predicates, so neither planning nor reading it runs code of its owner's (the role whose user
# mapping wrote it; its checks are not planned: constraint_exclusion stays 'partition'). Checked
# under a lock that holds until the read is done.
# schema woe_anchor_scores on a shard: created only by a superuser's mapping, and read or written
# only when a superuser owns it (no one else can rename it or take its name)
CREATE_SCORES_SCHEMA = ("DO $$ BEGIN IF (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user) "
                        "THEN CREATE SCHEMA IF NOT EXISTS woe_anchor_scores; END IF; END $$")
SCORES_SCHEMA_READY = ("SELECT coalesce((SELECT r.rolsuper FROM pg_catalog.pg_namespace AS n JOIN pg_catalog.pg_roles AS r "
                       "ON r.oid = n.nspowner WHERE n.nspname = 'woe_anchor_scores'), false) AS owned, "
                       "coalesce(pg_catalog.has_schema_privilege(pg_catalog.to_regnamespace('woe_anchor_scores')::oid, 'USAGE') "
                       "AND pg_catalog.has_schema_privilege(pg_catalog.to_regnamespace('woe_anchor_scores')::oid, "
                       "'CREATE'), false) AS writable")
_SHARD_TABLE_CHECK = """
SELECT c.relkind = 'r' AND NOT c.relrowsecurity
       AND (SELECT r.rolsuper FROM pg_namespace AS n JOIN pg_roles AS r ON r.oid = n.nspowner
            WHERE n.oid = c.relnamespace)
       AND (SELECT array_agg(a.attname::text || ' ' || format_type(a.atttypid, NULL) ORDER BY a.attnum)
            FROM pg_attribute AS a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) = {columns}
       AND NOT EXISTS (SELECT FROM pg_index AS i WHERE i.indrelid = c.oid
                       AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL))
       AND NOT EXISTS (SELECT FROM pg_statistic_ext AS s WHERE s.stxrelid = c.oid)
       AND NOT EXISTS (SELECT FROM pg_inherits AS i WHERE c.oid IN (i.inhrelid, i.inhparent))
FROM pg_class AS c WHERE c.oid = {table}::regclass
"""
SHARD_READS = "woe_anchor_read_"  # dblink connection names of open shard-table reads


def shard_scores_sql(plpy, server: str, remote_table: str) -> str:
    """A guarded read of one shard score table, through dblink and the caller's own user mapping.

    Opens a connection (named SHARD_READS...) whose transaction locks the table
    and checks that it is still a plain table of the score columns; the
    statement returned reads it there. ``woe_anchor_internal.end_shard_reads``
    closes such connections once the statement has run.
    """
    dblink = dblink_schema(plpy)
    if dblink is None:
        raise errors.Refusal(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                              f"this model's scores live on server {server}: reading them needs dblink",
                              hint="CREATE EXTENSION dblink;")
    name = quote_literal(f"{SHARD_READS}{uuid.uuid4().hex[:16]}")
    table = f"woe_anchor_scores.{quote_ident(remote_table)}"
    columns = "ARRAY[" + ", ".join(quote_literal(f"{c} {t}") for c, t in STAGING_COLUMNS) + "]"
    plpy.execute(f"SELECT {dblink}.dblink_connect({name}, {quote_literal(server)})")
    plpy.execute(f"SELECT {dblink}.dblink_exec({name}, {quote_literal(REMOTE_SETTINGS)})")
    plpy.execute(f"SELECT {dblink}.dblink_exec({name}, {quote_literal(f'LOCK TABLE {table} IN ACCESS SHARE MODE')})")
    check = _SHARD_TABLE_CHECK.format(columns=columns, table=quote_literal(table))
    ok = plpy.execute(f"SELECT t.ok FROM {dblink}.dblink({name}, {quote_literal(check)}) AS t (ok boolean)")
    if not ok or not ok[0]["ok"]:
        raise errors.Refusal("42501", f"table woe_anchor_scores.{remote_table} on server {server} is no longer "
                                       "a plain score table in a superuser's schema: not read",
                              hint="Its owner on the shard changed it; drop and refit the model.")
    select = f"SELECT {', '.join(c for c, _ in STAGING_COLUMNS)} FROM {table}"
    types = ", ".join(f"{c} {t}" for c, t in STAGING_COLUMNS)
    return f"SELECT * FROM {dblink}.dblink({name}, {quote_literal(select)}) AS r ({types})"


def end_shard_reads(plpy) -> None:
    """Close every connection ``shard_scores_sql`` opened in this session. Closing is local and
    immediate (the shard rolls the read back when its client goes), so it also runs, unbounded by
    any timeout, after a statement was cancelled, without waiting on a shard that hangs."""
    dblink = dblink_schema(plpy)
    if dblink is None:
        return
    for row in plpy.execute(f"SELECT c FROM unnest({dblink}.dblink_get_connections()) AS c"):
        if row["c"].startswith(SHARD_READS):
            plpy.execute(f"SELECT {dblink}.dblink_disconnect({quote_literal(row['c'])})")
