"""The fit's few set-based statements over the source, whatever n_folds is.

1. ``stats``: row counts, the weight reference time, the inputs of the
   learned thresholds and category values (one aggregate over TRAIN SOLD):
   a sharded fit's statistics, and a local fit's category values.
2. ``rows``: every TRAIN SOLD and eval-window row as (label flags, every
   pack's combination, t0 day, label moment, learned thresholds' inputs),
   in binary columns: numpy learns the thresholds, puts the days into folds,
   weighs the rows and adds up every fold's statistics, and the quality
   figures follow from the same rows once the mapping is known (see
   ``rowset.py``). Nearly every row is a combination of its own, so a GROUP
   BY would cost a hash table as large as the rows and save nothing.
3. ``scores``: each TRAIN SOLD row scored with its fold's mapping, one
   lookup per pack, written by one CREATE TABLE AS.

A sharded source runs ``sums`` (per-pack groups: few values cross the
network) and, after the fit, ``quality_codes`` (the scored sets' rows grouped
by their codes, a few bytes a group) on its shards instead of ``rows``;
``quality`` (grouped logits) where a schema's codes are too many for that.

Statements are plain text with every value rendered as an exact literal
(numbers by ``float_lit``, text by ``quote_literal``): SPI runs unprepared
statements with parallel plans, so both cores band the rows.
"""
from __future__ import annotations

import contextlib
import copy
import os

from . import bands as b
from . import packs as pk
from . import errors
from .catalog import COMPILED_PASS_SETTINGS, EVAL_WINDOW
from .sqlgen import Compiler, float_lit, quote_literal

# floor of epoch days: the UTC date as an integer, cheaper than AT TIME ZONE + ::date
DAY_SQL = "floor(date_part('epoch', s.t0) / 86400::float8)::int"
# epoch days shifted into 0 .. 2^DAY_BITS - 1 inside an int8 word of the per-row read: every finite
# timestamptz's day (-2,440,588 in 4714 BC .. 106,762,940 in 294276 AD) fits, in 27 bits of the word
DAY_OFFSET, DAY_BITS = 2 ** 22, 27
# the per-row read's marks: a NULL key, an infinite timestamp, then SUBSET << k for subset k
NULL_KEY, INFINITE, SUBSET = 1, 2, 4
# 0.5 ^ x underflows to 0 from here on, where PostgreSQL raises an error
UNDERFLOW_EXPONENT = 1075
# Weights (<= 1) are summed as exact integers of 2^-61: the sums do not depend on row
# order, so parallel plans, and any split of the rows, give bit-identical artifacts.
FIXED_POINT_BITS = 61
FIXED_POINT = str(2 ** FIXED_POINT_BITS)


@contextlib.contextmanager
def workers_beside_a_busy_leader(plpy):
    """max_parallel_workers_per_gather held to the cores the leader leaves, for the statements inside.

    The leaders of these passes are busy: the fit's read appends every row's bytes and its write
    inserts every row, realized's adds every row to its week and drift's counts every row's
    combinations. A worker past the other cores only takes turns with the leader (on 2 cores, the
    fit's 1M write took 0.88 s with one worker against 1.06 s with two, realized 0.85 s against
    0.94 s). Lowered only, never raised, and put back as it was: the change is LOCAL, so an error
    undoes it with the transaction (or the caller's subtransaction).
    """
    workers = int(plpy.execute("SELECT current_setting('max_parallel_workers_per_gather') AS w")[0]["w"])
    cap = max(len(os.sched_getaffinity(0)) - 1, 0)
    if workers <= cap:
        yield
        return
    setting = plpy.prepare("SELECT set_config('max_parallel_workers_per_gather', $1, true)", ["text"])
    plpy.execute(setting, [str(cap)])
    yield
    plpy.execute(setting, [str(workers)])


# compiled passes are turned off for a session by this setting, besides the configuration's jit
JIT_SETTING = "woe_anchor.jit"


