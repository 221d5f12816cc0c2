"""Benchmark: a sharded fit across a real network link, as its delay grows.

    .venv/bin/python bench/network.py [--rows 1000000] [--delays 0,1,5] [--repeat 3]

Two PostgreSQL shards, each in a network namespace of its own behind a veth
pair, with scram logins (harness/woe_anchor_harness/netshards.py); the
coordinator (this machine's server) in the root namespace reaches them
through a proxy that holds what it sends them for the given delay. The rows
are generated on every server from one seed: generations 1-2 on shard A,
3-4 on shard B, all of them in one local table for comparison.

For each delay it measures the fit of the sharded source with its defaults
(scores written on the shards) --repeat times, and once with
scores_on_shards => false (the scores' rows come through postgres_fdw,
fetch_size 10000, async_capable), and for each fit the bytes that crossed the links (both
ways, headers included) against the size of the source's tables on the
shards. The first default fit's artifacts are compared with the local
table's fit: registry figures, cuts, maps and every score must be equal.
Writes bench/results-network.md. Needs root (network namespaces).
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "harness")]

from woe_anchor_harness import install, netshards, server, shards  # noqa: E402

# the registry's columns that a fit of the same rows must reproduce
FIGURES = ("n_train_sold", "n_learned", "n_days", "n_scored_oof", "weight_ref_ts", "base_rate", "base_logit",
           "dsold_t1", "dsold_t2", "dsold_t3", "dsold_t4", "oof_auc", "oof_logloss", "insample_auc", "insample_logloss",
           "eval_auc", "eval_logloss", "n_eval", "band_quality", "score_bins")
SAME = """
WITH a AS (SELECT {figures} FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %(a)s),
     b AS (SELECT {figures} FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %(b)s),
     ca AS (SELECT fold_id, c1, c2, base_rate, base_logit, n_learned FROM ml.woe_anchor_cuts_v1 WHERE model_key = %(a)s),
     cb AS (SELECT fold_id, c1, c2, base_rate, base_logit, n_learned FROM ml.woe_anchor_cuts_v1 WHERE model_key = %(b)s),
     ma AS (SELECT fold_id, band_name, band_value, woe, sum_w_pos, sum_w_neg, n_rows FROM ml.woe_anchor_map_v1
            WHERE model_key = %(a)s),
     mb AS (SELECT fold_id, band_name, band_value, woe, sum_w_pos, sum_w_neg, n_rows FROM ml.woe_anchor_map_v1
            WHERE model_key = %(b)s),
     sa AS MATERIALIZED (SELECT * FROM ml.woe_anchor_stored_scores(%(a)s)),
     sb AS MATERIALIZED (SELECT * FROM ml.woe_anchor_stored_scores(%(b)s))
SELECT (SELECT count(*) FROM ((TABLE a EXCEPT ALL TABLE b) UNION ALL (TABLE b EXCEPT ALL TABLE a)) d),
       (SELECT count(*) FROM ((TABLE ca EXCEPT ALL TABLE cb) UNION ALL (TABLE cb EXCEPT ALL TABLE ca)) d),
       (SELECT count(*) FROM ((TABLE ma EXCEPT ALL TABLE mb) UNION ALL (TABLE mb EXCEPT ALL TABLE ma)) d),
       (SELECT count(*) FROM ((TABLE sa EXCEPT ALL TABLE sb) UNION ALL (TABLE sb EXCEPT ALL TABLE sa)) d),
       (SELECT count(*) FROM sa)
