"""woe-anchor: the command line of the extension (set up, install, fit, list, activate, drop, schedule, migrate, report).

Every command talks to a real server: --dsn (or WOE_ANCHOR_DSN), else the
harness's private local cluster and the database named by --db.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import psycopg

from . import install, migrate, report, server

DEFAULT_DB = "woe_anchor_demo"


def _dsn(args) -> str:
    if args.dsn or os.environ.get("WOE_ANCHOR_DSN"):
        return args.dsn or os.environ["WOE_ANCHOR_DSN"]
    return server.ensure_local().dsn_for(args.db)


def _connect(args):
    conn = psycopg.connect(_dsn(args), autocommit=True)
    start = time.monotonic()

    def progress(diag):
        # the fit's own notices, as the server sends them: a running progress display
        print(f"[{time.monotonic() - start:7.1f}s] {diag.message_primary}", flush=True)

    conn.add_notice_handler(progress)
    return conn


def _table(cur) -> str:
    names = [d.name for d in cur.description]
    rows = [["" if v is None else str(v) for v in r] for r in cur.fetchall()]
    widths = [max(len(x) for x in col) for col in zip(names, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(names), line(["-" * w for w in widths]), *map(line, rows)])


def cmd_setup(args):
    srv = server.ensure_local()
    print(srv.dsn)


def cmd_install(args):
    srv = server.ensure_local()
    install.make_install(srv)
    with psycopg.connect(srv.dsn_for("postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [args.db]).fetchone():
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(args.db)))
    with psycopg.connect(srv.dsn_for(args.db), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS woe_anchor CASCADE")
        print(conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0])


def cmd_fit(args):
    params = {"source": args.source, "n_folds": args.n_folds, "activate": not args.no_activate,
              "band_schema_version": args.band_schema, "scores_on_shards": args.scores_on_shards}
    if args.model_key:
        params["model_key"] = args.model_key
    if args.replace:
        params["replace"] = True
    named = ", ".join(f"{k} => %({k})s" for k in params)
    with _connect(args) as conn:
        key = conn.execute(f"CALL ml.fit_woe_anchor({named})", params).fetchone()[0]
    print(key)


def cmd_models(args):
    with _connect(args) as conn:
        print(_table(conn.execute("SELECT model_key, is_active, created_at, n_train_sold, base_rate, map_rows, "
                                  "score_rows FROM ml.woe_anchor_models()")))


def cmd_activate(args):
    with _connect(args) as conn:
        conn.execute("SELECT ml.woe_anchor_activate(%s)", [args.model_key])
    print(f"active: {args.model_key}")


def cmd_drop(args):
    with _connect(args) as conn:
        dropped = conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [args.model_key]).fetchone()[0]
    print(f"dropped: {args.model_key}" if dropped else f"no model {args.model_key}")
    return 0 if dropped else 1


def cmd_schedule(args):
    with _connect(args) as conn:
        job = conn.execute("SELECT ml.schedule_woe_anchor_fit(%s, %s, %s, n_folds => %s)",
                           [args.job_name, args.schedule, args.source, args.n_folds]).fetchone()[0]
    print(f"job {job}: {args.job_name} '{args.schedule}' fits {args.source}")


def cmd_unschedule(args):
    with _connect(args) as conn:
        gone = conn.execute("SELECT ml.unschedule_woe_anchor_fit(%s)", [args.job_name]).fetchone()[0]
    print(f"unscheduled: {args.job_name}" if gone else f"no job {args.job_name}")


def cmd_report(args):
    path = args.output or f"woe_anchor_report_{''.join(c if c.isalnum() or c in '-_' else '_' for c in args.model_key)}.html"
    with _connect(args) as conn:
        try:
            report.write(conn, args.model_key, path)
        except report.ReportError as e:
            print(f"woe-anchor: {e}", file=sys.stderr)
            return 1
    print(path)


def cmd_migrate(args):
    """Take over the Python trainer's tables and the views on them (migrate.py): one transaction."""
    # COLUMN=A maps a column; COLUMN=A,B takes the first of A and B that is not NULL
    columns = {k: v.split(",") if "," in v else v for k, v in (item.split("=", 1) for item in args.map or ())}
    with psycopg.connect(_dsn(args)) as conn:
        try:
            if args.rollback:
                since = migrate.rollback(conn, args.legacy_schema, force=args.force)
                conn.commit()
                print("rolled back: the trainer's tables and views are back in ml"
                      + (f"; dropped {len(since)} models fitted since" if since else ""))
                return 0
            plan = migrate.inspect(conn, args.legacy_schema, relations=args.relations and args.relations.split(","),
                                   columns=columns, source=args.source, hook=args.activation_hook, guard=args.guard)
            if args.dry_run:
                print(migrate.describe(plan))
                return 0
            summary = migrate.run(conn, plan, args.recreate_views)
            conn.commit()
        except migrate.MigrateError as e:
            print(f"woe-anchor: {e}", file=sys.stderr)
            return 2
        active = conn.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1 WHERE is_active").fetchone()
    imported = [k for k, outcome, _ in summary if outcome == "imported"]
    print(f"imported {len(imported)} models from {args.legacy_schema}; active: {active[0] if active else 'none'}")
    for key, outcome, mapped in summary:
        if mapped:
            print(f"  {key} ({outcome}): {mapped}")
    if plan.views:
        print(f"re-created {len(plan.views)} views over woe_anchor: {', '.join(v.name for v in plan.views)}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="woe-anchor", description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="libpq connection string (default: WOE_ANCHOR_DSN, else the local cluster)")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"database on the local cluster (default {DEFAULT_DB})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="create and start the private local cluster; print its DSN").set_defaults(run=cmd_setup)
    sub.add_parser("install", help="make install, then CREATE EXTENSION in --db").set_defaults(run=cmd_install)
    f = sub.add_parser("fit", help="CALL ml.fit_woe_anchor, showing its progress as it goes")
    f.add_argument("source")
    f.add_argument("--model-key")
    f.add_argument("--n-folds", type=int, default=5)
    f.add_argument("--band-schema", type=int, default=1)
    f.add_argument("--no-activate", action="store_true")
    f.add_argument("--replace", action="store_true")
    f.add_argument("--scores-on-shards", action="store_true")
    f.set_defaults(run=cmd_fit)
    sub.add_parser("models", help="list the stored models").set_defaults(run=cmd_models)
    for name, run, text in (("activate", cmd_activate, "make a model the active one"),
                            ("drop", cmd_drop, "drop a model and its artifacts")):
        p = sub.add_parser(name, help=text)
        p.add_argument("model_key")
        p.set_defaults(run=run)
    s = sub.add_parser("schedule", help="schedule a fit with pg_cron (idempotent by job name)")
    s.add_argument("job_name")
    s.add_argument("schedule")
    s.add_argument("source")
    s.add_argument("--n-folds", type=int, default=5)
    s.set_defaults(run=cmd_schedule)
    m = sub.add_parser("migrate", help="take over the Python trainer's tables and the views on them (one transaction)")
    m.add_argument("--legacy-schema", default="woe_anchor_trainer",
                   help="where the trainer's tables are moved and kept (default woe_anchor_trainer)")
    m.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    m.add_argument("--recreate-views", action="store_true",
                   help="drop the views that read the trainer's tables and re-create them over woe_anchor")
    m.add_argument("--source", help="the relation the live views read (default: a source view over --relations)")
    m.add_argument("--relations", help="comma-separated relations the source view joins, the base first "
                                       "(default: those the trainer's banding view reads)")
    m.add_argument("--map", action="append", metavar="COLUMN=SOURCE_COLUMN",
                   help="a source contract column held under another name, e.g. sold_time=sold_date "
                        "(t0=t0,edited_date: the first not NULL)")
    m.add_argument("--activation-hook", metavar="FUNCTION",
                   help="a function every activation runs, e.g. 'audit.recertify_woe_anchor_store_v1()'")
    m.add_argument("--guard", help="the SQL select list woe_anchor's fail-closed view runs first (default: the "
                                   "guard call found in the trainer's fail-closed view; '' for none)")
    m.add_argument("--rollback", action="store_true", help="put the trainer's tables and views back")
    m.add_argument("--force", action="store_true", help="with --rollback: drop models fitted since the migration")
    m.set_defaults(run=cmd_migrate)
    r = sub.add_parser("report", help="write one self-contained HTML page with a model's plots")
    r.add_argument("model_key")
    r.add_argument("-o", "--output", help="file to write (default woe_anchor_report_<model_key>.html)")
    r.set_defaults(run=cmd_report)
    u = sub.add_parser("unschedule", help="remove a scheduled fit")
    u.add_argument("job_name")
    u.set_defaults(run=cmd_unschedule)
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except psycopg.Error as e:
        diag = e.diag
        print(f"woe-anchor: {diag.sqlstate or ''} {diag.message_primary or e}".strip(), file=sys.stderr)
        if diag.message_hint:
            print(f"hint: {diag.message_hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
