"""Scheduled fits with a real pg_cron: jobs run in background workers.

pg_cron lives in the cluster's `postgres` database; the fits run in the test
database, so scheduling goes through dblink, as it does for a user whose
models live outside cron.database_name. pg_cron 1.4 runs jobs on the
minute, so this waits up to about a minute and a half.
"""
from __future__ import annotations

import contextlib
import os
import time

import numpy as np
import psycopg
import pytest

import artifacts
import cases
import sessions
from conftest import SERVER_KIND, fit
from woe_anchor_harness import install


@pytest.fixture
def cron(conn, server):
    if conn.execute("SELECT current_setting('cron.database_name', true)").fetchone()[0] is None:
        missing = "pg_cron is not preloaded on this server (harness/run.sh installs and preloads it)"
        if SERVER_KIND == "dsn":  # a server of the user's: docs/install.md says this test needs pg_cron there
            pytest.skip(missing)
        pytest.fail(missing)
    cron_db = conn.execute("SELECT current_setting('cron.database_name')").fetchone()[0]
    trainer = f"woe_cron_trainer_{os.getpid()}"
    with psycopg.connect(server.dsn_for(cron_db), autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        conn.execute("CREATE EXTENSION IF NOT EXISTS dblink")
        # a trainer set up with the documented grants only (it logs in: pg_cron runs its jobs as it)
        conn.execute(f"DROP ROLE IF EXISTS {trainer}")
        conn.execute(f"CREATE ROLE {trainer} LOGIN")
        conn.execute("SELECT ml.woe_anchor_grant(trainer => %s)", [trainer])
        names = [f"woe_ok_{os.getpid()}", f"woe_bad_{os.getpid()}", f"woe_trainer_{os.getpid()}"]
        yield c, names, trainer
        conn.execute("RESET ROLE")
        for name in names:
            conn.execute("SELECT ml.unschedule_woe_anchor_fit(%s)", [name])
        c.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE username = %s", [trainer])
        conn.execute(f"DROP OWNED BY {trainer}")
        conn.execute(f"DROP ROLE {trainer}")


def _finished_runs(cron_conn, job_ids):
    return cron_conn.execute("SELECT jobid, status, return_message FROM cron.job_run_details "
                             "WHERE jobid = ANY(%s) AND status IN ('succeeded', 'failed')", [job_ids]).fetchall()


def test_a_scheduled_fit_runs_and_a_failing_one_changes_nothing(conn, dsn, cron):
    cron_conn, (ok_name, bad_name, trainer_name), trainer = cron
    rows = cases.make_rows(seed=95, n=1500)
    cases.load(conn, "sched_src", rows)
    conn.execute("CREATE OR REPLACE VIEW sched_unsold AS SELECT * FROM sched_src WHERE sold_time IS NULL")
    before = fit(conn, "sched_src", model_key="sched_before", replace=True)
    ok = conn.execute("SELECT ml.schedule_woe_anchor_fit(%s, '* * * * *', 'sched_src', n_folds => 3)",
                      [ok_name]).fetchone()[0]
    again = conn.execute("SELECT ml.schedule_woe_anchor_fit(%s, '* * * * *', 'sched_src', n_folds => 3)",
                         [ok_name]).fetchone()[0]
    assert again == ok and cron_conn.execute("SELECT count(*) FROM cron.job WHERE jobname = %s",
                                             [ok_name]).fetchone()[0] == 1, "scheduling is idempotent by name"
    bad = conn.execute("SELECT ml.schedule_woe_anchor_fit(%s, '* * * * *', 'sched_unsold')",
                       [bad_name]).fetchone()[0]
    assert bad != ok
    # a trainer schedules its own fit, from a new session whose string literals are not standard
    conn.execute(f"GRANT SELECT ON sched_src TO {trainer}")
    with psycopg.connect(dsn, autocommit=True, options="-c standard_conforming_strings=off") as t:
        t.execute(f"SET ROLE {trainer}")
        mine = t.execute("SELECT ml.schedule_woe_anchor_fit(%s, '* * * * *', 'sched_src', n_folds => 2)",
                         [trainer_name]).fetchone()[0]
        assert t.execute("SELECT ml.unschedule_woe_anchor_fit(%s)", [ok_name]).fetchone()[0] is False, \
            "a role never unschedules another role's job"
    assert cron_conn.execute("SELECT username FROM cron.job WHERE jobid = %s", [mine]).fetchone()[0] == trainer
    # rows that arrive after scheduling move the cutoff of the scheduled run: it is not frozen
    later = int(rows["sold_time"].max()) + 3 * cases.DAY_US
    conn.execute("INSERT INTO sched_src SELECT generation, listing_id + 10000000, t0 + interval '3 days', "
                 "sold_time + interval '3 days', duration_hours, final_status, delta_vs_sold_median_30d, "
                 "condition_score, damage_severity_ai, battery_pct_effective, seller_rating, review_count, "
                 "member_since_year, ai_ship_can, ai_ship_pickup, ai_pickup_only_bin, ai_sale_mode_firm, "
                 "ai_sale_mode_bids, ai_sale_mode_obo, image_count, caption_share, stock_photo_share, "
                 "photo_quality_avg, bg_clean_avg, dmg_band_hq_struct, charger_bundle_level, box_present, "
                 "receipt_present, watcher_count, region FROM sched_src WHERE sold_time = "
                 "(SELECT max(sold_time) FROM sched_src)")
    deadline = time.monotonic() + 150
    while len({r[0] for r in _finished_runs(cron_conn, [ok, bad, mine])}) < 3 and time.monotonic() < deadline:
        time.sleep(2)
    runs = {jobid: (status, message) for jobid, status, message in _finished_runs(cron_conn, [ok, bad, mine])}
    assert set(runs) == {ok, bad, mine}, f"every job ran within the deadline: {runs}"
    assert runs[ok][0] == "succeeded", runs[ok]
    assert runs[mine][0] == "succeeded", runs[mine]
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1 WHERE fitted_by = %s AND n_folds = 2",
                        [trainer]).fetchone()[0] >= 1, "the trainer's job fitted as the trainer"
    assert runs[bad][0] == "failed" and "no sold rows" in runs[bad][1], runs[bad]
    scheduled = conn.execute("SELECT model_key, train_cutoff_ts FROM ml.woe_anchor_model_registry_v1 "
                             "WHERE source_relation = 'public.sched_src' AND model_key <> %s "
                             "ORDER BY created_at", [before]).fetchall()
    assert len(scheduled) >= 2
    assert artifacts.active_keys(conn) in [[k] for k, _ in scheduled], "a scheduled fit is active"
    for _, cutoff in scheduled:
        assert cases.to_datetime(later) - cutoff == np.timedelta64(7, "D").astype("timedelta64[us]").item()
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1 "
                        "WHERE source_relation = 'public.sched_unsold'").fetchone()[0] == 0
    assert conn.execute("SELECT ml.unschedule_woe_anchor_fit(%s)", [ok_name]).fetchone()[0] is True
    assert conn.execute("SELECT ml.unschedule_woe_anchor_fit(%s)", [ok_name]).fetchone()[0] is False
    conn.execute(f"SET ROLE {trainer}")
    assert conn.execute("SELECT ml.unschedule_woe_anchor_fit(%s)", [trainer_name]).fetchone()[0] is True
    conn.execute("RESET ROLE")


