"""woe-anchor: the command line of the extension (set up, install, fit, list, tag, activate, roll back, drop, schedule, monitor, migrate, report).

Every command talks to a real server: --dsn (or WOE_ANCHOR_DSN), else the
harness's private local cluster and the database named by --db. Only `setup`
and `install` create, start or install anything; the other commands connect
to what is there and say so when nothing answers. Errors print their SQLSTATE
and hint, never a traceback, and exit 2 (130 when interrupted).
"""
from __future__ import annotations

import sys


def _stopped() -> int:
    """Ctrl-C: the running statement is cancelled, and nothing half-done stays."""
    print("woe-anchor: interrupted", file=sys.stderr)
    return 130


try:  # Ctrl-C while the command starts (psycopg's import takes a while) stops it the same way
    import argparse
    import os
    import re
    import signal
    import threading
    import time
    from datetime import datetime

    import psycopg
    from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader

    from . import install, migrate, report, server
    from .text import shown
except KeyboardInterrupt:
    sys.exit(_stopped())

DEFAULT_DB = "woe_anchor_demo"


def _dsn(args) -> str:
    """The server asked for; without one, the private local cluster's address (never started here)."""
    if args.dsn or os.environ.get("WOE_ANCHOR_DSN"):
        return args.dsn or os.environ["WOE_ANCHOR_DSN"]
    port = int(os.environ.get("WOE_ANCHOR_PGPORT", server.DEFAULT_PORT))
    return psycopg.conninfo.make_conninfo(host="127.0.0.1", port=port, user="postgres", dbname=args.db)


class Failed(Exception):
    """A refusal of the command itself, printed as one line, exit 2."""


_interrupted = threading.Event()


# the times the commands read and print: UTC, in the ISO style psycopg parses, whatever the role's
# or PGOPTIONS' DateStyle and TimeZone (a report in German style failed to parse its own registry row);
# built-ins and operators from pg_catalog only (a schema on the administrator's search_path that a
# trainer can write could hold an overload of array_to_string(text[], text) that the commands' SQL
# would call, with the administrator's rights)
SESSION = "SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SET search_path = pg_catalog, pg_temp"
NOT_INSTALLED = ("CREATE EXTENSION woe_anchor CASCADE in it (docs/install.md), or on the private local cluster: "
                 "woe-anchor install --db NAME")


class Relation(str):
    """A table or view named on the command line: it means what the user's own search_path finds."""
    cast = "regclass"


class Function(Relation):
    """A function named with its argument types, e.g. audit.recertify()."""
    cast = "regprocedure"


def _given(args) -> dict:
    """The command's arguments that name relations or functions (a list for a comma-separated one)."""
    return {k: v for k, v in vars(args).items()
            if isinstance(v, Relation) or (isinstance(v, list) and v and all(isinstance(x, Relation) for x in v))}


def _lenient(loader):
    """``loader`` giving a time Python cannot hold (after year 9999, infinity) as the server wrote it."""
    class Lenient(loader):
        def load(self, data):
            try:
                return super().load(data)
            except psycopg.DataError:
                return bytes(data).decode()
    return Lenient


def _connect(args, autocommit: bool = True, extension: bool = True):
    conn = psycopg.connect(_dsn(args), autocommit=autocommit)
    # the names on the command line resolve in the user's own search_path (casts only: nothing called),
    # before SESSION narrows it; the commands then pass them schema-qualified
    oids = {k: [conn.execute(f"SELECT %s::pg_catalog.{n.cast}::pg_catalog.oid", [n]).fetchone()[0]
                for n in (v if isinstance(v, list) else [v])] for k, v in _given(args).items()}
    conn.execute(SESSION)
    for k, v in _given(args).items():
        names = [type(n)(conn.execute(f"SELECT %s::oid::{n.cast}::text", [oid]).fetchone()[0])
                 for n, oid in zip(v if isinstance(v, list) else [v], oids[k])]
        setattr(args, k, names if isinstance(v, list) else names[0])
    for name, loader in (("timestamptz", TimestamptzLoader), ("timestamp", TimestampLoader), ("date", DateLoader)):
        conn.adapters.register_loader(name, _lenient(loader))
    if not autocommit:
        conn.commit()
    if extension and not conn.execute("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'woe_anchor')"
                                      ).fetchone()[0]:
        raise Failed(f"woe_anchor is not installed in database {conn.info.dbname}", NOT_INSTALLED)
    start = time.monotonic()

    def progress(diag):
        # the fit's own notices, as the server sends them: a running progress display
        print(f"[{time.monotonic() - start:7.1f}s] {shown(diag.message_primary, lines=True)}", flush=True)

    def interrupt(signum, frame):
        # Ctrl-C cancels the running statement on the server itself: a KeyboardInterrupt raised
        # while a notice is printed is swallowed inside psycopg, and the statement would run on
        _interrupted.set()
        try:
            conn.cancel_safe()
        except psycopg.Error:
            pass
        raise KeyboardInterrupt

    conn.add_notice_handler(progress)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:   # not ignored (a background job)
        signal.signal(signal.SIGINT, interrupt)
    return conn


