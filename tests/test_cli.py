"""The woe-anchor command, run as a real process against real databases."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

import cases
from conftest import fit
from test_schedule import cron  # noqa: F401 (a fixture)
from woe_anchor_harness import cli, install


def _cli(dsn, *args):
    exe = Path(sys.executable).parent / "woe-anchor"
    if not exe.exists():
        found = shutil.which("woe-anchor")
        if found is None:
            pytest.fail("the woe-anchor command is not installed (harness/run.sh installs it into the venv)")
        exe = Path(found)
    env = dict(os.environ, WOE_ANCHOR_DSN="")
    return subprocess.run([str(exe), "--dsn", dsn, *args], capture_output=True, text=True, env=env, timeout=300)


def test_fit_list_activate_and_drop_from_the_command_line(conn, dsn):
    cases.load(conn, "cli_src", cases.make_rows(seed=99, n=900))
    fitted = _cli(dsn, "fit", "cli_src", "--model-key", "cli_model", "--n-folds", "3", "--no-activate", "--replace")
    assert fitted.returncode == 0, fitted.stderr
    lines = fitted.stdout.splitlines()
    assert lines[-1] == "cli_model"
    progress = [line for line in lines if line.startswith("[") and "s] [woe]" in line]
    assert any("trained slow21 WOE anchor" in line for line in progress), "the fit's notices, as it runs"
    listed = _cli(dsn, "models")
    assert listed.returncode == 0 and "cli_model" in listed.stdout and listed.stdout.startswith("model_key")
    assert _cli(dsn, "activate", "cli_model").returncode == 0
    assert conn.execute("SELECT is_active FROM ml.woe_anchor_model_registry_v1 "
                        "WHERE model_key = 'cli_model'").fetchone()[0] is True
    bad = _cli(dsn, "fit", "no_such_table")
    assert bad.returncode == 2 and "no_such_table" in bad.stderr and "Traceback" not in bad.stderr
    assert _cli(dsn, "drop", "cli_model").returncode == 0
    again = _cli(dsn, "drop", "cli_model")
    assert again.returncode == 2 and again.stderr.startswith("woe-anchor: P0002 model 'cli_model' does not exist")


def test_the_command_line_speaks_options_and_never_a_traceback(conn, dsn, tmp_path):
    cases.load(conn, "cli_opts", cases.make_rows(seed=103, n=900))
    exe_version = _cli(dsn, "--version")
    assert exe_version.returncode == 0 and exe_version.stdout.startswith("woe-anchor 0.")
    # options after the command, the learning parameters, a dry run that stores nothing
    dry = _cli(dsn, "fit", "cli_opts", "--model-key", "cli_dry", "--half-life", "none", "--eps", "1.0",
               "--cutoff", str(cases.to_datetime(cases.cutoff_at_a_sale(cases.make_rows(seed=103, n=900)))),
               "--no-oof", "--dry-run", "--no-activate")
    assert dry.returncode == 0, dry.stderr
    assert any("persist => false: nothing written" in line for line in dry.stdout.splitlines())
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1 WHERE model_key = 'cli_dry'"
                        ).fetchone()[0] == 0
    fitted = _cli(dsn, "fit", "cli_opts", "--model-key", "cli_opts_model", "--no-activate", "--n-folds", "3")
    assert fitted.returncode == 0, fitted.stderr
    listed = _cli(dsn, "models").stdout.splitlines()
    starts = {name: listed[0].index(name) for name in listed[0].split()}
    row = next(line for line in listed if line.startswith("cli_opts_model "))

    def cell(name):
        after = [s for s in starts.values() if s > starts[name]]
        return row[starts[name]:min(after, default=len(row))].strip()
    assert cell("folds") == "3" and len(cell("oof_auc")) <= 6 and float(cell("oof_auc")) > 0.5
    # a server hint names the option, not the SQL parameter
    again = _cli(dsn, "fit", "cli_opts", "--model-key", "cli_opts_model")
    assert again.returncode == 2 and "hint: Pass --replace to replace it" in again.stderr
    # files and unknown keys: one line each, exit 2
    unwritable = _cli(dsn, "report", "cli_opts_model", "-o", "/nonexistent/dir/x.html")
    assert unwritable.returncode == 2 and "No such file or directory: /nonexistent/dir/x.html" in unwritable.stderr
    unknown = _cli(dsn, "report", "cli_nope")
    assert unknown.returncode == 2 and "P0002" in unknown.stderr
    # arguments of the wrong shape: argparse's usage error, before any connection
    shapes = {"expected a number or 'none', got 'abc'": ("policy", "min_oof_auc", "abc"),
              "expected a number or 'none', got 'soon'": ("fit", "cli_opts", "--half-life", "soon"),
              "expected COLUMN=SOURCE_COLUMN, got 'garbage'": ("migrate", "--dry-run", "--map", "garbage")}
    shaped = {message: _cli(dsn, *args) for message, args in shapes.items()}
    for message, done in shaped.items():
        assert done.returncode == 2 and message in done.stderr and "usage: woe-anchor" in done.stderr, done.stderr
    for done in (dry, again, unwritable, unknown, *shaped.values()):
        assert "Traceback" not in done.stderr + done.stdout
    conn.execute("SELECT ml.woe_anchor_drop_model('cli_opts_model')")


def test_without_a_server_the_command_line_touches_nothing(tmp_path):
    """No --dsn and no cluster on the port: a clear error, and no cluster created or started."""
    exe = Path(sys.executable).parent / "woe-anchor"
    env = dict(os.environ, WOE_ANCHOR_DSN="", WOE_ANCHOR_PGPORT="54998", WOE_ANCHOR_PGDATA=str(tmp_path / "pg"))
    done = subprocess.run([str(exe), "models"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and "no local cluster answers" in done.stderr and "woe-anchor setup" in done.stderr
    assert not (tmp_path / "pg").exists()


def test_an_interrupted_fit_exits_130_and_leaves_nothing(conn, dsn):
    """Ctrl-C while the fit waits (here for the registry lock another session holds)."""
    cases.load(conn, "cli_int", cases.make_rows(seed=104, n=900))
    exe = Path(sys.executable).parent / "woe-anchor"
    with psycopg.connect(dsn) as blocker:
        blocker.execute("LOCK TABLE ml.woe_anchor_model_registry_v1 IN EXCLUSIVE MODE")
        # as from a terminal, even when the tests run as a background job (which ignores SIGINT)
        running = subprocess.Popen([str(exe), "--dsn", dsn, "fit", "cli_int", "--model-key", "cli_interrupted"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=dict(os.environ, WOE_ANCHOR_DSN=""),
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not conn.execute(
                "SELECT EXISTS (SELECT FROM pg_locks WHERE NOT granted "
                "AND relation = 'ml.woe_anchor_model_registry_v1'::regclass)").fetchone()[0]:
            time.sleep(0.05)
        running.send_signal(signal.SIGINT)
        out, err = running.communicate(timeout=60)
        blocker.rollback()
    assert running.returncode == 130, (out, err)
    assert "interrupted" in err and "Traceback" not in err + out
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1 WHERE model_key = 'cli_interrupted'"
                        ).fetchone()[0] == 0


TRAINER_DDL = """
CREATE SCHEMA ml;
CREATE TABLE ml.woe_anchor_model_registry_v1 (
    model_key text PRIMARY KEY, train_cutoff_ts timestamptz NOT NULL, half_life_days float8, eps float8 NOT NULL,
    n_folds int NOT NULL, band_schema_version int NOT NULL, code_sha256 text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), is_active boolean NOT NULL DEFAULT false,
    base_rate float8, base_logit float8, dsold_t1 float8, dsold_t2 float8, dsold_t3 float8, dsold_t4 float8);