""".format(figures=", ".join(f"{c}::text" for c in FIGURES))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--delays", default="0,1,5", help="one-way delays in ms added to the coordinator's segments")
    ap.add_argument("--repeat", type=int, default=3, help="default fits per delay (medians reported)")
    ap.add_argument("--out", default=str(HERE / "results-network.md"))
    args = ap.parse_args(argv)
    srv = server.from_env_or_local()
    install.make_install(srv)
    dsn = install.fresh_database(srv, "woe_anchor_netbench")
    notices: list[str] = []
    results = []
    with netshards.NetworkShards(2, base_port=25461, server=srv) as net, \
            psycopg.connect(dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        shards.generate_sharded(conn, "net_src", args.rows, {net.dsns[0]: [1, 2], net.dsns[1]: [3, 4]},
                                local_copy="net_flat")
        source_bytes = 0
        for d in net.direct:
            with psycopg.connect(d, autocommit=True) as s:
                source_bytes += s.execute("SELECT pg_table_size('net_src')").fetchone()[0]
                s.execute("CREATE SCHEMA IF NOT EXISTS woe_anchor_scores")  # the shard's administrator's part
        conn.execute("CHECKPOINT")
        start = time.perf_counter()
        conn.execute("CALL ml.fit_woe_anchor(source => 'net_flat', model_key => 'net_flat', activate => false)")
        local_seconds = time.perf_counter() - start
        checked = None

        def run(key: str, delay: float, here: bool = False) -> dict:
            net.proxy.delay_ms = delay
            notices.clear()
            before, start = net.link_bytes(), time.perf_counter()
            conn.execute("CALL ml.fit_woe_anchor(source => 'net_src', model_key => %s, activate => false"
                         + (", scores_on_shards => false" if here else "") + ")", [key])
            seconds, moved = time.perf_counter() - start, net.link_bytes() - before
            summary = next(n for n in notices if n.startswith("[shards]") and "they returned" in n)
            phases = conn.execute("SELECT timings_ms FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s",
                                  [key]).fetchone()[0]
            return {"seconds": seconds, "bytes": moved, "summary": summary, "phases": phases}

        delays = [float(x) for x in args.delays.split(",")]
        runs: dict[float, list] = {d: [] for d in delays}
        here: dict[float, dict] = {}
        for i in range(args.repeat):  # delays interleaved: a drift of the machine does not favour one
            for delay in delays:
                key = f"net_{delay:g}ms_{i}"
                runs[delay].append(run(key, delay))
                if checked is None:
                    checked = conn.execute(SAME, {"a": key, "b": "net_flat"}).fetchone()
                conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])
        for delay in delays:
            here[delay] = run(f"net_{delay:g}ms_here", delay, here=True)
            conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [f"net_{delay:g}ms_here"])
        for delay in delays:
            r = {"delay": delay, "runs": runs[delay], "here": here[delay],
                 "seconds": statistics.median(x["seconds"] for x in runs[delay]),
                 "bytes": statistics.median(x["bytes"] for x in runs[delay])}
            results.append(r)
            print(f"+{delay:g} ms: fit {r['seconds']:.2f} s, {r['bytes'] / 1e6:.2f} MB over the links "
                  f"({r['bytes'] / source_bytes:.2%} of the source); scores here {r['here']['seconds']:.2f} s, "
                  f"{r['here']['bytes'] / 1e6:.1f} MB", flush=True)
        version = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
    report = _report(args, version, source_bytes, results, checked, local_seconds)
    Path(args.out).write_text(report)
    print(report)


def _report(args, version: str, source_bytes: int, results: list, checked, local_seconds: float) -> str:
    base = results[0]["seconds"]
    out = ["# Sharded fit across a network\n",
           f"{version}; 2 cores; {args.rows:,} rows over two shards in network namespaces (veth links, scram "
           f"logins), the coordinator on this machine; the source's tables on the shards: {source_bytes / 1e6:.1f} MB "
           f"(pg_table_size, without their primary keys). "
           f"Delay: each segment the coordinator sends a shard is held that long (bench/network.py).\n",
           "| delay | fit s (median) | / fit at +0 | bytes over the links | / source | "
           "scores_on_shards => false: fit s | its bytes | / source |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        out.append(f"| +{r['delay']:g} ms | {r['seconds']:.2f} | {r['seconds'] / base:.2f} | "
                   f"{r['bytes'] / 1e6:.2f} MB | {r['bytes'] / source_bytes:.2%} | {r['here']['seconds']:.2f} | "
                   f"{r['here']['bytes'] / 1e6:.1f} MB | {r['here']['bytes'] / source_bytes:.1%} |")
    out.append(f"\nThe same rows in one table on the coordinator: fit {local_seconds:.2f} s (one run).")
    out.append("\nRuns (seconds, MB over the links):\n")
    for r in results:
        out.append(f"- +{r['delay']:g} ms: " + ", ".join(f"{x['seconds']:.2f} s / {x['bytes'] / 1e6:.2f} MB"
                                                          for x in r["runs"]))
    out.append("\nPhases of the first default fit at each delay (ms, the registry's timings_ms):\n")
    names = [k for k in results[0]["runs"][0]["phases"] if k != "total"] + ["total"]
    out += ["| delay | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for r in results:
        out.append(f"| +{r['delay']:g} ms | " + " | ".join(f"{r['runs'][0]['phases'].get(k, 0):.0f}" for k in names) + " |")
    out.append("\nWhat the shards returned (the fit's NOTICE, first default fit):\n")
    out.append("    " + re.sub(r"\s+", " ", results[0]["runs"][0]["summary"]))
    if checked is not None:
        registry, cuts, maps, scores, n_scores = checked
        verdict = "bit-identical" if not (registry or cuts or maps or scores) else "DIFFERENT"
        out.append(f"\nThe first default fit against the same rows in one local table: {verdict} (rows that differ: "
                   f"registry {registry}, cuts {cuts}, maps {maps}, scores {scores} of {n_scores:,}).")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