def test_scheduling_from_another_database_without_dblink_says_where_to_install_it(cron, server):
    """pg_cron lives in cron.database_name; the hint must point at this database, not at that one."""
    name = f"woe_anchor_nodblink_{os.getpid()}"
    dsn = install.fresh_database(server, name)
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            cases.load(c, "nd_src", cases.make_rows(seed=101, n=300))
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err:
                c.execute("SELECT ml.schedule_woe_anchor_fit('nd_job', '0 3 * * *', 'nd_src')")
            assert "CREATE EXTENSION dblink in this database" in err.value.diag.message_hint
            assert "call this function in database" not in err.value.diag.message_hint
    finally:
        install.drop_database(server, name)


def test_scheduling_refuses_parameters_a_fit_would_refuse(conn, cron):
    """A job that could only fail is refused when it is scheduled, by the fit's own checks."""
    cron_conn = cron[0]
    cases.load(conn, "sched_params", cases.make_rows(seed=96, n=300))
    conn.execute("CREATE SEQUENCE IF NOT EXISTS sched_seq")
    conn.execute("CREATE TEMP TABLE sched_temp AS SELECT * FROM sched_params")
    conn.execute("DROP TABLE IF EXISTS sched_no_t0")
    conn.execute("CREATE TABLE sched_no_t0 AS SELECT * FROM sched_params")
    conn.execute("ALTER TABLE sched_no_t0 DROP COLUMN t0")
    fit_with = "SELECT ml.schedule_woe_anchor_fit(%s, %s, %s{})"
    for (job, when, source, args), (error, message) in (
            (("woe_params", "0 3 * * *", "sched_params", ", n_folds => -1"), ("InvalidParameterValue", "n_folds")),
            (("woe_params", "0 3 * * *", "sched_params", ", eps => 0"), ("InvalidParameterValue", "eps must be")),
            (("woe_params", "0 3 * * *", "sched_params", ", dsold_thresholds => '{2,1,3,4}'"),
             ("InvalidParameterValue", "strictly ascending")),
            (("woe_params", "0 3 * * *", "sched_params", ", slow_threshold_hours => 1e308"),
             ("InvalidParameterValue", "slow_threshold_hours must be")),
            (("woe_params", "0 3 * * *", "sched_params", ", band_schema_version => 999"),
             ("UndefinedObject", "band schema 999 does not exist")),
            (("woe_params", "0 3 * * *", "sched_seq", ""), ("WrongObjectType", "not a table")),
            (("woe_params", "0 3 * * *", "sched_no_t0", ""), ("UndefinedColumn", "t0")),
            (("woe_params", "0 3 * * *", "sched_temp", ""), ("InvalidParameterValue", "temporary table")),
            (("", "0 3 * * *", "sched_params", ""), ("InvalidParameterValue", "job_name must be")),
            (("woe_params\n", "0 3 * * *", "sched_params", ""), ("InvalidParameterValue", "job_name must be")),
            (("woe_params" + "x" * 60, "0 3 * * *", "sched_params", ""), ("InvalidParameterValue", "63 bytes")),
            (("woe_params", "0 3 * * * extra garbage", "sched_params", ""), ("InvalidParameterValue", "schedule")),
            (("woe_params", "0 3 * * *'; drop table x; --", "sched_params", ""), ("InvalidParameterValue", "schedule"))):
        with pytest.raises(getattr(psycopg.errors, error), match=message) as err:
            conn.execute(fit_with.format(args), [job, when, source])
        assert "Traceback" not in (err.value.diag.context or ""), err.value.diag.context
    assert cron_conn.execute("SELECT count(*) FROM cron.job WHERE jobname LIKE 'woe_params%'").fetchone()[0] == 0
    conn.execute("DROP SEQUENCE sched_seq")
    conn.execute("DROP TABLE sched_no_t0, sched_temp")