CREATE TABLE ml.woe_anchor_cuts_v1 (model_key text REFERENCES ml.woe_anchor_model_registry_v1, fold_id int,
    c1 float8, c2 float8);
CREATE TABLE ml.woe_anchor_map_v1 (model_key text REFERENCES ml.woe_anchor_model_registry_v1, fold_id int,
    band_name text, band_value text, woe float8, sum_w_pos float8, sum_w_neg float8);
CREATE TABLE ml.woe_anchor_scores_v1 (model_key text, generation int, listing_id bigint, t0 timestamptz,
    fold_id int, is_oof boolean, woe_logit float8, woe_p float8, PRIMARY KEY (model_key, generation, listing_id, t0));
"""
COPIES = {
    "woe_anchor_model_registry_v1": "model_key, train_cutoff_ts, half_life_days, eps, n_folds, band_schema_version, "
                                    "code_sha256, created_at, is_active, base_rate, base_logit, dsold_t1, dsold_t2, "
                                    "dsold_t3, dsold_t4",
    "woe_anchor_cuts_v1": "model_key, fold_id, c1, c2",
    "woe_anchor_map_v1": "model_key, fold_id, band_name, band_value, woe, sum_w_pos, sum_w_neg",
    "woe_anchor_scores_v1": "model_key, generation, listing_id, t0, fold_id, is_oof, woe_logit, woe_p",
}


def test_migrate_adopts_the_trainers_tables(conn, server, tmp_path):
    """A trainer database (its tables hold this extension's models, docs/contract.md columns only) migrates intact."""
    rows = cases.make_rows(seed=98, n=900)
    cases.load(conn, "mig_src", rows)
    old = fit(conn, "mig_src", model_key="trainer_old", n_folds=3, replace=True, activate=False)
    new = fit(conn, "mig_src", model_key="trainer_new", replace=True)
    name = f"woe_anchor_trainer_{os.getpid()}"
    trainer_dsn = install.fresh_database(server, name, extension=False)
    try:
        with psycopg.connect(trainer_dsn, autocommit=True) as t:
            t.execute(TRAINER_DDL)
            cases.load(t, "mig_src", rows)
            for table, cols in COPIES.items():
                data = conn.execute(f"SELECT {cols} FROM ml.{table} WHERE model_key IN (%s, %s)", [old, new]).fetchall()
                with t.cursor().copy(f"COPY ml.{table} ({cols}) FROM STDIN") as copy:
                    for r in data:
                        copy.write_row(r)
        done = _cli(trainer_dsn, "migrate")
        assert done.returncode == 0, done.stderr
        assert "imported 2 models" in done.stdout and "active: trainer_new" in done.stdout
        score = "SELECT generation, listing_id, t0, woe_logit FROM ml.woe_anchor_score('mig_src', %s) ORDER BY 1, 2, 3"
        stored = "SELECT generation, listing_id, t0, fold_id, is_oof, woe_logit FROM ml.woe_anchor_scores_v1 " \
                 "WHERE model_key = %s ORDER BY 1, 2, 3"
        cuts = "SELECT fold_id, base_rate, n_learned FROM ml.woe_anchor_cuts_v1 WHERE model_key = %s ORDER BY 1"
        with psycopg.connect(trainer_dsn) as t:
            for key in (old, new):
                assert t.execute(score, [key]).fetchall() == conn.execute(score, [key]).fetchall()
                assert t.execute(stored, [key]).fetchall() == conn.execute(stored, [key]).fetchall()
                got, want = t.execute(cuts, [key]).fetchall(), conn.execute(cuts, [key]).fetchall()
                assert [(f, n) for f, _, n in got] == [(f, n) for f, _, n in want]
                assert all(abs(a[1] - b[1]) <= 1e-12 for a, b in zip(got, want)), "base rates from the map's sums"
            assert t.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1 WHERE is_active").fetchall() \
                == [(new,)]
            assert t.execute("SELECT count(*) FROM woe_anchor_trainer.woe_anchor_scores_v1").fetchone()[0] > 0
            assert t.execute("SELECT ml.woe_anchor_assert_ready()").fetchone()[0]
        # an imported model has no score bins nor row counts; its report still shows its WOE maps
        page = _cli(trainer_dsn, "report", new, "-o", os.path.join(tmp_path, "imported.html"))
        assert page.returncode == 0, page.stderr
        html = open(os.path.join(tmp_path, "imported.html"), encoding="utf-8").read()
        with psycopg.connect(trainer_dsn) as t:
            n_bands = t.execute("SELECT count(DISTINCT band_name) FROM ml.woe_anchor_model_bands(%s)", [new]).fetchone()[0]
        assert "records no score bins" in html and html.split("<h2>Bands</h2>")[1].count("<h3>") == n_bands > 0
    finally:
        install.drop_database(server, name)


def test_lifecycle_and_monitoring_from_the_command_line(conn, dsn):
    """rollback, activations, policy, compare and drift: the same functions, the same conventions."""
    cases.load(conn, "cli_lc", cases.make_rows(seed=98, n=4000, n_days=40))
    cutoff = "2026-04-01 00:00+00"
    first = fit(conn, "cli_lc", model_key="cli_lc_1", cutoff=cutoff, replace=True)
    second = fit(conn, "cli_lc", model_key="cli_lc_2", cutoff=cutoff, replace=True, half_life_days=20.0)
    try:
        back = _cli(dsn, "rollback")
        assert back.returncode == 0 and back.stdout.strip() == f"active: {first}", back.stderr
        log = _cli(dsn, "activations", "--limit", "2")
        assert log.returncode == 0 and log.stdout.splitlines()[2].split()[3:6] == ["rollback", second, first]
        policy = _cli(dsn, "policy", "min_oof_auc", "0.5")
        assert policy.returncode == 0 and "min_oof_auc  0.5" in policy.stdout
        assert "min_oof_auc" not in _cli(dsn, "policy", "min_oof_auc", "none").stdout
        bad = _cli(dsn, "policy", "min_auc", "0.5")
        assert bad.returncode == 2 and bad.stderr.startswith("woe-anchor: 22023 unknown policy: 'min_auc'")
        compared = _cli(dsn, "compare", first, second, "cli_lc")
        assert compared.returncode == 0 and compared.stdout.splitlines()[4].startswith("auc"), compared.stdout
        tagged = _cli(dsn, "tag", first, "--description", "first one", "--tag", "a", "--tag", "b", "--pin")
        assert tagged.returncode == 0 and tagged.stdout.splitlines()[2].split() == [first, "first", "one", "a,b", "True"]
        assert "pinned  a,b" in _cli(dsn, "models").stdout
        drift = _cli(dsn, "drift", "cli_lc", "2026-04-01", "2026-04-11")
        assert drift.returncode == 0 and "stable" in drift.stdout and drift.stdout.startswith("band_name")
        realized = _cli(dsn, "realized", "cli_lc")
        assert realized.returncode == 0 and realized.stdout.startswith("week"), realized.stderr
        monitored = _cli(dsn, "monitor", "cli_lc", "--window-days", "3650")
        assert monitored.returncode == 0, monitored.stderr
        assert monitored.stdout.strip() == "no alerts" or monitored.stdout.startswith("kind"), monitored.stdout
        assert "Traceback" not in drift.stderr + compared.stderr + bad.stderr + monitored.stderr
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_policy")
        for key in (first, second):
            conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])