def _table(cur) -> str:
    names = [shown(d.name) for d in cur.description]
    rows = [["" if v is None else shown(v) for v in r] for r in cur.fetchall()]
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


def _learning(args) -> dict:
    """The fit's learning parameters given on the command line (the rest keep their defaults)."""
    given = {"n_folds": args.n_folds, "eps": args.eps, "slow_threshold_hours": args.slow_threshold_hours,
             "min_duration_hours": args.min_duration_hours, "band_schema_version": args.band_schema}
    params = {k: v for k, v in given.items() if v is not None}
    if args.half_life is not None:
        params["half_life_days"] = None if args.half_life == NONE else args.half_life
    return params


def cmd_fit(args):
    with _connect(args) as conn:  # first: it resolves the source's name
        params = {"source": args.source, **_learning(args), "activate": not args.no_activate,
                  "oof": not args.no_oof, "persist": not args.dry_run}
        for name, value in (("model_key", args.model_key), ("cutoff", args.cutoff),
                            ("replace", args.replace or None), ("scores_on_shards", args.scores_on_shards)):
            if value is not None:
                params[name] = value
        named = ", ".join(f"{k} => %({k})s" for k in params)
        key = conn.execute(f"CALL ml.fit_woe_anchor({named})", params).fetchone()[0]
    print(shown(key))


def cmd_models(args):
    with _connect(args) as conn:
        print(_table(conn.execute(
            "SELECT m.model_key, m.is_active AS active, to_char(m.created_at AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD HH24:MI:SS') AS created_utc, m.n_train_sold, r.n_folds_with_rows AS folds, "
            "round(r.oof_auc::numeric, 4) AS oof_auc, round(r.eval_auc::numeric, 4) AS eval_auc, "
            "round(m.base_rate::numeric, 4) AS base_rate, m.map_rows, m.score_rows, "
            "CASE WHEN m.pinned THEN 'pinned' ELSE '' END AS pin, array_to_string(m.tags, ',') AS tags "
            "FROM ml.woe_anchor_models() AS m JOIN ml.woe_anchor_model_registry_v1 AS r USING (model_key) "
            "ORDER BY m.created_at DESC")))


def cmd_activate(args):
    with _connect(args) as conn:
        conn.execute("SELECT ml.woe_anchor_activate(%s)", [args.model_key])
    print(f"active: {shown(args.model_key)}")


def cmd_tag(args):
    pinned = True if args.pin else False if args.unpin else None
    with _connect(args) as conn:
        print(_table(conn.execute(
            "SELECT model_key, description, array_to_string(tags, ',') AS tags, pinned "
            "FROM ml.woe_anchor_annotate(%s, %s, %s, %s)", [args.model_key, args.description, args.tag, pinned])))


def cmd_rollback(args):
    with _connect(args) as conn:
        key = conn.execute("SELECT ml.woe_anchor_rollback()").fetchone()[0]
    print(f"active: {shown(key)}")


def cmd_activations(args):
    with _connect(args) as conn:
        print(_table(conn.execute(
            "SELECT to_char(a.at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS at_utc, a.by_role, a.action, "
            "a.from_model, a.to_model, CASE WHEN a.reason ? 'gate' AND a.reason -> 'gate' <> 'null' THEN "
            "CASE WHEN (a.reason #>> '{gate,passed}')::boolean THEN 'gate passed' ELSE 'gate refused: ' || "
            "(SELECT string_agg(c.key, ', ') FROM jsonb_each(a.reason #> '{gate,checks}') AS c "
            "WHERE NOT (c.value ->> 'passed')::boolean) END END AS why "
            "FROM ml.woe_anchor_activations AS a ORDER BY a.id DESC LIMIT %s", [args.limit])))