def test_a_schema_named_cron_that_pg_cron_did_not_create_is_never_called(cron, server):
    """Where pg_cron is preloaded but not created in cron.database_name, a trainer who may create
    schemas in that database makes a schema `cron` with a schedule_in_database of its own. The
    scheduling entry point runs as the extension's owner: it must refuse, not call it. Run in that
    database, in one transaction rolled back at the end (pg_cron dropped for its length only)."""
    cron_conn, _, trainer = cron
    cron_db = cron_conn.execute("SELECT current_database()").fetchone()[0]
    with cron_conn.transaction() as tx:
        cron_conn.execute("DROP EXTENSION pg_cron")
        cron_conn.execute("CREATE EXTENSION woe_anchor CASCADE")
        cron_conn.execute("SELECT ml.woe_anchor_grant(trainer => %s)", [trainer])
        cases.load(cron_conn, "sched_spoof_src", cases.make_rows(seed=95, n=50))  # a source the fit accepts
        cron_conn.execute(f"GRANT SELECT ON sched_spoof_src TO {trainer}")
        cron_conn.execute(f'GRANT CREATE ON DATABASE "{cron_db}" TO {trainer}')
        cron_conn.execute(f"SET LOCAL ROLE {trainer}")
        cron_conn.execute("CREATE SCHEMA cron")
        cron_conn.execute("CREATE TABLE cron.ran (by_role name)")
        cron_conn.execute("CREATE FUNCTION cron.schedule_in_database(text, text, text, text, text) RETURNS bigint "
                          "LANGUAGE sql AS $$ INSERT INTO cron.ran VALUES (current_user) RETURNING 42::bigint $$")
        cron_conn.execute("CREATE FUNCTION cron.unschedule(bigint) RETURNS boolean "
                          "LANGUAGE sql AS $$ INSERT INTO cron.ran VALUES (current_user) RETURNING true $$")
        cron_conn.execute("CREATE TABLE cron.job (jobid bigint, jobname text, username text)")
        cron_conn.execute(f"INSERT INTO cron.job VALUES (1, 'spoof', '{trainer}')")
        for call in ("SELECT ml.schedule_woe_anchor_fit('spoof', '0 3 * * *', 'public.sched_spoof_src')",
                     "SELECT ml.unschedule_woe_anchor_fit('spoof')"):
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err, cron_conn.transaction():
                cron_conn.execute(call)
            assert f"pg_cron is loaded but not created in database {cron_db}" in err.value.diag.message_primary
        assert cron_conn.execute("SELECT count(*) FROM cron.ran").fetchone()[0] == 0, "nothing of the trainer's ran"
        raise psycopg.Rollback(tx)
    assert cron_conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'").fetchone()[0] == 1