@contextlib.contextmanager
def compiled_pass(plpy, always: bool = False):
    """The statement inside compiled by the JIT (optimized, not inlined) when its planned cost
    passes ``catalog.COMPILED_PASS_COST``; or ``always``, optimized and inlined: a read known to
    be large whose plan cannot tell, as a TID range scan's cannot, and which one process runs.

    The routines around these passes declare the JIT settings (``@COMPILED_PASSES@``: jit off,
    ``catalog.COMPILED_PASS_SETTINGS``), so PostgreSQL puts the caller's back when they return;
    this turns jit on for one statement and off again. Nothing compiles when the configuration
    turns the JIT off (``jit = off`` or ``jit_above_cost = -1`` in the server's, database's or
    role's settings or the connection's options), or the session sets ``woe_anchor.jit = off``; a
    server without a JIT provider compiles nothing either way.
    """
    state = plpy.execute(
        "SELECT (SELECT s.reset_val = 'on' FROM pg_catalog.pg_settings AS s WHERE s.name = 'jit') AND "
        "(SELECT s.reset_val <> '-1' FROM pg_catalog.pg_settings AS s WHERE s.name = 'jit_above_cost') "
        f"AS configured, pg_catalog.current_setting('{JIT_SETTING}', true) AS chosen")[0]
    chosen = state["chosen"] or "on"
    if chosen not in ("on", "off"):
        raise errors.Refusal(errors.INVALID_PARAMETER_VALUE, f"{JIT_SETTING} must be 'on' or 'off', not {chosen!r}")
    if not state["configured"] or chosen == "off":
        yield
        return
    plpy.execute("SET LOCAL jit = on"
                 + "".join(f"; SET LOCAL {name} = 0" for name in COMPILED_PASS_SETTINGS if always))
    yield
    plpy.execute("SET LOCAL jit = off" + "".join(f"; SET LOCAL {name} = {value}"
                                                  for name, value in COMPILED_PASS_SETTINGS.items() if always))


def array_lit(values, kind: str, width: int | None = None) -> str:
    """An exact array literal of our own numbers (never caller text); with ``width``, a
    two-dimensional one of rows of ``width`` values."""
    if kind == "float8":
        items = [float_lit(v).split("'")[1] for v in values]
    else:
        items = [str(int(v)) for v in values]
    if width is not None:
        items = ["{" + ",".join(items[k:k + width]) + "}" for k in range(0, len(items), width)]
    return f"('{{{','.join(items)}}}'::{kind}[])"


def label_sql(reads: dict, slow_threshold_hours: float) -> str:
    """docs/contract.md 3: y = 1 iff duration_hours >= the threshold or final_status = 'older21days'
    (of the source row ``s``; never NULL)."""
    return (f"(coalesce({reads['duration_hours']} >= {float_lit(slow_threshold_hours)}, false) "
            f"OR coalesce(s.final_status = 'older21days', false))")