def cmd_policy(args):
    with _connect(args) as conn:
        if args.check:
            if args.value is None:
                raise Failed(f"22023 policy {args.check} needs a value (or 'none' to remove it)")
            value = None if args.value == NONE else args.value
            cur = conn.execute("SELECT name, value, set_by FROM ml.woe_anchor_set_policy(%s, %s)", [args.check, value])
        else:
            cur = conn.execute("SELECT name, value, set_by FROM ml.woe_anchor_policy ORDER BY name")
        print(_table(cur))


def cmd_compare(args):
    with _connect(args) as conn:
        print(_table(conn.execute(
            "SELECT metric, round(a::numeric, 6) AS a, round(b::numeric, 6) AS b, round(a_minus_b::numeric, 6) "
            "AS a_minus_b, round(std_error::numeric, 6) AS std_error, round(p_value::numeric, 4) AS p_value "
            "FROM ml.woe_anchor_compare(%s, %s, %s, %s, %s)",
            [args.model_a, args.model_b, args.source, args.start, args.end])))


def cmd_drift(args):
    with _connect(args) as conn:
        print(_table(conn.execute(
            "SELECT band_name, band_value, train_rows, window_rows, round(train_share::numeric, 4) AS train_share, "
            "round(window_share::numeric, 4) AS window_share, round(band_psi::numeric, 4) AS band_psi, reading, "
            "unseen FROM ml.woe_anchor_drift(%s, %s, %s, %s)", [args.source, args.start, args.end, args.model_key])))


def cmd_realized(args):
    with _connect(args) as conn:
        print(_table(conn.execute(
            "SELECT week, n_rows, n_slow21, round(auc::numeric, 4) AS auc, round(logloss::numeric, 4) AS logloss, "
            "round(mean_p::numeric, 4) AS mean_p, round(observed_rate::numeric, 4) AS observed_rate "
            "FROM ml.woe_anchor_realized(%s, %s)", [args.source, args.model_key])))


def cmd_monitor(args):
    with _connect(args) as conn:
        cur = conn.execute("SELECT kind, subject, round(value::numeric, 4) AS value, round(threshold::numeric, 4) "
                           "AS threshold FROM ml.woe_anchor_monitor(%s, %s, window_days => %s, channel => %s)",
                           [args.source, args.model_key, args.window_days, args.channel])
        print(_table(cur) if cur.rowcount else "no alerts")


def cmd_drop(args):
    with _connect(args) as conn:
        if not conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [args.model_key]).fetchone()[0]:
            raise Failed(f"P0002 model {args.model_key!r} does not exist", LIST_MODELS)
    print(f"dropped: {shown(args.model_key)}")


def cmd_schedule(args):
    with _connect(args) as conn:  # first: it resolves the source's name
        params = {"job_name": args.job_name, "schedule": args.schedule, "source": args.source, **_learning(args),
                  "activate": not args.no_activate}
        named = ", ".join(f"{k} => %({k})s" for k in params)
        job = conn.execute(f"SELECT ml.schedule_woe_anchor_fit({named})", params).fetchone()[0]
    print(f"job {job}: {shown(args.job_name)} '{shown(args.schedule)}' fits {shown(args.source)}")


def cmd_unschedule(args):
    with _connect(args) as conn:
        if not conn.execute("SELECT ml.unschedule_woe_anchor_fit(%s)", [args.job_name]).fetchone()[0]:
            raise Failed(f"P0002 no scheduled fit {args.job_name!r} of yours in this database: nothing unscheduled")
    print(f"unscheduled: {shown(args.job_name)}")


def cmd_report(args):
    path = args.output or f"woe_anchor_report_{''.join(c if c.isalnum() or c in '-_' else '_' for c in args.model_key)}.html"
    with _connect(args) as conn:
        try:
            report.write(conn, args.model_key, path)
        except report.ReportError as e:
            raise Failed(f"P0002 {e}", LIST_MODELS) from None
    print(path)


