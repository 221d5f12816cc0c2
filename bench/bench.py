"""Benchmark: the fit against the write floor and against client-side trainers.

    .venv/bin/python bench/bench.py [--sizes 100000,1000000,5000000] [--client-cap 1000000] [--repeat 3]
                                    [--repeat-large 1] [--major 18]

Sizes above 5M (``--sizes 20000000,50000000``) take minutes per fit: they run --repeat-large times
(default 1). They need about 500 bytes of disk per row while they run.

--major runs it on another PostgreSQL major, started from its Debian root
(harness/woe_anchor_harness/roots.py), and writes bench/results-pg<major>.md.

For each size N it generates N listings inside the server. Then it measures, in one run:

* the floor: CREATE TABLE AS of the TRAIN SOLD keys with placeholder score
  columns, then ADD PRIMARY KEY (model_key, generation, listing_id, t0), in
  one transaction (the issue's definition); and the same with the key's
  columns in the order the fit's partitions use (model_key last);
* CALL ml.fit_woe_anchor with 5 folds, and with 20 folds at 1M rows, while
  a thread samples the backend's private memory (RssAnon in /proc/PID/status),
  with the fit's phases (the registry's timings_ms) and how it read the rows
  (in one piece, or in chunks of woe_anchor.fit_memory kept on disk);
* the artifacts of the first fit of each size checked as the tests check them:
  one registry row, one cuts row per fold and the final one, a score for
  every TRAIN SOLD row of the source, and one active model once it is activated;
* each floor and fit --repeat times (default 3), interleaved, reporting
  medians: single runs of the disk-bound floor vary by a quarter here;
* the trainer-style client and the best-effort client (bench/clients.py),
  up to --client-cap rows, in the same rounds (medians likewise);
* at 1M rows, scoring every row through ml.woe_anchor_score against a plain
  SELECT of the same rows joined to ten small lookup tables, and drift and
  realized performance over the whole table against that scoring pass
  (medians of 5 interleaved rounds of the three);

It prints ratios and writes bench/results.md (bench/results-50m.md is a run up to 50M rows;
bench/network.py measures a sharded fit across network links).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "harness")]

import clients  # noqa: E402
from woe_anchor_harness import datagen, install, roots, server  # noqa: E402

FLOOR = """
CREATE TABLE bench_floor AS
SELECT 'woe_anchor_v1_20260101_000000'::text AS model_key, generation, listing_id, t0,
       0::int AS fold_id, true AS is_oof, 0::float8 AS woe_logit, 0::float8 AS woe_p