def _trainer_source_and_old_models(conn, trainer, name, seed, n):
    """A source the trainer may read, the trainer's models from earlier tests (the role's name is the
    fixture's: leave those aside), and two of its inactive models fitted by hand, the second pinned."""
    cases.load(conn, name, cases.make_rows(seed=seed, n=n))
    conn.execute(f"GRANT SELECT ON {name} TO {trainer}")
    earlier = {r[0] for r in conn.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1 WHERE fitted_by = %s",
                                          [trainer])}
    conn.execute(f"SET ROLE {trainer}")
    old = fit(conn, name, model_key=f"{name}_old", activate=False)
    pinned = fit(conn, name, model_key=f"{name}_pinned", activate=False)
    conn.execute("SELECT ml.woe_anchor_annotate(%s, pinned => true)", [pinned])
    conn.execute("RESET ROLE")
    return earlier, old, pinned


def test_scheduled_runs_obey_the_policy_and_a_scheduled_monitor_alerts(conn, dsn, cron):
    """pg_cron runs a trainer's fit under an activation policy that refuses it and a retention that
    keeps one model, and an administrator's ml.woe_anchor_monitor job that raises alerts: the model is
    stored but not active, the refusal is logged for the trainer, only the trainer's own unpinned
    older model is pruned, and the alerts are recorded and heard by NOTIFY."""
    cron_conn, (fit_job, _, _), trainer = cron
    monitor_job = f"woe_monitor_{os.getpid()}"
    active_before = artifacts.active_keys(conn)
    earlier, old, kept = _trainer_source_and_old_models(conn, trainer, "sched_pol", seed=96, n=1500)
    conn.execute("SELECT ml.woe_anchor_set_policy('min_oof_auc', 0.999), ml.woe_anchor_set_policy('keep_models', 1)")
    try:
        conn.execute(f"SET ROLE {trainer}")
        job = conn.execute("SELECT ml.schedule_woe_anchor_fit(%s, '* * * * *', 'sched_pol', n_folds => 2)",
                           [fit_job]).fetchone()[0]
        conn.execute("RESET ROLE")
        command = (f"SELECT count(*) FROM ml.woe_anchor_monitor('public.sched_pol', '{kept}', window_days => 3650, "
                   "psi_limit => 1e-9, channel => 'sched_alerts')")
        watch = cron_conn.execute("SELECT cron.schedule_in_database(%s, '* * * * *', %s, %s)",
                                  [monitor_job, command, conn.info.dbname]).fetchone()[0]
        with psycopg.connect(dsn, autocommit=True) as listener:
            listener.execute("LISTEN sched_alerts")
            deadline = time.monotonic() + 150
            while len({r[0] for r in _finished_runs(cron_conn, [job, watch])}) < 2 and time.monotonic() < deadline:
                time.sleep(2)
            heard = next(listener.notifies(timeout=5, stop_after=1), None)
        runs = {jobid: (status, message) for jobid, status, message in _finished_runs(cron_conn, [job, watch])}
        assert runs.get(job, ("",))[0] == "succeeded" and runs.get(watch, ("",))[0] == "succeeded", runs
        stored = {r[0]: r[1] for r in conn.execute(
            "SELECT model_key, is_active FROM ml.woe_anchor_model_registry_v1 WHERE fitted_by = %s", [trainer])
            if r[0] not in earlier}
        new = [k for k in stored if k not in (old, kept)]
        assert len(new) >= 1 and not any(stored.values()), "stored, none activated"
        assert old not in stored and kept in stored, "retention: the newest, and the pinned one"
        assert artifacts.active_keys(conn) == active_before
        refused = conn.execute("SELECT by_role, to_model FROM ml.woe_anchor_activations WHERE action = 'refused' "
                               "AND to_model = ANY(%s)", [new]).fetchall()
        assert refused and all(by == trainer for by, _ in refused)
        assert heard is not None and heard.channel == "sched_alerts"
        assert conn.execute("SELECT count(*) FROM ml.woe_anchor_alerts WHERE model_key = %s AND by_role = 'postgres'",
                            [kept]).fetchone()[0] >= 1
    finally:
        cron_conn.execute("SELECT cron.unschedule(%s)", [monitor_job])
        conn.execute("DELETE FROM ml.woe_anchor_policy")