class Statements:
    """The statements of one fit over one source, with its cutoff and label parameters."""

    def __init__(self, compiler: Compiler, qualified: str, cutoff_literal: str,
                 slow_threshold_hours: float, min_duration_hours: float):
        self.c = compiler
        self.qualified = qualified
        dur = compiler.reads["duration_hours"]
        self.cutoff = cutoff_literal
        self.where = f"s.sold_time IS NOT NULL AND s.sold_time <= {cutoff_literal}"
        # TRAIN SOLD and the eval window after it (docs/contract.md 3)
        self.window = f"s.sold_time IS NOT NULL AND s.sold_time <= {cutoff_literal} + {EVAL_WINDOW}"
        slow = float_lit(slow_threshold_hours)
        self.y = label_sql(compiler.reads, slow_threshold_hours)
        self.learned = f"coalesce({dur} >= {float_lit(min_duration_hours)}, false)"
        # docs/contract.md 4: seconds since epoch of the label's moment
        self.label_ts = (f"CASE WHEN {self.y} THEN date_part('epoch', s.t0) + {slow} * 3600::float8 "
                         f"ELSE date_part('epoch', s.sold_time) END")
        # the rows a fit refuses, never NULL themselves (isfinite(NULL) is NULL)
        self.null_key = "(s.generation IS NULL OR s.listing_id IS NULL OR s.t0 IS NULL)"
        self.infinite = "coalesce(NOT (isfinite(s.t0) AND isfinite(s.sold_time)), false)"

    def over(self, relation: str) -> "Statements":
        """The same statements over another relation (a shard's table, or a local partition)."""
        twin = copy.copy(self)
        twin.qualified = relation
        return twin

    def stats(self, percentiles: bool = True, days: bool = True) -> str:
        """Counts, ref, learned-threshold inputs and category values over TRAIN SOLD (one read).

        Per learned rule i, a scale rule: ``n_i`` values of |input|, ``below_i``
        of them under the rule's bound, the largest of those (``under_i``) and
        the smallest of the rest (``over_i``), which settle the median's side
        of the bound without sorting (``median_below``); a quantile rule:
        ``n_i`` and ``q_i`` (its probs, then the median). Per category band j:
        ``values_j``, the distinct non-NULL values of its learned rows. Without
        ``percentiles`` (one shard's part of a sharded fit) the quantile rules
        are left out; without ``days`` (a local fit: ``rows`` reads them) the
        distinct t0 days are.
        """
        schema = self.c.schema
        learned = "r.learned"
        inner, outer = [], []
        for i, rule in enumerate(schema.learning):
            if isinstance(rule, b.ScaleRule):
                inner.append(f"abs({self.c.input(rule.input)}) AS x{i}")
                under = f"{learned} AND r.x{i} < {float_lit(rule.below)}"
                outer += [f"count(r.x{i}) FILTER (WHERE {learned}) AS n_{i}",
                          f"count(*) FILTER (WHERE {under}) AS below_{i}",
                          f"max(r.x{i}) FILTER (WHERE {under}) AS under_{i}",
                          f"min(r.x{i}) FILTER (WHERE {learned} AND r.x{i} >= {float_lit(rule.below)}) AS over_{i}"]
            elif percentiles:
                inner.append(f"{self.c.input_in(rule.input, (rule.subset,) if rule.subset else None)} AS x{i}")
                where = learned + (f" AND r.in_{rule.subset}" if rule.subset else "")
                probs = array_lit(list(rule.probs) + [0.5], "float8")
                outer.append(f"count(r.x{i}) FILTER (WHERE {where}) AS n_{i}")
                outer.append(f"percentile_cont({probs}) WITHIN GROUP (ORDER BY r.x{i}) "
                             f"FILTER (WHERE {where}) AS q_{i}")
        for j, band in enumerate(schema.bands):
            if band.category is not None:
                inner.append(f"{self.c.category_read(band)} AS v{j}")
                where = learned + (f" AND r.in_{band.subset}" if band.subset else "")
                outer.append(f"array_agg(DISTINCT r.v{j}) FILTER (WHERE {where} AND r.v{j} IS NOT NULL) AS values_{j}")
        used = {r.subset for r in schema.learning if percentiles and isinstance(r, b.QuantileRule) and r.subset}
        used |= {band.subset for band in schema.bands if band.category is not None and band.subset}
        inner += [f"{self.c.subset(name)} AS in_{name}" for name in sorted(used)]
        day = f"\n             CASE WHEN isfinite(s.t0) THEN {DAY_SQL} END AS day," if days else ""
        return f"""
SELECT count(*) AS n_train_sold,
       count(*) FILTER (WHERE r.learned) AS n_learned,
       count(*) FILTER (WHERE r.null_key) AS n_null_keys,
       count(*) FILTER (WHERE r.infinite) AS n_infinite,
       {'array_agg(DISTINCT r.day)' if days else 'NULL::int[]'} AS days,
       max(r.label_ts) FILTER (WHERE r.learned) AS ref_epoch{''.join(f',{chr(10)}       {o}' for o in outer)}
FROM (SELECT {self.learned} AS learned,{day}
             {self.infinite} AS infinite,
             {self.null_key} AS null_key,
             {self.label_ts} AS label_ts{''.join(f',{chr(10)}             {x}' for x in inner)}
      FROM {self.qualified} AS s
      WHERE {self.where}) AS r
"""

    def weight(self, ref_epoch: float, half_life_days: float | None) -> str:
        """w_raw * 2^61 as an exact integer (docs/contract.md 4): 0.5 ^ (age_days / half_life - 61).

        The exponent is capped where 0.5 ^ x underflows (PostgreSQL raises there,
        numpy gives 0); capped weights are far below 2^-61 and round to 0 anyway.
        """
        if half_life_days is None or half_life_days <= 0:
            return f"{FIXED_POINT}::int8"
        x = (f"greatest(0::float8, {float_lit(ref_epoch)} - {self.label_ts}) / 86400::float8 "
             f"/ {float_lit(half_life_days)}")
        return (f"(0.5::float8 ^ (least({x}, {UNDERFLOW_EXPONENT - 1}::float8) "
                f"- {FIXED_POINT_BITS}::float8))::int8")

    @staticmethod
    def fold_of_row(fold_starts: list[str]) -> str:
        """A row's fold: how many fold start instants (UTC midnights, ascending) t0 has reached."""
        if not fold_starts:
            return "0"
        edges = ", ".join(f"{quote_literal(t)}::timestamptz" for t in fold_starts)
        return f"width_bucket(s.t0, ARRAY[{edges}])"

    def sums(self, packs: list[pk.Pack], fold: str, ref_epoch: float, half_life_days: float | None) -> str:
        """Per pack, per key ((fold * size + combination) * 4 + 2y + learned): rows and Σw (a shard's part).

        Rows not learned from have key fold * size * 4: only their count matters.

        Each row's expressions are computed once, in parallel workers: the
        OFFSET 0 fences keep the planner from copying them into every
        aggregate, and make every grouping set a plain column whose unknown
        statistics it estimates small, so it hashes all sets in one pass. The
        result comes back as one row of arrays. The weight sums are the exact
        numeric integers (of 2^-61), for the coordinator to add up.
        """
        combos = combinations_sql(self.c, packs)
        names = [f"k{i}" for i in range(len(packs))]
        w = self.weight(ref_epoch, half_life_days)
        # rows not learned from only count towards their fold: one group per fold, not per combination
        keys = ", ".join(f"((r.fold * {p.size} + CASE WHEN r.flags > 0 THEN r.c{i} ELSE 0 END) * 4 + r.flags) AS {n}"
                         for i, (p, n) in enumerate(zip(packs, names)))
        return f"""
SELECT array_agg(g.grouping) AS grouping, array_agg(g.key) AS key,
       array_agg(g.n) AS n, array_agg(g.sw) AS sw
FROM (SELECT GROUPING({', '.join('k.' + n for n in names)}) AS grouping,
             coalesce({', '.join('k.' + n for n in names)}) AS key,
             count(*) AS n, coalesce(sum(k.w), 0) AS sw
      FROM (SELECT {keys}, r.w
            FROM (SELECT ({fold})::bigint AS fold,
                         CASE WHEN {self.learned} THEN ({self.y})::int * 2 + 1 ELSE 0 END AS flags,
                         CASE WHEN {self.learned} THEN {w} END AS w,
                         {', '.join(f'{c} AS c{i}' for i, c in enumerate(combos))}
                  FROM {self.qualified} AS s
                  WHERE {self.where}
                  OFFSET 0) AS r
            OFFSET 0) AS k
      GROUP BY GROUPING SETS ({', '.join(f'(k.{n})' for n in names)})) AS g
"""

    def rows(self, packs: list[pk.Pack], flags_and_combos: list[pk.Radix], deferred: set[int],
             inputs: list, read_in: list, subsets: list[str], ranges: list[tuple[int, int]] | None = None) -> str:
        """Every TRAIN SOLD and eval-window row, 8 bytes per row in each of a few binary columns.

        ``w<i>``: the int8 words of (flags, marks, day, every pack's
        combination): flags = 4 train + 2 y + learned; marks = NULL_KEY,
        INFINITE, SUBSET << k in ``subsets[k]``; day = the UTC day of t0
        (epoch days) + DAY_OFFSET, in DAY_BITS bits; code 0 for the ``deferred`` bands (those with
        learned thresholds, banded in numpy once the thresholds are known).
        ``label_ts``: docs/contract.md 4's label moment (epoch seconds); ``x<k>``:
        ``inputs[k]`` as float8 on the rows of the subsets ``read_in[k]`` (None: every row), NaN
        for NULL and elsewhere. Each column is the rows'
        big-endian values (int8send/float8send) concatenated by string_agg,
        which skips NULLs: no value here is ever NULL, so the columns stay
        aligned. The words are computed below the Gather, by the parallel
        workers; the leader only appends bytes.

        ``ranges``: (first block, block after the last) of every heap: one row
        per range, (``n``, its number, and the columns above), each range's rows
        read by a TID range scan, with no parallel workers; without them, one
        row of every row.
        """
        combos = combinations_sql(self.c, packs, deferred)
        parts = ["CASE WHEN f.train THEN 4 + f.y * 2 + f.learned::int ELSE f.y * 2 END", "f.marks",
                 f"f.day::int8 + {DAY_OFFSET}"] + [f"f.c{i}" for i in range(len(packs))]
        keys = pk.words_sql(flags_and_combos, parts)
        marks = " + ".join([f"{self.null_key}::int * {NULL_KEY}", f"{self.infinite}::int * {INFINITE}"]
                           + [f"({self.c.subset(name)})::int * {SUBSET << k}" for k, name in enumerate(subsets)])
        values = [f"coalesce({self.c.input_in(inp, where)}, 'NaN'::float8) AS x{k}"
                  for k, (inp, where) in enumerate(zip(inputs, read_in))]
        columns = ([(f"w{i}", "int8send") for i in range(len(keys))] + [("label_ts", "float8send")]
                   + [(f"x{k}", "float8send") for k in range(len(inputs))])
        in_range = " AND s.ctid >= k.lo AND s.ctid < k.hi" if ranges else ""
        read = f"""
SELECT {', '.join(f'string_agg({send}(r.{n}), NULL) AS {n}' for n, send in columns)}
FROM (SELECT {', '.join([f'{key} AS w{i}' for i, key in enumerate(keys)] + ['f.label_ts']
                        + [f'f.x{k}' for k in range(len(inputs))])}
      FROM (SELECT s.sold_time <= {self.cutoff} AS train, ({self.y})::int AS y, {self.learned} AS learned,
                   coalesce(CASE WHEN isfinite(s.t0) THEN {DAY_SQL} END, 0) AS day,
                   coalesce({self.label_ts}, 'NaN'::float8) AS label_ts, {marks} AS marks,
                   {', '.join(values + [f'{c} AS c{i}' for i, c in enumerate(combos)])}
            FROM {self.qualified} AS s
            WHERE {self.window}{in_range}) AS f
      OFFSET 0) AS r
"""
        if not ranges:
            return read
        listed = ", ".join(f"({n}, '({lo},0)'::tid, '({hi},0)'::tid)" for n, (lo, hi) in enumerate(ranges))
        return f"SELECT k.n, a.* FROM (VALUES {listed}) AS k(n, lo, hi) CROSS JOIN LATERAL ({read}) AS a"

    def quality(self, packs: list[pk.Pack], fold: str, oof: tuple | None, final: tuple) -> str:
        """Distinct logits with their positive and negative row counts, for three scored sets (a shard's part).

        GROUPING() bits, left to right: OOF on TRAIN SOLD (when ``oof``), the
        final mapping in-sample on TRAIN SOLD, the final mapping on
        eval_sold_last_7d. ``oof`` and ``final`` are (base_logit, tables).
        """
        combos = combinations_sql(self.c, packs)
        oof_logit = logit_sql(packs, *oof) if oof else "NULL::float8"
        final_logit = logit_sql(packs, *final, fit="0")
        return f"""
SELECT array_agg(g.grouping) AS grouping, array_agg(g.l) AS logit,
       array_agg(g.n_pos) AS n_pos, array_agg(g.n_neg) AS n_neg
FROM (SELECT GROUPING(k.oof, k.ins, k.ev) AS grouping, coalesce(k.oof, k.ins, k.ev) AS l,
             count(*) FILTER (WHERE k.y) AS n_pos, count(*) FILTER (WHERE NOT k.y) AS n_neg
      FROM (SELECT CASE WHEN r.train THEN {oof_logit} END AS oof,
                   CASE WHEN r.train THEN {final_logit} END AS ins,
                   CASE WHEN NOT r.train THEN {final_logit} END AS ev, r.y
            FROM (SELECT s.sold_time <= {self.cutoff} AS train, {self.y} AS y, ({fold})::int AS f,
                         {', '.join(f'{c} AS c{i}' for i, c in enumerate(combos))}
                  FROM {self.qualified} AS s
                  WHERE {self.window}
                  OFFSET 0) AS r
            OFFSET 0) AS k
      GROUP BY GROUPING SETS ((k.oof), (k.ins), (k.ev))) AS g
"""

    def quality_codes(self, packs: list[pk.Pack], fold: str, key: pk.Radix) -> str:
        """The rows of the three scored sets as groups of equal codes, a shard's part in few bytes.

        A group's key is ``key`` over (label, every pack's combination, fit
        slot, TRAIN SOLD or eval): the coordinator knows every mapping and
        computes each group's logits itself (``rowset.coded_sets``). The fit
        slot is the row's fit index (``fold``), or the last slot when it has
        none; eval rows take slot 0. Keys go ascending as LEB128 varints of
        2 * gap + (rows > 1), the rows of the groups with more than one as
        varints of rows - 2, both base64 text (dblink's results are text).
        """
        combos = combinations_sql(self.c, packs)
        last = key.radix[-2] - 1
        slot = "0" if last == 0 else f"CASE WHEN r.f >= 0 AND r.f < {last} THEN r.f ELSE {last} END"
        codes = ["r.y::int", *(f"r.c{i}" for i in range(len(combos))),
                 f"CASE WHEN r.train THEN {slot} ELSE 0 END", "r.train::int"]
        return f"""
SELECT count(*) AS groups,
       encode(coalesce(string_agg({varint_sql('z.w')}, NULL ORDER BY z.key), ''::bytea), 'base64') AS keys,
       encode(coalesce(string_agg({varint_sql('z.m')}, NULL ORDER BY z.key) FILTER (WHERE z.m >= 0), ''::bytea),
              'base64') AS counts
FROM (SELECT g.key, (g.key - coalesce(lag(g.key) OVER (ORDER BY g.key), 0)) * 2 + (g.n > 1)::int AS w, g.n - 2 AS m
      FROM (SELECT {key.sql(codes)} AS key, count(*) AS n
            FROM (SELECT s.sold_time <= {self.cutoff} AS train, {self.y} AS y, ({fold})::int AS f,
                         {', '.join(f'{c} AS c{i}' for i, c in enumerate(combos))}
                  FROM {self.qualified} AS s
                  WHERE {self.window}
                  OFFSET 0) AS r
            GROUP BY 1) AS g) AS z
"""

    def scores(self, packs: list[pk.Pack], target: str, fold: str,
               base_logit: list[float], tables: list[list[float]], fold_ids: list[int] | None) -> str:
        """CREATE TABLE AS of every TRAIN SOLD row's score (parallel plans allowed).

        ``target`` is a staging table of the caller's (``persist.staging_table``; or a shard's
        score table); the model's key is added when the scores are persisted
        (``persist.py``). ``fold`` gives a row's fit index, whose fold id is
        ``fold_ids[index]`` (None: OOF off); ``tables[j]`` is pack j's WOE
        sum per (fit, combination), flattened.
        """
        oof = fold_ids is not None
        rows = scored_rows_sql(self.c, self.qualified, packs, fold, base_logit, tables, self.where)
        return f"""
CREATE TABLE {target} AS
SELECT q.generation::int AS generation, q.listing_id::bigint AS listing_id, q.t0::timestamptz AS t0,
       {f"{array_lit(fold_ids, 'int')}[q.f + 1]" if oof else 'NULL::int'} AS fold_id,
       {'true' if oof else 'false'} AS is_oof, q.l AS woe_logit, {sigmoid_sql('q.l')} AS woe_p
FROM ({rows}) AS q
"""