def cmd_migrate(args):
    """Take over the Python trainer's tables and the views on them (migrate.py): one transaction."""
    # COLUMN=A maps a column; COLUMN=A,B takes the first of A and B that is not NULL
    columns = {k: v.split(",") if "," in v else v for k, v in args.map or ()}
    with _connect(args, autocommit=False, extension=False) as conn:
        try:
            if args.rollback:
                since = migrate.rollback(conn, args.legacy_schema, force=args.force)
                conn.commit()
                print("rolled back: the trainer's tables and views are back in ml"
                      + (f"; dropped {len(since)} models fitted since" if since else ""))
                return 0
            plan = migrate.inspect(conn, args.legacy_schema, relations=args.relations,
                                   columns=columns, source=args.source, hook=args.activation_hook, guard=args.guard)
            if args.dry_run:
                print(shown(migrate.describe(plan), lines=True))
                return 2 if plan.blockers else 0  # the plan lists them: the migration would stop there
            summary = migrate.run(conn, plan, args.recreate_views)
            conn.commit()
        except migrate.MigrateError as e:
            return _fail(str(e))
        active = conn.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1 WHERE is_active").fetchone()
    imported = [k for k, outcome, _ in summary if outcome == "imported"]
    print(f"imported {len(imported)} models from {args.legacy_schema}; active: {shown(active[0]) if active else 'none'}")
    for key, outcome, mapped in summary:
        if mapped:
            print(f"  {shown(key)} ({outcome}): {shown(mapped)}")
    if plan.views:
        print(f"re-created {len(plan.views)} views over woe_anchor: {shown(', '.join(v.name for v in plan.views))}")
    return 0


LIST_MODELS = "List models with `woe-anchor models`."
# what a server hint names (an SQL parameter, value or call) -> what does it on this command line
_IN_CLI = {"replace => true": "--replace", "oof => false": "--no-oof", "n_folds => 1": "--n-folds 1",
           "scores_on_shards => false": "--scores-here", "activate => false": "--no-activate",
           "persist => false": "--dry-run", "half_life_days": "--half-life",
           "NULL for no decay": "`--half-life none` for no decay", "window_start and window_end": "--start and --end",
           "columns => '{\"t0\": \"edited_date\"}'": "--map t0=edited_date",
           "ml.woe_anchor_models()": "`woe-anchor models`", "ml.woe_anchor_activate(model_key)": "`woe-anchor activate KEY`",
           "ml.woe_anchor_activations": "`woe-anchor activations`", "ml.woe_anchor_drop_model": "`woe-anchor drop KEY`",
           "CALL ml.fit_woe_anchor(..., replace => true)": "`woe-anchor fit SOURCE --replace`",
           "CALL ml.fit_woe_anchor(...)": "`woe-anchor fit SOURCE`"}
# the longest first: a call that holds a parameter is rewritten whole
_IN_CLI_RE = re.compile("|".join(map(re.escape, sorted(_IN_CLI, key=len, reverse=True))))


def _cli_hint(hint: str) -> str:
    return _IN_CLI_RE.sub(lambda m: _IN_CLI[m.group(0)], hint)


def _version() -> str:
    control = (install.REPO / "woe_anchor.control").read_text()
    return "woe-anchor " + re.search(r"default_version\s*=\s*'([^']+)'", control)[1]


NONE = "none"   # what removes a setting on the command line


def _number_or_none(text: str) -> float | str:
    """An argument that is a number, or 'none' (``NONE``): argparse's usage error otherwise."""
    if text.strip().lower() == NONE:
        return NONE
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def _int(text: str) -> int:
    """A whole number SQL's int holds (the server judges the rest)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not -2 ** 31 <= value < 2 ** 31:
        raise argparse.ArgumentTypeError(f"expected a whole number from {-2 ** 31} to {2 ** 31 - 1}, got {text!r}")
    return value


def _count(text: str) -> int:
    """A whole number, 0 or more."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got {text!r}")
    return int(text)


