"""Serving benchmark with pgbench (PostgreSQL's load tool): point scoring under concurrency.

    .venv/bin/python bench/serving.py [--rows 300000] [--clients 8] [--seconds 15] [--major 18]

In a database of its own it generates --rows listings (integer listing_id, as the demo has
them, plus an index on listing_id), fits a model and creates the live views. Then, for each
script below, pgbench runs --clients clients for --seconds, unprepared (`-M simple`) and
prepared, and the transaction log gives TPS and p50/p99 latency:

* the live score view for one random listing;
* the per-row function ml.woe_anchor_p(l) on one random listing, and the LATERAL form
  ml.woe_anchor_scores_of(l);
* the fail-closed train view for one random listing (its readiness check runs per query);
* the stored OOF scores of one listing by (generation, listing_id), the partition's key prefix.

Then 10,000 listings scored in one query (median of 5): read alone, through the LATERAL
function, through the per-row function and through the score view. Last, the view and the
per-row scripts run while the administration a production server sees goes on beside them: the
views re-created, a refit that activates, a replace of the active model, a drop and a prune.
pgbench's failed transactions and the longest transaction are what it reports.
Writes bench/serving.md (bench/serving-pg<major>.md with --major: that major's server from its
root, harness/woe_anchor_harness/roots.py, and its own pgbench).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "harness")]

from woe_anchor_harness import datagen, install, roots, server  # noqa: E402

DB = "woe_anchor_bench_serving"
SCRIPTS = {
    "score view, one listing": "SELECT * FROM ml.woe_anchor_scores_live_v1 WHERE listing_id = :id;",
    "ml.woe_anchor_p(l), one listing": "SELECT l.*, ml.woe_anchor_p(l) FROM listings AS l WHERE l.listing_id = :id;",
    "LATERAL ml.woe_anchor_scores_of(l), one listing": (
        "SELECT s.* FROM listings AS l CROSS JOIN LATERAL ml.woe_anchor_scores_of(l) AS s WHERE l.listing_id = :id;"),
    "train view, one listing": "SELECT * FROM ml.woe_anchor_scores_live_train_v WHERE listing_id = :id;",
    "stored OOF score, one listing": ("SELECT * FROM ml.woe_anchor_scores_v1 WHERE model_key = 'bench_serving' "
                                      "AND generation = :gen AND listing_id = :id;"),
}


def prepare(srv, rows: int) -> tuple[str, int, int]:
    dsn = install.fresh_database(srv, DB)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET client_min_messages = warning")
        datagen.generate_listings(conn, "listings", rows=rows, days=200)
        conn.execute("CREATE INDEX ON listings (listing_id)")
        conn.execute("ANALYZE listings")
        conn.execute("CALL ml.fit_woe_anchor(source => 'listings', model_key => 'bench_serving')")
        conn.execute("SELECT ml.woe_anchor_create_views('listings')")
        lo, hi = conn.execute("SELECT min(listing_id), max(listing_id) FROM listings").fetchone()
    return dsn, lo, hi


def pgbench(srv, dsn: str, script: str, lo: int, hi: int, clients: int, seconds: int, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "script.sql"
        # generation of a listing: the generator's rule (1 + i % 4 with listing_id = 1000000 + i, see datagen)
        path.write_text(f"\\set id random({lo}, {hi})\n\\set gen 1 + :id % 4\n{script}\n")
        prefix = Path(tmp) / "log"
        done = subprocess.run(
            [*srv.client("pgbench"), "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "-M", mode,
             "-f", str(path), "--log", f"--log-prefix={prefix}", dsn],
            capture_output=True, text=True)
        latencies = [int(line.split()[2]) / 1000.0 for f in Path(tmp).glob("log*") for line in f.read_text().splitlines()]
    tps = next((float(line.split("=")[1].split()[0]) for line in done.stdout.splitlines() if line.startswith("tps =")), 0.0)
    failed = next((int(line.split(":")[1].split()[0]) for line in done.stdout.splitlines()
                   if line.startswith("number of failed transactions")), 0)
    aborted = done.stderr.count("aborted")
    latencies.sort()
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")  # noqa: E731
    return {"tps": tps, "p50": pct(0.50), "p99": pct(0.99), "max": latencies[-1] if latencies else float("nan"),
            "n": len(latencies), "failed": failed + aborted, "stderr": done.stderr.strip()}


BULK = {
    "read the rows": "SELECT l.* FROM listings AS l WHERE l.listing_id < {end}",
    "LATERAL ml.woe_anchor_scores_of(l)": ("SELECT l.*, s.woe_anchor_p_slow21 FROM listings AS l "
                                           "CROSS JOIN LATERAL ml.woe_anchor_scores_of(l) AS s WHERE l.listing_id < {end}"),
    "ml.woe_anchor_p(l)": "SELECT l.*, ml.woe_anchor_p(l) FROM listings AS l WHERE l.listing_id < {end}",
    "score view": "SELECT * FROM ml.woe_anchor_scores_live_v1 WHERE listing_id < {end}",
}


def bulk(dsn: str, lo: int, n: int = 10_000, runs: int = 5) -> dict:
    """Median seconds of each BULK query over n listings (one warm-up run first)."""
    out = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name, query in BULK.items():
            sql = query.format(end=lo + n)
            conn.execute(sql).fetchall()
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                conn.execute(sql).fetchall()
                times.append(time.perf_counter() - t)
            out[name] = statistics.median(times)
    return out


def administer(dsn: str, stop: threading.Event, log: list) -> None:
    """What runs beside the readers: re-created views, refits that activate, a replace, a drop, a prune."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET client_min_messages = warning")
        steps = [("create_views", "SELECT ml.woe_anchor_create_views('listings')"),
                 ("refit, activate", "CALL ml.fit_woe_anchor(source => 'listings', model_key => 'bench_refit', "
                                     "replace => true)"),
                 ("replace the active model", "CALL ml.fit_woe_anchor(source => 'listings', model_key => "
                                              "'bench_refit', replace => true, n_folds => 3)"),
                 ("activate another", "SELECT ml.woe_anchor_activate('bench_serving')"),
                 ("drop", "SELECT ml.woe_anchor_drop_model('bench_refit')"),
                 ("prune", "SELECT ml.woe_anchor_prune(1)")]
        for name, statement in steps:
            if stop.is_set():
                break
            t = time.monotonic()
            conn.execute(statement)
            log.append((name, time.monotonic() - t))
            time.sleep(1.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--major", type=int, default=0, help="another PostgreSQL major, from its root (roots.py)")
    args = ap.parse_args()
    if args.major:
        with roots.running(args.major) as srv:
            return run(args, srv, HERE / f"serving-pg{args.major}.md")
    srv = server.ensure_local()
    install.make_install(srv)
    run(args, srv, HERE / "serving.md")


def run(args, srv, out_file: Path) -> None:
    dsn, lo, hi = prepare(srv, args.rows)
    out = [f"# Serving benchmark ({args.rows:,} listings, {args.clients} clients, {args.seconds} s per run)", "",
           "| query | mode | TPS | p50 ms | p99 ms | max ms | failed |", "|---|---|---|---|---|---|---|"]
    for name, script in SCRIPTS.items():
        for mode in ("simple", "prepared"):
            r = pgbench(srv, dsn, script, lo, hi, args.clients, args.seconds, mode)
            out.append(f"| {name} | {mode} | {r['tps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['max']:.1f} "
                       f"| {r['failed']} |")
            print(out[-1], flush=True)
    seconds = bulk(dsn, lo)
    out += ["", "10,000 listings in one query (median of 5, seconds; the rows fetched by the client):", "",
            "| query | s | / reading the rows |", "|---|---|---|"]
    out += [f"| {name} | {s:.3f} | {s / seconds['read the rows']:.2f} |" for name, s in seconds.items()]
    print("\n".join(out[-len(seconds) - 2:]), flush=True)
    for name in ("score view, one listing", "ml.woe_anchor_p(l), one listing"):
        stop, log = threading.Event(), []
        admin = threading.Thread(target=administer, args=(dsn, stop, log))
        admin.start()
        r = pgbench(srv, dsn, SCRIPTS[name], lo, hi, args.clients, 30, "simple")
        stop.set()
        admin.join()
        out += ["", f"Under administration ({name}, unprepared, 30 s, beside: "
                + ", ".join(f"{step} {s:.1f} s" for step, s in log) + "):", "",
                f"TPS {r['tps']:,.0f}, p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, longest transaction "
                f"{r['max']:.0f} ms, failed transactions {r['failed']}"]
        if r["stderr"]:
            out += ["", "pgbench said: " + r["stderr"][:500]]
    print("\n".join(out[-3:]))
    out_file.write_text("\n".join(out) + "\n")
    install.drop_database(srv, DB)


if __name__ == "__main__":
    main()