def constrain_scores_sql(table: str, model_key: str | None = None) -> str:
    """One ALTER, one scan: the score key, and the constraints ATTACH PARTITION then trusts.

    The key is docs/contract.md's four columns with model_key last: it is the same in
    every row of a partition, so leading with it would only add a text
    comparison to every step of the index build's sort (twice the build time).
    A shard's score table (``model_key`` None) holds one model's rows without
    the key column.
    """
    keyed = model_key is not None
    return f"""ALTER TABLE {table}
    ADD PRIMARY KEY (generation, listing_id, t0{', model_key' if keyed else ''}),
    ADD CONSTRAINT woe_anchor_scores_v1_fold_id_check CHECK (fold_id >= 0),
    {f"ADD CONSTRAINT woe_anchor_scores_model_key_check CHECK (model_key = {quote_literal(model_key)})," if keyed else ''}
    ALTER COLUMN is_oof SET NOT NULL, ALTER COLUMN woe_logit SET NOT NULL, ALTER COLUMN woe_p SET NOT NULL"""


# a varint of quality_codes: 7-bit groups, least significant first, the top bit set on all but the
# last (LEB128), of values below 2^(7 * VARINT_BYTES)
VARINT_BYTES = 7


def varint_sql(v: str) -> str:
    """The varint bytes of ``v``, a bigint column in 0 .. 2^49 - 1: its 7 groups laid out in one int8
    from its second byte on, cut after the last group that is needed."""
    groups = [f"((({v} >> {7 * j}) & 127)"
              + (f" | CASE WHEN {v} >= {1 << 7 * (j + 1)} THEN 128 ELSE 0 END" if j < VARINT_BYTES - 1 else "")
              + f") << {8 * (VARINT_BYTES - 1 - j)}" for j in range(VARINT_BYTES)]
    length = " + ".join(["1"] + [f"({v} >= {1 << 7 * j})::int" for j in range(1, VARINT_BYTES)])
    return f"substring(int8send({' | '.join(f'({g})' for g in groups)}) FROM 2 FOR {length})"