def test_retention_keeps_exactly_what_the_policy_says_across_ten_scheduled_fits(conn, cron):
    """Ten of a trainer's jobs fire in the same minute under keep_models = 3: the runs overlap, and once
    all have committed the trainer holds exactly the three newest models, the active one among them,
    and its pinned old one; its other old model and every other run's model are gone."""
    cron_conn, _, trainer = cron
    earlier, old, pinned = _trainer_source_and_old_models(conn, trainer, "sched_keep", seed=97, n=1200)
    conn.execute("SELECT ml.woe_anchor_set_policy('keep_models', 3)")  # before any job can fire
    try:
        conn.execute(f"SET ROLE {trainer}")
        started = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        names = [f"woe_keep_{os.getpid()}_{i}" for i in range(10)]
        jobs = [conn.execute("SELECT ml.schedule_woe_anchor_fit(%s, '* * * * *', 'sched_keep', n_folds => 2)",
                             [name]).fetchone()[0] for name in names]
        conn.execute("RESET ROLE")
        deadline = time.monotonic() + 180
        while len({r[0] for r in _finished_runs(cron_conn, jobs)}) < len(jobs) and time.monotonic() < deadline:
            time.sleep(2)
        conn.execute(f"SET ROLE {trainer}")
        for name in names:  # no second round: what is counted below is ten runs
            conn.execute("SELECT ml.unschedule_woe_anchor_fit(%s)", [name])
        conn.execute("RESET ROLE")
        runs = {}
        for jobid, status, message in _finished_runs(cron_conn, jobs):
            runs.setdefault(jobid, []).append((status, message))
        assert sorted(runs) == sorted(jobs) and all(s == "succeeded" for r in runs.values() for s, _ in r), runs
        fitted = sum(len(r) for r in runs.values())
        stored = conn.execute(
            "SELECT model_key, is_active FROM ml.woe_anchor_model_registry_v1 WHERE fitted_by = %s "
            "AND NOT (model_key = ANY(%s)) ORDER BY model_id", [trainer, list(earlier)]).fetchall()
        logged = conn.execute("SELECT count(*) FROM ml.woe_anchor_activations WHERE by_role = %s "
                              "AND action = 'activate' AND at >= %s", [trainer, started]).fetchone()[0]
        assert fitted >= 10 and logged >= fitted, (fitted, logged)
        keys = [k for k, _ in stored]
        assert pinned in keys and old not in keys
        newest = [k for k in keys if k != pinned]
        assert len(newest) == 3, keys
        assert [k for k, active in stored if active] == [newest[-1]], "the last run to commit is active"
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_policy")