def _time(text: str) -> str:
    """An ISO 8601 date or time, passed on as written (the server reads it, UTC unless it says another
    zone); a year past 9999, which Python cannot hold, is the server's to judge."""
    try:
        datetime.fromisoformat(re.sub(r"^\s*\d{5,}", "2000", text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date or time such as 2026-08-01 or '2026-08-01 12:00+00', "
                                         f"got {text!r}") from None
    return text


def _column_map(text: str) -> tuple[str, str]:
    """COLUMN=SOURCE_COLUMN (several source columns comma-separated)."""
    column, sep, source = text.partition("=")
    if not (sep and column and source):
        raise argparse.ArgumentTypeError(f"expected COLUMN=SOURCE_COLUMN, got {text!r}")
    return column, source


def _parser() -> argparse.ArgumentParser:
    # --dsn and --db are read before or after the command (SUPPRESS: a sub-command's absent
    # option does not overwrite the one given before it)
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument("--dsn", default=argparse.SUPPRESS,
                      help="libpq connection string (default: WOE_ANCHOR_DSN, else the local cluster)")
    conn.add_argument("--db", default=argparse.SUPPRESS, help=f"database on the local cluster (default {DEFAULT_DB})")
    learning = argparse.ArgumentParser(add_help=False)
    learning.add_argument("--n-folds", type=_int)
    learning.add_argument("--half-life", metavar="DAYS", type=_number_or_none,
                          help="half life of the time decay in days, or 'none'")
    learning.add_argument("--eps", type=float)
    learning.add_argument("--slow-threshold-hours", type=float)
    learning.add_argument("--min-duration-hours", type=float)
    learning.add_argument("--band-schema", type=_int)
    learning.add_argument("--no-activate", action="store_true")

    parser = argparse.ArgumentParser(prog="woe-anchor", description=__doc__.splitlines()[0], parents=[conn])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, run, text, *parents):
        p = sub.add_parser(name, help=text, parents=[conn, *parents])
        p.set_defaults(run=run)
        return p

    command("setup", cmd_setup, "create and start the private local cluster; print its DSN")
    command("install", cmd_install, "make install, then CREATE EXTENSION in --db")
    f = command("fit", cmd_fit, "CALL ml.fit_woe_anchor, showing its progress as it goes", learning)
    f.add_argument("source", type=Relation)
    f.add_argument("--model-key")
    f.add_argument("--cutoff", type=_time, help="ISO 8601 date or time, UTC unless it names a zone (default: the "
                                               "latest sale less 7 days)")
    f.add_argument("--no-oof", action="store_true", help="score the training rows in-sample")
    f.add_argument("--dry-run", action="store_true", help="fit and report, store nothing (persist => false)")
    f.add_argument("--replace", action="store_true")
    where = f.add_mutually_exclusive_group()
    where.add_argument("--scores-on-shards", dest="scores_on_shards", action="store_const", const=True,
                       help="a sharded source: write the scores on the shards, or fail (default: there when "
                            "every shard is ready for them, else here)")
    where.add_argument("--scores-here", dest="scores_on_shards", action="store_const", const=False,
                       help="a sharded source: write the scores on this server (their rows travel here)")
    command("models", cmd_models, "list the stored models")
    for name, run, text in (("activate", cmd_activate, "make a model the active one"),
                            ("drop", cmd_drop, "drop a model and its artifacts")):
        command(name, run, text).add_argument("model_key")
    tag = command("tag", cmd_tag, "describe, tag or pin a model (a pinned model is never pruned)")
    tag.add_argument("model_key")
    tag.add_argument("--description")
    tag.add_argument("--tag", action="append", help="a tag; repeat for several (they replace the model's tags)")
    pin = tag.add_mutually_exclusive_group()
    pin.add_argument("--pin", action="store_true")
    pin.add_argument("--unpin", action="store_true")
    command("rollback", cmd_rollback, "re-activate the model that served before the active one")
    command("activations", cmd_activations, "the activation log, newest first").add_argument(
        "--limit", type=_count, default=20)
    pol = command("policy", cmd_policy, "show the activation policy, or set one of its checks or retention settings "
                                        "(value 'none' removes it)")
    pol.add_argument("check", nargs="?", metavar="name",
                     help="a check of the activation gate (min_train_sold, min_oof_auc, min_eval_auc, max_auc_drop) "
                          "or a retention setting (keep_models, keep_days)")
    pol.add_argument("value", nargs="?", type=_number_or_none, help="its limit, or 'none'")
    cmp = command("compare", cmd_compare, "two models on the same labelled rows: AUC (DeLong) and log loss")
    cmp.add_argument("model_a")
    cmp.add_argument("model_b")
    cmp.add_argument("source", type=Relation)
    cmp.add_argument("--start", type=_time, help="window start (default: the later cutoff)")
    cmp.add_argument("--end", type=_time, help="window end (default: 7 days after the start)")
    dr = command("drift", cmd_drift, "PSI of each band between training and the source's rows with t0 in a window")
    dr.add_argument("source", type=Relation)
    dr.add_argument("start", type=_time)
    dr.add_argument("end", type=_time)
    dr.add_argument("--model-key", help="default: the active model")
    rz = command("realized", cmd_realized, "AUC, log loss and calibration per week of settled listings since the cutoff")
    rz.add_argument("source", type=Relation)
    rz.add_argument("--model-key", help="default: the active model")
    mo = command("monitor", cmd_monitor, "drift and realized performance, recorded, with alerts (table and NOTIFY)")
    mo.add_argument("source", type=Relation)
    mo.add_argument("--model-key", help="default: the active model")
    mo.add_argument("--window-days", type=float, default=7.0)
    mo.add_argument("--channel", default="woe_anchor", help="NOTIFY channel of the alerts")
    s = command("schedule", cmd_schedule, "schedule a fit with pg_cron (idempotent by job name)", learning)
    s.add_argument("job_name")
    s.add_argument("schedule")
    s.add_argument("source", type=Relation)
    m = command("migrate", cmd_migrate, "take over the Python trainer's tables and the views on them (one transaction)")
    m.add_argument("--legacy-schema", default="woe_anchor_trainer",
                   help="where the trainer's tables are moved and kept (default woe_anchor_trainer)")
    m.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    m.add_argument("--recreate-views", action="store_true",
                   help="drop the views that read the trainer's tables and re-create them over woe_anchor")
    m.add_argument("--source", type=Relation,
                   help="the relation the live views read (default: a source view over --relations)")
    m.add_argument("--relations", type=lambda text: [Relation(r) for r in text.split(",")], help="comma-separated relations the source view joins, the base first "
                                       "(default: those the trainer's banding view reads)")
    m.add_argument("--map", action="append", metavar="COLUMN=SOURCE_COLUMN", type=_column_map,
                   help="a source contract column held under another name, e.g. sold_time=sold_date "
                        "(t0=t0,edited_date: the first not NULL)")
    m.add_argument("--activation-hook", metavar="FUNCTION", type=Function,
                   help="a function every activation runs: SECURITY DEFINER, of a role that is not a superuser "
                        "(docs/migration.md), e.g. 'audit.recertify_on_activation(text)'")
    m.add_argument("--guard", help="the SQL select list woe_anchor's fail-closed view runs first (default: the "
                                   "guard call found in the trainer's fail-closed view; '' for none)")
    m.add_argument("--rollback", action="store_true", help="put the trainer's tables and views back")
    m.add_argument("--force", action="store_true", help="with --rollback: drop models fitted since the migration")
    r = command("report", cmd_report, "write one self-contained HTML page with a model's plots")
    r.add_argument("model_key")
    r.add_argument("-o", "--output", help="file to write (default woe_anchor_report_<model_key>.html)")
    command("unschedule", cmd_unschedule, "remove a scheduled fit").add_argument("job_name")
    return parser