def combinations_sql(compiler: Compiler, packs: list[pk.Pack], deferred: set[int] = frozenset()) -> list[str]:
    """Each pack's combination of a row's band codes, as SQL integers (code 0 for ``deferred`` bands)."""
    codes = ["0" if i in deferred else compiler.band(band) for i, band in enumerate(compiler.schema.bands)]
    return [pk.combination_sql(p, codes) for p in packs]


def logit_sql(packs: list[pk.Pack], base_logit: list[float], tables: list[list[float]],
              fit: str = "r.f") -> str:
    """base_logit[fit] + per pack tables[j][fit, r.c<j>]: a row's logit from its combinations.

    With several fits, every lookup is a two-dimensional array's (fit, combination): the
    expression's size does not grow with the fits, so the JIT compiles a 20-fold fit's as fast
    as a 5-fold one's (the arrays are constants it does not compile).
    """
    if len(base_logit) == 1:
        return " + ".join([float_lit(base_logit[0])] + [f"{array_lit(t, 'float8')}[r.c{i} + 1]"
                                                         for i, t in enumerate(tables)])
    return " + ".join([f"{array_lit(base_logit, 'float8')}[{fit} + 1]"] + [
        f"{array_lit(t, 'float8', p.size)}[{fit} + 1][r.c{i} + 1]" for i, (p, t) in enumerate(zip(packs, tables))])