def test_a_job_name_in_another_database_is_neither_moved_nor_removed(conn, cron, server):
    """pg_cron names a role's jobs across databases: a copy of the database on the same server
    (a restore for staging, say) must not take production's job over, or remove it."""
    cron_conn, (name, _, _), _ = cron
    cases.load(conn, "sched_here", cases.make_rows(seed=96, n=300))
    job = conn.execute("SELECT ml.schedule_woe_anchor_fit(%s, '15 3 * * *', 'sched_here')", [name]).fetchone()[0]
    with _another_database(server, "copy") as dsn, psycopg.connect(dsn, autocommit=True) as c:
        with pytest.raises(psycopg.errors.DuplicateObject, match="across databases"):
            c.execute("SELECT ml.schedule_woe_anchor_fit(%s, '0 1 * * *', 'sched_here')", [name])
        assert c.execute("SELECT ml.unschedule_woe_anchor_fit(%s)", [name]).fetchone()[0] is False
    assert cron_conn.execute("SELECT schedule, database FROM cron.job WHERE jobid = %s", [job]).fetchone() \
        == ("15 3 * * *", conn.info.dbname)


@contextlib.contextmanager
def _another_database(server, what):
    """A second database on the server with the extension, dblink and a source sched_here: a copy
    of the test database restored for staging, say."""
    name = f"woe_anchor_{what}_{os.getpid()}"
    dsn = install.fresh_database(server, name)
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS dblink")
            cases.load(c, "sched_here", cases.make_rows(seed=96, n=300))
        yield dsn
    finally:
        install.drop_database(server, name)


def test_two_databases_scheduling_one_name_at_once_do_not_both_get_it(conn, cron, server):
    """The check that a name is free in other databases and the scheduling are one transaction
    holding pg_cron's job table: lined up behind one lock, the first takes the name and the
    second is refused, and the job stays where the first put it."""
    cron_conn, (name, _, _), _ = cron
    cases.load(conn, "sched_here", cases.make_rows(seed=97, n=300))
    with _another_database(server, "race") as copy_dsn:
        try:
            statement = "SELECT ml.schedule_woe_anchor_fit(%s, '15 3 * * *', 'sched_here')"
            with psycopg.connect(server.dsn_for(cron_conn.info.dbname)) as holder:
                holder.execute("LOCK TABLE cron.job IN SHARE UPDATE EXCLUSIVE MODE")
                here, here_out = sessions.in_thread(server.dsn_for(conn.info.dbname), statement, [name])
                there, there_out = sessions.in_thread(copy_dsn, statement, [name])
                # both wait at the lock: their dblink sessions, in pg_cron's database
                for _ in range(500):
                    if holder.execute("SELECT count(*) FROM pg_locks WHERE relation = 'cron.job'::regclass "
                                      "AND NOT granted").fetchone()[0] == 2:
                        break
                    time.sleep(0.01)
                else:
                    raise AssertionError("the two schedulers never both waited for pg_cron's job table")
                holder.commit()
            here.join(60)
            there.join(60)
            outcomes = [here_out, there_out]
            won = [o for o in outcomes if "rows" in o]
            lost = [o for o in outcomes if "error" in o]
            assert len(won) == 1 and len(lost) == 1, outcomes
            assert isinstance(lost[0]["error"], psycopg.errors.DuplicateObject), lost[0]["error"]
            winner_db = conn.info.dbname if won[0] is here_out else psycopg.conninfo.conninfo_to_dict(copy_dsn)["dbname"]
            assert cron_conn.execute("SELECT jobid, database FROM cron.job WHERE jobname = %s",
                                     [name]).fetchall() == [(won[0]["rows"][0][0], winner_db)]
        finally:
            cron_conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %s", [name])


def test_scheduling_in_pg_crons_database_holds_up_no_other_cron_job(cron, server):
    """There the check-and-schedule lock lasts the caller's transaction: it must not hold up pg_cron's
    own writes (another role's cron.schedule), only another woe_anchor scheduling. Run in pg_cron's
    database, in one transaction rolled back at the end."""
    cron_conn = cron[0]
    with cron_conn.transaction() as tx:
        cron_conn.execute("CREATE EXTENSION woe_anchor CASCADE")
        cases.load(cron_conn, "sched_local_src", cases.make_rows(seed=94, n=50))
        cron_conn.execute("SELECT ml.schedule_woe_anchor_fit('woe_local', '0 3 * * *', 'public.sched_local_src')")
        with psycopg.connect(server.dsn_for(cron_conn.info.dbname), autocommit=True) as other:
            other.execute("SET lock_timeout = '2s'")
            job = other.execute("SELECT cron.schedule('woe_other_job', '0 4 * * *', 'SELECT 1')").fetchone()[0]
            other.execute("SELECT cron.unschedule(%s)", [job])
        raise psycopg.Rollback(tx)