def _fail(message: str, hint: str | None = None) -> int:
    print(f"woe-anchor: {shown(message, lines=True)}", file=sys.stderr)
    if hint:
        print(f"hint: {shown(hint, lines=True)}", file=sys.stderr)
    return 2


def _not_connected(args, e: psycopg.OperationalError) -> int:
    """libpq's message, every line of it; what to do when no local cluster answers or the database is missing."""
    said = "\n".join(re.sub(r"\s+", " ", line).strip() for line in str(e).splitlines() if line.strip())
    said = said.removeprefix("connection failed: ")
    local = not (args.dsn or os.environ.get("WOE_ANCHOR_DSN"))
    if re.search(r'database ".*" does not exist', said):   # the server answered: only the database is missing
        return _fail(f"cannot connect: {said}", f"woe-anchor install --db {args.db} creates it on the private local "
                     "cluster, with woe_anchor; or name another with --db" if local else
                     "Name an existing database in --dsn (dbname=...)")
    if local and "FATAL:" not in said:   # nothing answered at all
        return _fail(f"no local cluster answers at {_dsn(args)}: {said}",
                     "Pass --dsn (or set WOE_ANCHOR_DSN), or start the private cluster: woe-anchor setup")
    return _fail(f"cannot connect: {said}")


def main(argv=None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return _stopped()


def _main(argv) -> int:
    args = _parser().parse_args(argv)
    args.dsn = getattr(args, "dsn", None)
    args.db = getattr(args, "db", DEFAULT_DB)
    try:
        return args.run(args) or 0
    except Failed as e:
        return _fail(*e.args)
    except psycopg.Error as e:
        if isinstance(e, psycopg.errors.QueryCanceled) and _interrupted.is_set():   # our Ctrl-C cancelled it
            return _stopped()
        if e.sqlstate is None and isinstance(e, psycopg.OperationalError):  # not connected
            return _not_connected(args, e)
        diag = e.diag
        hint = diag.message_hint and _cli_hint(diag.message_hint)
        return _fail(f"{diag.sqlstate or ''} {diag.message_primary or e}".strip(), hint)
    except OSError as e:  # a file the command writes or reads
        return _fail(f"{e.strerror}: {e.filename}" if e.filename else str(e))


if __name__ == "__main__":
    sys.exit(main())