def sigmoid_sql(logit: str) -> str:
    """p = 1 / (1 + e^-logit) for any logit: the clamp keeps exp() clear of PostgreSQL's range errors."""
    return f"1::float8 / (1::float8 + exp(-least(greatest({logit}, -709::float8), 745::float8)))"


def scored_rows_sql(compiler: Compiler, qualified: str, packs: list[pk.Pack], fit: str,
                    base_logit: list[float], tables: list[list[float]], where: str | None = None,
                    extra: tuple[tuple[str, str], ...] = ()) -> str:
    """SELECT generation, listing_id, t0, f (fit index), l (logit) of the source's rows.

    Workers band each row and add up its logit below the OFFSET 0 fence: a
    few lookups, base_logit[f] plus, per pack, tables[j][f, combination];
    the leader only receives the results. ``extra`` carries more
    (expression, alias) columns of the row along.
    """
    combos = combinations_sql(compiler, packs)
    return f"""
SELECT r.generation, r.listing_id, r.t0, r.f, {logit_sql(packs, base_logit, tables)} AS l{''.join(f', r.{a}' for _, a in extra)}
FROM (SELECT s.generation, s.listing_id, s.t0, ({fit})::int AS f,{''.join(f' {e} AS {a},' for e, a in extra)}
             {', '.join(f'{c} AS c{i}' for i, c in enumerate(combos))}
      FROM {qualified} AS s
      {f'WHERE {where}' if where else ''}) AS r
OFFSET 0
"""