FROM {table} WHERE sold_time IS NOT NULL AND sold_time <= (SELECT max(sold_time) - interval '7 days' FROM {table});
ALTER TABLE bench_floor ADD PRIMARY KEY ({key});
"""
FLOOR_KEY = "model_key, generation, listing_id, t0"
FIT_KEY = "generation, listing_id, t0, model_key"


class PeakMemory:
    """Samples a backend's RssAnon (private resident memory) every 20 ms."""

    def __init__(self, pid: int):
        self.pid, self.peak_kb, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                for line in open(f"/proc/{self.pid}/status"):
                    if line.startswith("RssAnon:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def timed(fn):
    start = time.monotonic()
    result = fn()
    return time.monotonic() - start, result


def fit(conn, table, key, n_folds):
    """Seconds, peak backend MiB, the fit's phases (ms) and its notice on chunks (None: one piece)."""
    notices = []

    def keep(diagnostic):   # read it now: a notice's fields go with its result
        notices.append(diagnostic.message_primary or "")

    conn.add_notice_handler(keep)
    try:
        with PeakMemory(conn.info.backend_pid) as mem:
            seconds, _ = timed(lambda: conn.execute(
                "CALL ml.fit_woe_anchor(source => %s, model_key => %s, n_folds => %s, activate => false)",
                [table, key, n_folds]))
    finally:
        conn.remove_notice_handler(keep)
    phases = conn.execute("SELECT timings_ms FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s",
                          [key]).fetchone()[0]
    said = (re.search(r"in \d+ chunks \(woe_anchor.fit_memory\), \d+ MiB kept on disk", n) for n in notices)
    chunks = next((m.group(0) for m in said if m), None)
    return seconds, mem.peak_kb / 1024, phases, chunks


def consistent(conn, table, key, n_folds):
    """The checks the tests make of a fit's artifacts, on a benchmark's model: raises if one fails."""
    n, cutoff = conn.execute("SELECT n_train_sold, train_cutoff_ts FROM ml.woe_anchor_model_registry_v1 "
                             "WHERE model_key = %s", [key]).fetchone()
    train_sold = conn.execute(f"SELECT count(*) FROM {table} WHERE sold_time <= %s", [cutoff]).fetchone()[0]
    scored, distinct_rows = conn.execute(
        "SELECT count(*), count(DISTINCT (generation, listing_id, t0)) FROM ml.woe_anchor_scores_v1 "
        "WHERE model_key = %s", [key]).fetchone()
    cuts = conn.execute("SELECT count(*) FROM ml.woe_anchor_cuts_v1 WHERE model_key = %s", [key]).fetchone()[0]
    conn.execute("SELECT ml.woe_anchor_activate(%s)", [key])
    active = conn.execute("SELECT array_agg(model_key) FROM ml.woe_anchor_model_registry_v1 WHERE is_active"
                          ).fetchone()[0]
    checks = {"TRAIN SOLD rows": (n, train_sold), "scores": (scored, n), "scored rows distinct": (distinct_rows, n),
              "cuts rows": (cuts, n_folds + 1), "active models": (active, [key])}
    failed = {name: pair for name, pair in checks.items() if pair[0] != pair[1]}
    if failed:
        raise AssertionError(f"{key}: artifacts inconsistent: {failed}")
    return f"{n:,} TRAIN SOLD rows, each scored once; {cuts} cuts rows; the one active model"


LOOKUPS = """
DO $$ BEGIN FOR i IN 1..10 LOOP
  EXECUTE format('DROP TABLE IF EXISTS bench_lookup_%s', i);
  EXECUTE format('CREATE TABLE bench_lookup_%s (k int PRIMARY KEY, woe float8)', i);
  EXECUTE format('INSERT INTO bench_lookup_%s SELECT g, g / 10.0 FROM generate_series(0, 9) g', i);
  EXECUTE format('ANALYZE bench_lookup_%s', i);
END LOOP; END $$
"""
# ten small-table joins on integer expressions of the listing, summed like a logit
TEN_JOINS = """
SELECT count(*), sum(l1.woe + l2.woe + l3.woe + l4.woe + l5.woe + l6.woe + l7.woe + l8.woe + l9.woe + l10.woe)
FROM {table} s
JOIN bench_lookup_1 l1 ON l1.k = s.listing_id % 10
JOIN bench_lookup_2 l2 ON l2.k = s.review_count % 10
JOIN bench_lookup_3 l3 ON l3.k = s.generation % 10
JOIN bench_lookup_4 l4 ON l4.k = coalesce(s.image_count, 0) % 10
JOIN bench_lookup_5 l5 ON l5.k = coalesce(s.member_since_year, 0) % 10
JOIN bench_lookup_6 l6 ON l6.k = s.charger_bundle_level % 10
JOIN bench_lookup_7 l7 ON l7.k = s.ai_ship_can % 10
JOIN bench_lookup_8 l8 ON l8.k = s.ai_sale_mode_firm % 10
JOIN bench_lookup_9 l9 ON l9.k = s.ai_sale_mode_bids % 10
JOIN bench_lookup_10 l10 ON l10.k = s.ai_sale_mode_obo % 10
"""


def scoring(conn, table, key):
    """Seconds to score every row with ml.woe_anchor_score, and for the ten-join SELECT."""
    conn.execute(LOOKUPS)
    fn, _ = timed(lambda: conn.execute("SELECT count(*), sum(woe_logit) FROM ml.woe_anchor_score(%s, %s)",
                                       [table, key]).fetchone())
    joins, _ = timed(lambda: conn.execute(TEN_JOINS.format(table=table)).fetchone())
    return fn, joins


MONITORING_ROUNDS = 5


def monitoring(conn, table, key):
    """Seconds for drift and for realized performance over every row of the table (the widest
    window), against one scoring pass of the same rows: medians of MONITORING_ROUNDS rounds of
    the three, interleaved, so that the machine's speed drifting during the run touches all three."""
    start, end = conn.execute(f"SELECT min(t0), max(t0) + interval '1 second' FROM {table}").fetchone()
    queries = {
        "scoring": ("SELECT count(*), sum(woe_logit) FROM ml.woe_anchor_score(%s, %s)", [table, key]),
        "drift": ("SELECT count(*) FROM ml.woe_anchor_drift(%s, %s, %s, %s)", [table, start, end, key]),
        "realized": ("SELECT count(*) FROM ml.woe_anchor_realized(%s, %s, %s)", [table, key, start]),
    }
    samples = {name: [] for name in queries}
    for _ in range(MONITORING_ROUNDS):
        for name, (q, args) in queries.items():
            samples[name].append(timed(lambda: conn.execute(q, args).fetchone())[0])
    return {"samples": samples, **{name: statistics.median(v) for name, v in samples.items()}}


def floor(conn, table, key=FLOOR_KEY):
    conn.execute("DROP TABLE IF EXISTS bench_floor")
    with conn.transaction():
        seconds, _ = timed(lambda: conn.execute(FLOOR.format(table=table, key=key)))
    conn.execute("DROP TABLE bench_floor")
    return seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000,5000000")
    ap.add_argument("--client-cap", type=int, default=1_000_000)
    ap.add_argument("--out", default=str(HERE / "results.md"))
    ap.add_argument("--repeat", type=int, default=3, help="runs of each floor and fit per size (medians reported)")
    ap.add_argument("--repeat-large", type=int, default=1, help="runs of each floor and fit above 5M rows")
    ap.add_argument("--major", type=int, default=0, help="another PostgreSQL major, from its Debian root")
    args = ap.parse_args(argv)
    if args.major:
        with roots.running(args.major) as srv:
            return run(args, srv, args.out if args.out != str(HERE / "results.md") else
                       str(HERE / f"results-pg{args.major}.md"))
    srv = server.from_env_or_local()
    if "WOE_ANCHOR_DSN" not in os.environ:
        install.make_install(srv)
    return run(args, srv, args.out)


def run(args, srv, out: str) -> None:
    dsn = install.fresh_database(srv, "woe_anchor_bench")
    rows = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        version = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
        for n in [int(x) for x in args.sizes.split(",")]:
            table = f"listings_{n}"
            datagen.generate_listings(conn, table, rows=n)
            # a settled table, as autovacuum leaves it: the first scan does not set every hint bit
            conn.execute(f"VACUUM ANALYZE {table}")
            conn.execute("CHECKPOINT")
            r = {"n": n, "samples": {"floor": [], "floor_fit_key": [], "fit": [], "fit20": [], "trainer": [],
                                     "best_effort": []}, "mem_mb": 0.0, "phases": []}
            # the disk-bound floor varies a lot from run to run here: interleave repeats, keep medians
            for i in range(args.repeat if n <= 5_000_000 else args.repeat_large):
                key = f"bench_{n}" if i == 0 else f"bench_{n}_r{i}"
                r["samples"]["floor"].append(floor(conn, table))
                r["samples"]["floor_fit_key"].append(floor(conn, table, FIT_KEY))
                seconds, mem, phases, r["chunks"] = fit(conn, table, key, 5)
                r["samples"]["fit"].append(seconds)
                r["phases"].append(phases)
                r["mem_mb"] = max(r["mem_mb"], mem)
                if n == 1_000_000:
                    r["samples"]["fit20"].append(fit(conn, table, f"{key}_20", 20)[0])
                    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [f"{key}_20"])
                if i:
                    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])
                if n <= args.client_cap:   # in the same rounds: the clients' speed varies by day as the fit's
                    conn.execute("DROP TABLE IF EXISTS bench_trainer_scores")
                    r["samples"]["trainer"].append(timed(lambda: clients.trainer_style(dsn, table, f"trainer_{n}"))[0])
                    r["samples"]["best_effort"].append(timed(lambda: clients.best_effort(dsn, table, f"best_{n}"))[0])
            r.update({name: statistics.median(v) for name, v in r["samples"].items() if v})
            r["checked"] = consistent(conn, table, f"bench_{n}", 5)
            if n == 1_000_000:
                r["score_fn"], r["score_joins"] = scoring(conn, table, f"bench_{n}")
                r["monitoring"] = monitoring(conn, table, f"bench_{n}")
            rows.append(r)
            print(_line(r), flush=True)
            conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [f"bench_{n}"])  # the disk it takes
            conn.execute(f"DROP TABLE {table}")
    report = _report(rows, version)
    Path(out).write_text(report)
    print(report)