def test_the_command_line_prints_no_terminal_control_another_role_wrote(conn, dsn):
    """A tag, a description or a key is text another role chose: an escape sequence or a newline in
    it must not reach the terminal as such (a fake row, a cleared line, a retitled window)."""
    cases.load(conn, "cli_ctl", cases.make_rows(seed=98, n=900))
    key = fit(conn, "cli_ctl", model_key="cli_ctl\u200b", activate=False, replace=True)
    forged = "x\nprod_fixed  t  pinned \x1b[2K\x1b[1Aok"
    try:
        conn.execute("SELECT ml.woe_anchor_annotate(%s, %s, %s)", [key, "desc\x1b]0;pwned\x07", [forged]])
        for args in (("models",), ("tag", key, "--description", "plain")):
            out = _cli(dsn, *args)
            assert out.returncode == 0, out.stderr
            assert "\x1b" not in out.stdout and "\x07" not in out.stdout and "\u200b" not in out.stdout
            assert "cli_ctl\\u200b" in out.stdout and "x\\nprod_fixed" in out.stdout
            assert not any(line.startswith("prod_fixed") for line in out.stdout.splitlines())
    finally:
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])


def test_an_interrupt_while_the_command_starts_is_the_short_message(tmp_path):
    """Ctrl-C while psycopg is still being imported (the first tenth of a second): the same message
    and exit status as later, no traceback. A stand-in psycopg interrupts its own import."""
    stub = tmp_path / "psycopg"
    stub.mkdir()
    (stub / "__init__.py").write_text("import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)\n")
    exe = Path(sys.executable).parent / "woe-anchor"
    env = dict(os.environ, WOE_ANCHOR_DSN="", PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ["PYTHONPATH"]]))
    done = subprocess.run([str(exe), "models"], capture_output=True, text=True, env=env, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert done.returncode == 130 and done.stderr == "woe-anchor: interrupted\n", done.stderr


def test_connection_errors_say_what_libpq_said(server, tmp_path):
    """Every line of libpq's message, tidied; a missing database is not a cluster that does not answer;
    a database without woe_anchor says how to install it."""
    refused = _cli("host=127.0.0.1 port=1 user=postgres connect_timeout=5", "models")
    assert refused.returncode == 2 and "\t" not in refused.stderr, refused.stderr
    assert 'port 1 failed: Connection refused' in refused.stderr and "accepting TCP/IP connections" in refused.stderr
    missing = _cli(server.dsn_for("woe_cli_no_such_db"), "models")
    assert missing.returncode == 2 and 'database "woe_cli_no_such_db" does not exist' in missing.stderr
    assert "no local cluster answers" not in missing.stderr and "hint: " in missing.stderr, missing.stderr
    name = f"woe_cli_bare_{os.getpid()}"
    bare = install.fresh_database(server, name, extension=False)
    try:
        done = _cli(bare, "models")
        assert done.returncode == 2 and "woe_anchor is not installed" in done.stderr
        assert "hint: CREATE EXTENSION woe_anchor CASCADE" in done.stderr, done.stderr
    finally:
        install.drop_database(server, name)
    for done in (refused, missing):
        assert "Traceback" not in done.stderr


def test_hints_and_refusals_name_this_commands_verbs_and_options(conn, dsn, cron):  # noqa: F811
    activate = _cli(dsn, "activate", "cli_no_such_model")
    assert activate.returncode == 2 and "hint: List models with `woe-anchor models`." in activate.stderr
    # the server's hints, as the command line says them: its verbs and options, no SQL
    assert cli._cli_hint("Activate a stored model with ml.woe_anchor_activate(model_key) (ml.woe_anchor_models() "
                         "lists them), or fit one with CALL ml.fit_woe_anchor(...).") == \
        "Activate a stored model with `woe-anchor activate KEY` (`woe-anchor models` lists them), or fit one with " \
        "`woe-anchor fit SOURCE`."
    assert cli._cli_hint("Map each to the column that holds it: columns => '{\"t0\": \"edited_date\"}'.") == \
        "Map each to the column that holds it: --map t0=edited_date."
    cases.load(conn, "cli_hint", cases.make_rows(seed=105, n=900))
    decayed = _cli(dsn, "fit", "cli_hint", "--half-life", "0.0001", "--dry-run")
    assert decayed.returncode == 2 and "`--half-life none` for no decay" in decayed.stderr, decayed.stderr
    assert "NULL" not in decayed.stderr and "half_life_days" not in decayed.stderr.split("hint:")[1]
    # options of the wrong shape: the usage error names the option, before any connection
    for args, option in ((("activations", "--limit", "-1"), "--limit"),
                         (("fit", "cli_hint", "--cutoff", "garbage"), "--cutoff"),
                         (("fit", "cli_hint", "--n-folds", "99999999999999999999"), "--n-folds"),
                         (("drift", "cli_hint", "2026-04-01", "soon"), "end")):
        done = _cli(dsn, *args)
        assert done.returncode == 2 and f"argument {option}: expected" in done.stderr, done.stderr
    unscheduled = _cli(dsn, "unschedule", "cli_no_such_job")
    assert unscheduled.returncode == 2 and "nothing unscheduled" in unscheduled.stderr, unscheduled.stderr
    helped = _cli(dsn, "policy", "--help")
    assert helped.returncode == 0 and all(name in helped.stdout for name in (
        "min_train_sold", "min_oof_auc", "min_eval_auc", "max_auc_drop", "keep_models", "keep_days"))
    for done in (activate, decayed, unscheduled):
        assert "Traceback" not in done.stderr


def test_a_hostile_overload_on_the_admins_search_path_is_never_called(conn, dsn, tmp_path, monkeypatch):
    """A schema on the administrator's search_path that another role can write may hold an exact-type
    overload of a built-in (array_to_string(text[], text) beats pg_catalog's anyarray one): the
    commands' SQL must not call it. The names given on the command line still resolve in that path."""
    cases.load(conn, "cli_path", cases.make_rows(seed=106, n=900))
    conn.execute("DROP SCHEMA IF EXISTS cli_planted CASCADE")
    conn.execute("CREATE SCHEMA cli_planted")
    conn.execute("CREATE TABLE cli_planted.calls (fn text)")
    for fn, args in (("array_to_string", "text[], text"), ("to_char", "timestamp, text"), ("round", "numeric, int")):
        conn.execute(f"CREATE FUNCTION cli_planted.{fn}({args}) RETURNS text LANGUAGE plpgsql AS "
                     f"$$ BEGIN INSERT INTO cli_planted.calls VALUES ('{fn}'); RETURN 'planted'; END $$")
    monkeypatch.setenv("PGOPTIONS", "-c search_path=cli_planted,public")
    try:
        fitted = _cli(dsn, "fit", "cli_path", "--model-key", "cli_path_model", "--no-activate", "--replace")
        assert fitted.returncode == 0, fitted.stderr
        conn.execute("SELECT ml.woe_anchor_annotate('cli_path_model', 'd', ARRAY['a', 'b'])")
        listed = _cli(dsn, "models")
        page = _cli(dsn, "report", "cli_path_model", "-o", str(tmp_path / "r.html"))
        assert listed.returncode == 0 and page.returncode == 0, listed.stderr + page.stderr
        assert "planted" not in listed.stdout and "planted" not in (tmp_path / "r.html").read_text()
        assert conn.execute("SELECT count(*) FROM cli_planted.calls").fetchone()[0] == 0
    finally:
        conn.execute("SELECT ml.woe_anchor_drop_model('cli_path_model')")
        conn.execute("DROP SCHEMA cli_planted CASCADE")
