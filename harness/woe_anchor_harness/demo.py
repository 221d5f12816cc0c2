"""The demo: a fit on generated listings, with the server's log lines and a model summary."""
from __future__ import annotations

import time

import psycopg

from . import datagen, install, server

SUMMARY = """
SELECT model_key, is_active, train_cutoff_ts, n_train_sold, n_learned, n_days,
       n_folds_with_rows, round(base_rate::numeric, 4) AS base_rate,
       round(base_logit::numeric, 4) AS base_logit,
       array[dsold_t1, dsold_t2, dsold_t3, dsold_t4] AS dsold_thresholds,
       round(oof_auc::numeric, 4) AS oof_auc, round(insample_auc::numeric, 4) AS insample_auc,
       round(eval_auc::numeric, 4) AS eval_auc, n_eval,
       (timings_ms ->> 'total')::float8 AS fit_ms
FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s
"""
TOP_BANDS = """
SELECT band_name, band_value, n_rows, round(woe::numeric, 3) AS woe
FROM ml.woe_anchor_map_v1 WHERE model_key = %s AND fold_id IS NULL
ORDER BY abs(woe) DESC LIMIT 8
"""


def run(rows: int = 300_000, dbname: str = "woe_anchor_demo") -> None:
    srv = server.from_env_or_local()
    print(f"[demo] PostgreSQL {srv.major}: {srv.dsn}")
    if "WOE_ANCHOR_DSN" not in __import__("os").environ:
        install.make_install(srv)
    dsn = install.fresh_database(srv, dbname)
    with psycopg.connect(dsn, autocommit=True) as conn:
        t = time.monotonic()
        datagen.generate_listings(conn, "public.listings", rows=rows)
        print(f"[demo] generated {rows} listings in {time.monotonic() - t:.1f} s")
        conn.add_notice_handler(lambda d: print(d.message_primary))
        t = time.monotonic()
        key = conn.execute("CALL ml.fit_woe_anchor(source => 'public.listings')").fetchone()[0]
        print(f"[demo] CALL ml.fit_woe_anchor took {time.monotonic() - t:.2f} s")
        _print_rows(conn, SUMMARY, key, "model")
        _print_rows(conn, TOP_BANDS, key, "strongest band values (final mapping)")
    print(f"[demo] done: database {dbname!r}, model {key!r}")


def _print_rows(conn, query, key, title):
    cur = conn.execute(query, [key])
    names = [d.name for d in cur.description]
    rows = cur.fetchall()
    print(f"\n{title}:")
    if len(rows) == 1:
        width = max(map(len, names))
        for n, v in zip(names, rows[0]):
            print(f"  {n:<{width}}  {v}")
        return
    widths = [max(len(n), *(len(str(r[i])) for r in rows)) for i, n in enumerate(names)]
    print("  " + "  ".join(n.ljust(w) for n, w in zip(names, widths)))
    for r in rows:
        print("  " + "  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