PHASES = ("cutoff", "stats", "rows", "sums", "woe", "scores_write", "scores_index", "quality")


def _line(r):
    parts = [f"N={r['n']:>9,}", f"floor {r['floor']:.2f}s", f"fit {r['fit']:.2f}s",
             f"fit/floor {r['fit'] / r['floor']:.2f}",
             f"floor with model_key last {r['floor_fit_key']:.2f}s (fit/it {r['fit'] / r['floor_fit_key']:.2f})",
             f"peak backend RssAnon {r['mem_mb']:.0f} MiB"]
    if "fit20" in r:
        parts.append(f"20/5 folds {r['fit20'] / r['fit']:.2f}")
    if "score_fn" in r:
        parts.append(f"score fn {r['score_fn']:.2f}s vs ten joins {r['score_joins']:.2f}s")
    if "trainer" in r:
        parts += [f"trainer {r['trainer']:.1f}s (x{r['trainer'] / r['fit']:.1f})",
                  f"best-effort {r['best_effort']:.1f}s (x{r['best_effort'] / r['fit']:.2f})"]
    return "  ".join(parts)


def _report(rows, version):
    out = [f"# Benchmark results\n\n{version}; {os.cpu_count()} cores; server defaults "
           f"(the fit sets work_mem = 64MB for itself and compiles its read of the rows and its write of the scores, with the JIT); "
           f"woe_anchor.fit_memory at its default.\n",
           "| rows | floor s | fit s | fit / floor | floor, model_key last s | fit / that floor | peak backend MiB "
           "| 20 / 5 folds | trainer-style s | trainer / fit | best-effort s | best-effort / fit |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append("| {n:,} | {floor:.2f} | {fit:.2f} | {ratio:.2f} | {floor2:.2f} | {ratio2:.2f} | {mem:.0f} | {f20} "
                   "| {tr} | {trr} | {be} | {ber} |".format(
            n=r["n"], floor=r["floor"], fit=r["fit"], ratio=r["fit"] / r["floor"], floor2=r["floor_fit_key"],
            ratio2=r["fit"] / r["floor_fit_key"], mem=r["mem_mb"],
            f20=f"{r['fit20'] / r['fit']:.2f}" if "fit20" in r else "",
            tr=f"{r['trainer']:.1f}" if "trainer" in r else "", trr=f"{r['trainer'] / r['fit']:.1f}" if "trainer" in r else "",
            be=f"{r['best_effort']:.1f}" if "best_effort" in r else "",
            ber=f"{r['best_effort'] / r['fit']:.2f}" if "best_effort" in r else ""))
    out.append("\nEvery floor, fit and client figure is the median of the runs below, interleaved per size "
               "(peak memory: the largest over the fit runs).\n")
    for r in rows:
        runs = "; ".join(f"{name} " + ", ".join(f"{x:.2f}" for x in v) for name, v in r["samples"].items() if v)
        out.append(f"- {r['n']:,}: {runs}")
    out += ["\nPhases of the fit (ms, medians over its runs; `rows` reads the rows, `scores_write` and "
            "`scores_index` are the floor's work):\n", "| rows | " + " | ".join(PHASES) + " | total |",
            "|---:|" + "---:|" * (len(PHASES) + 1)]
    for r in rows:
        med = {k: statistics.median(p.get(k, 0.0) for p in r["phases"]) for k in (*PHASES, "total")}
        out.append(f"| {r['n']:,} | " + " | ".join(f"{med[k]:.0f}" for k in (*PHASES, "total")) + " |")
    out.append("")
    for r in rows:
        out.append(f"- {r['n']:,}: read {r['chunks'] or 'in one piece'}; artifacts: {r['checked']}.")
    by_n = {r["n"]: r for r in rows}
    for big, small in ((5_000_000, 1_000_000), (50_000_000, 5_000_000)):
        if big in by_n and small in by_n:
            out.append(f"\n{big // 1_000_000}M fit / {small // 1_000_000}M fit: "
                       f"{by_n[big]['fit'] / by_n[small]['fit']:.2f}")
    if "score_fn" in by_n.get(1_000_000, {}):
        r = by_n[1_000_000]
        out.append(f"\nScoring 1M rows: ml.woe_anchor_score {r['score_fn']:.2f} s; plain SELECT joined to ten "
                   f"small lookup tables {r['score_joins']:.2f} s (ratio {r['score_fn'] / r['score_joins']:.2f}).")
    if "monitoring" in by_n.get(1_000_000, {}):
        m = by_n[1_000_000]["monitoring"]
        out.append(f"\nMonitoring 1M rows (the whole table as the window, medians of {MONITORING_ROUNDS} "
                   f"interleaved rounds): scoring {m['scoring']:.2f} s; ml.woe_anchor_drift {m['drift']:.2f} s "
                   f"({m['drift'] / m['scoring']:.2f}x); ml.woe_anchor_realized {m['realized']:.2f} s "
                   f"({m['realized'] / m['scoring']:.2f}x).")
        out.append("\n" + "\n".join(f"- {name}: " + ", ".join(f"{x:.2f}" for x in v)
                                     for name, v in m["samples"].items()))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
