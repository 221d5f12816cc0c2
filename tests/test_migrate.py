"""`woe-anchor migrate` on a database set up as the user's trainer and SQL package set it up.

tests/legacy_install.py rebuilds that installation: the trainer's four tables
holding two real models plus one model per trainer quirk, the user's feature
store, the four views of the pipeline (banding, scoring, the certification
entrypoint, the fail-closed view guarded by the audit layer) and the audit
schema, certified. After the migration the pipeline's own view names must
serve the extension's active model, through the user's gate, re-certified on
every activation.
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

import cases
import legacy_install as legacy
from conftest import fit
from woe_anchor_harness import install

MIGRATE = ["migrate", "--relations", f"{legacy.SOCIO_STORE},{legacy.VISION_STORE},{legacy.LABELS}",
           "--map", "sold_time=sold_date", "--activation-hook", "audit.recertify_on_activation(text)"]
SOURCE = "ml.woe_anchor_source_v1"


def _cli(dsn, *args):
    exe = Path(sys.executable).parent / "woe-anchor"
    if not exe.exists():
        exe = Path(shutil.which("woe-anchor") or pytest.fail("the woe-anchor command is not installed"))
    return subprocess.run([str(exe), "--dsn", dsn, *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, WOE_ANCHOR_DSN=""))


@pytest.fixture
def trainer_db(server, conn):
    """A database like the user's: models fitted by the extension (in the session database), copied over."""
    rows = cases.make_rows(seed=98, n=900)
    cases.load(conn, "mig_src", rows)
    old = fit(conn, "mig_src", model_key="legacy_old", n_folds=3, replace=True, activate=False)
    new = fit(conn, "mig_src", model_key="legacy_new", replace=True)
    name = f"woe_anchor_legacy_{os.getpid()}"
    dsn = install.fresh_database(server, name, extension=False)
    with psycopg.connect(dsn, autocommit=True) as t:
        info = legacy.install(t, conn, [old, new], rows)
        _auditor_hook(t)
    yield dsn, info
    install.drop_database(server, name)
    with psycopg.connect(server.dsn_for("postgres"), autocommit=True) as c:
        for role in (AUDITOR, OWNER):
            c.execute(f"DROP ROLE IF EXISTS {role}")


AUDITOR = f"woe_mig_auditor_{os.getpid()}"


def _auditor_hook(t):
    """The re-certification as an activation hook runs it: with an auditor's rights (a role of its own,
    SECURITY DEFINER) and a pinned search_path, as docs/security.md requires of hooks."""
    t.execute(f"DROP ROLE IF EXISTS {AUDITOR}")
    t.execute(f"CREATE ROLE {AUDITOR}")
    t.execute(f"GRANT USAGE ON SCHEMA audit, ml, market TO {AUDITOR}")
    t.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA audit TO {AUDITOR}")
    t.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA ml, market TO {AUDITOR}")
    t.execute("CREATE FUNCTION audit.recertify_on_activation(model_key text) RETURNS void LANGUAGE sql "
              "SECURITY DEFINER SET search_path = audit, ml, pg_catalog, pg_temp "
              "AS 'SELECT audit.recertify_woe_anchor_store_v1()'")
    t.execute(f"ALTER FUNCTION audit.recertify_on_activation(text) OWNER TO {AUDITOR}")


OWNER = f"woe_mig_owner_{os.getpid()}"


def _hostile_owner(t, table):
    """``table`` handed to a role that hangs code on it: statistics that call its function, which records
    who runs it (public.woe_pwned) and tries to make the role a superuser."""
    t.execute(f"DROP ROLE IF EXISTS {OWNER}")
    t.execute(f"CREATE ROLE {OWNER}")
    t.execute("CREATE TABLE IF NOT EXISTS public.woe_pwned (who name)")
    t.execute("GRANT INSERT ON public.woe_pwned TO PUBLIC")
    t.execute(f"CREATE SCHEMA IF NOT EXISTS o AUTHORIZATION {OWNER}")
    t.execute(f"GRANT USAGE ON SCHEMA {table.split('.')[0]} TO {OWNER}")
    t.execute(f"ALTER TABLE {table} OWNER TO {OWNER}")
    t.execute(f"SET ROLE {OWNER}")
    t.execute("CREATE OR REPLACE FUNCTION o.evil() RETURNS int LANGUAGE plpgsql AS $$ BEGIN "
              f"INSERT INTO public.woe_pwned VALUES (current_user); "
              f"IF current_user <> '{OWNER}' THEN EXECUTE 'ALTER ROLE {OWNER} SUPERUSER'; END IF; RETURN 1; END $$")
    t.execute("CREATE OR REPLACE FUNCTION o.evil_key(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS "
              "$$ BEGIN PERFORM o.evil(); RETURN $1; END $$")
    t.execute(f"CREATE STATISTICS o.armed ON (o.evil_key(1)), model_key FROM {table}")
    t.execute("RESET ROLE")


def _not_escalated(t):
    assert t.execute("SELECT count(*) FROM public.woe_pwned WHERE who <> %s", [OWNER]).fetchone()[0] == 0
    assert t.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [OWNER]).fetchone()[0] is False


def same_scores(got, want):
    """Rows equal in keys and model, logits to 1e-12 (the views add band WOEs in another order than scoring)."""
    return len(got) == len(want) and all(a[:4] == b[:4] and abs(a[4] - b[4]) <= 1e-12 * max(1.0, abs(b[4]))
                                         for a, b in zip(got, want))


def _views(dsn):
    with psycopg.connect(dsn) as t:
        return dict(t.execute("SELECT c.oid::regclass::text, pg_get_viewdef(c.oid) FROM pg_class c "
                              "WHERE c.relnamespace = 'ml'::regnamespace AND c.relkind = 'v' ORDER BY 1").fetchall())


def test_migrate_refuses_by_default_and_lists_what_depends_on_the_tables(trainer_db):
    dsn, info = trainer_db
    before = _views(dsn)
    refused = _cli(dsn, "migrate")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    for view in (legacy.BANDS_VIEW, legacy.SCORES_VIEW, legacy.ENTRYPOINT, legacy.TRAIN_VIEW):
        assert view in refused.stderr
    assert "--recreate-views" in refused.stderr
    plan = _cli(dsn, *MIGRATE, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "audit.require_certified_strict('ml.woe_anchor_feature_store_t0_v1_v'::text" in plan.stdout
    assert "audit.assert_t0_certified_woe_anchor_store_v1()" in plan.stdout, "functions naming the tables are listed"
    assert "audit.recertify_on_activation(text)" in plan.stdout
    with psycopg.connect(dsn) as t:
        assert t.execute("SELECT count(*) FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0] == 0
        assert t.execute("SELECT to_regclass('ml.woe_anchor_map_v1') IS NOT NULL").fetchone()[0]
    assert _views(dsn) == before, "neither the refusal nor the dry run changed anything"


def test_a_migrated_pipeline_serves_the_active_model_through_the_users_gate(trainer_db):
    dsn, info = trainer_db
    before = _views(dsn)
    done = _cli(dsn, *MIGRATE, "--recreate-views")
    assert done.returncode == 0, done.stderr
    assert "active: legacy_new" in done.stdout
    quirks = info["quirks"]
    for quirk, words in (("backfilled_fold_minus_one", "backfilled score rows"),
                         ("null_scores", "neither logit nor p: not imported"),
                         ("null_map_sums", "map rows with NULL sums: NaN"),
                         ("fold_cuts_without_maps", "have no map rows: not imported"),
                         ("stale_scores_oof_disabled", "older than the model's last run")):
        assert any(line.strip().startswith(f"{quirks[quirk]} (imported)") and words in line
                   for line in done.stdout.splitlines()), (quirk, done.stdout)
    assert f"{quirks['empty_train']} (skipped)" in done.stdout

    served = ("SELECT model_key, generation, listing_id, t0, woe_logit FROM ml.woe_anchor_scores_live_train_v "
              "ORDER BY 2, 3, 4")
    scored = "SELECT model_key, generation, listing_id, t0, woe_logit FROM ml.woe_anchor_score(%s, %s) ORDER BY 2, 3, 4"
    with psycopg.connect(dsn, autocommit=True) as t:
        assert same_scores(t.execute(served).fetchall(), t.execute(scored, [SOURCE, "legacy_new"]).fetchall())
        # a model imported without its stale scores stores none, and that is no missing partition
        stale = quirks["stale_scores_oof_disabled"]
        assert t.execute("SELECT count(*) FROM ml.woe_anchor_stored_scores(%s)", [stale]).fetchone()[0] == 0
        # an imported model records where it came from, not a relation: its source is the caller's to name
        with pytest.raises(psycopg.errors.UndefinedTable, match="records no source relation"):
            t.execute("SELECT count(*) FROM ml.woe_anchor_training_features('legacy_new')")
        certified = t.execute("SELECT certified_at FROM audit.t0_cert_registry WHERE entrypoint = %s",
                              [legacy.ENTRYPOINT]).fetchone()[0]
        # a fit straight from the user's feature store (the source view maps edited_date and sold_date)
        fit(t, SOURCE, model_key="ext_new")
        rows = t.execute(served).fetchall()
        assert rows and {r[0] for r in rows} == {"ext_new"}, "the pipeline's own view serves the new model"
        assert same_scores(rows, t.execute(scored, [SOURCE, "ext_new"]).fetchall())
        assert {r[0] for r in t.execute(f"SELECT model_key FROM {legacy.ENTRYPOINT}")} == {"ext_new"}
        status, at = t.execute("SELECT status, certified_at FROM audit.t0_cert_registry WHERE entrypoint = %s",
                               [legacy.ENTRYPOINT]).fetchone()
        assert status == "CERTIFIED" and at > certified, "the activation re-certified the entrypoint"
        t.execute("SELECT audit.assert_t0_certified_woe_anchor_store_v1()")  # certifies what is served
        # the gate still fails closed on a stale certificate, and an activation re-certifies
        t.execute("UPDATE audit.t0_cert_registry SET certified_at = now() - interval '2 days'")
        with pytest.raises(psycopg.errors.RaiseException, match=legacy.GUARD_ERROR):
            t.execute(served)
        t.execute("SELECT ml.woe_anchor_activate('legacy_new')")
        assert {r[0] for r in t.execute(served)} == {"legacy_new"}
        # a hook that refuses refuses the activation
        t.execute("CREATE FUNCTION audit.refuse(model_key text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER "
                  "SET search_path = pg_catalog, pg_temp AS $$BEGIN RAISE EXCEPTION 'not certifiable: %', model_key; END$$")
        t.execute(f"ALTER FUNCTION audit.refuse(text) OWNER TO {AUDITOR}")
        t.execute("SELECT ml.woe_anchor_add_activation_hook('audit.refuse(text)')")
        with pytest.raises(psycopg.errors.RaiseException, match="not certifiable: ext_new"):
            t.execute("SELECT ml.woe_anchor_activate('ext_new')")
        assert t.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1 WHERE is_active").fetchone()[0] \
            == "legacy_new"
        assert t.execute("SELECT ml.woe_anchor_remove_activation_hook('audit.refuse(text)')").fetchone()[0]
        # create_views again keeps the guard and the user's entrypoint that depends on the views
        t.execute("SELECT ml.woe_anchor_create_views(%s)", [SOURCE])
        assert "require_certified_strict" in _views(dsn)[legacy.TRAIN_VIEW]
        assert t.execute(f"SELECT count(*) FROM {legacy.ENTRYPOINT}").fetchone()[0] > 0

    refused = _cli(dsn, "migrate", "--rollback")
    assert refused.returncode == 2 and "ext_new" in refused.stderr, "models fitted since are named"
    with psycopg.connect(dsn, autocommit=True) as t:
        # the kept trainer tables' owner may hang code on them: rolling back must not read them
        _hostile_owner(t, "woe_anchor_trainer.woe_anchor_model_registry_v1")
    back = _cli(dsn, "migrate", "--rollback", "--force")
    assert back.returncode == 0, back.stderr
    with psycopg.connect(dsn) as t:
        _not_escalated(t)
    assert _views(dsn) == before, "the trainer's views are back as they were"
    with psycopg.connect(dsn, autocommit=True) as t:
        assert t.execute("SELECT count(*) FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0] == 0
        legacy.recertify(t)
        assert {r[0] for r in t.execute(served)} == {"legacy_new"}


def test_readers_of_the_pipeline_keep_reading_it_and_a_rollback_keeps_what_was_certified(trainer_db):
    """The live views run with their reader's rights (security_invoker): the roles that read the
    replaced views become woe_anchor readers. A rollback would serve the model active at the
    migration again, unseen by the activation hook: refused while another one is active."""
    dsn, _ = trainer_db
    reader = f"woe_mig_reader_{os.getpid()}"
    served = f"SELECT DISTINCT model_key FROM {legacy.TRAIN_VIEW}"
    with psycopg.connect(dsn, autocommit=True) as t:
        t.execute(f"DROP ROLE IF EXISTS {reader}")
        t.execute(f"CREATE ROLE {reader}")
        t.execute(f"GRANT USAGE ON SCHEMA ml, audit, market TO {reader}")
        t.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA audit, market TO {reader}")
        t.execute(f"GRANT SELECT ON {legacy.TRAIN_VIEW}, {legacy.ENTRYPOINT} TO {reader}")
        t.execute(f"SET ROLE {reader}")
        assert t.execute(served).fetchall() == [("legacy_new",)]
        t.execute("RESET ROLE")
    try:
        planned = _cli(dsn, *MIGRATE, "--recreate-views", "--dry-run")
        named = [line for line in planned.stdout.splitlines() if "become woe_anchor readers" in line]
        assert planned.returncode == 0 and named and reader in named[0].replace(",", " ").replace(";", " ").split(), \
            planned.stdout
        assert _cli(dsn, *MIGRATE, "--recreate-views").returncode == 0
        with psycopg.connect(dsn, autocommit=True) as t:
            # what the plan says a reader of the live views needs besides: the source's relations
            t.execute(f"GRANT SELECT ON {legacy.SOCIO_STORE}, {legacy.VISION_STORE}, {legacy.LABELS} TO {reader}")
            t.execute(f"SET ROLE {reader}")
            assert t.execute(served).fetchall() == [("legacy_new",)]
            assert {r[0] for r in t.execute(f"SELECT model_key FROM {legacy.ENTRYPOINT}")} == {"legacy_new"}
            t.execute("RESET ROLE")
            t.execute("SELECT ml.woe_anchor_activate('legacy_old')")
        refused = _cli(dsn, "migrate", "--rollback")
        assert refused.returncode == 2 and "active model is legacy_old" in refused.stderr \
            and "serve legacy_new" in refused.stderr, refused.stderr
        with psycopg.connect(dsn, autocommit=True) as t:
            assert t.execute("SELECT count(*) FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0] == 1
            t.execute("SELECT ml.woe_anchor_activate('legacy_new')")
        back = _cli(dsn, "migrate", "--rollback")
        assert back.returncode == 0, back.stderr
    finally:
        with psycopg.connect(dsn, autocommit=True) as t:
            t.execute(f"DROP OWNED BY {reader}")
            t.execute(f"DROP ROLE {reader}")


def test_a_function_bound_to_the_trainers_tables_blocks_and_a_null_base_logit_reads_as_the_views_read_it(
        trainer_db):
    """A function with an SQL-standard body binds the tables it reads as a view does: after the move it
    would read the trainer's tables, not what serves. A NULL base logit is ln(rate / (1 - rate)) in the
    trainer's views, not NaN."""
    dsn, _ = trainer_db
    with psycopg.connect(dsn, autocommit=True) as t:
        t.execute("CREATE FUNCTION audit.served_model() RETURNS text LANGUAGE sql STABLE BEGIN ATOMIC "
                  "SELECT model_key FROM ml.woe_anchor_model_registry_v1 WHERE is_active "
                  "ORDER BY created_at DESC LIMIT 1; END")
        rate = t.execute("UPDATE ml.woe_anchor_model_registry_v1 SET base_logit = NULL WHERE model_key = 'legacy_new' "
                         "RETURNING base_rate").fetchone()[0]
        # a NULL threshold reads as its own default: here out of order with the others, which woe_anchor
        # cannot hold
        t.execute("UPDATE ml.woe_anchor_model_registry_v1 SET dsold_t1 = NULL, dsold_t2 = -0.2, dsold_t3 = 0, "
                  "dsold_t4 = 0.1 WHERE model_key = 'legacy_old'")
        legacy.recertify(t)
        before = t.execute(f"SELECT generation, listing_id, t0, woe_logit FROM {legacy.TRAIN_VIEW} "
                           "ORDER BY 1, 2, 3").fetchall()
    assert before and all(math.isfinite(r[3]) for r in before)
    refused = _cli(dsn, *MIGRATE, "--recreate-views")
    assert refused.returncode == 2 and "audit.served_model()" in refused.stderr \
        and "BEGIN ATOMIC" in refused.stderr, refused.stderr
    with psycopg.connect(dsn, autocommit=True) as t:
        assert t.execute("SELECT count(*) FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0] == 0
        t.execute("DROP FUNCTION audit.served_model()")
        # a view over a column the trainer's cuts have and woe_anchor's lack: named, nothing changed
        t.execute("CREATE VIEW audit.cut_times AS SELECT model_key, created_at FROM ml.woe_anchor_cuts_v1")
    refused = _cli(dsn, *MIGRATE, "--recreate-views")
    assert refused.returncode == 2 and "audit.cut_times cannot be re-created" in refused.stderr \
        and "created_at" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    with psycopg.connect(dsn, autocommit=True) as t:
        assert t.execute("SELECT count(*) FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0] == 0
        t.execute("DROP VIEW audit.cut_times")
    done = _cli(dsn, *MIGRATE, "--recreate-views")
    assert done.returncode == 0 and "NULL base logit" in done.stdout, done.stdout + done.stderr
    assert any(line.strip().startswith("legacy_old (skipped)") and "out of order" in line
               for line in done.stdout.splitlines()), done.stdout
    with psycopg.connect(dsn, autocommit=True) as t:
        logit = t.execute("SELECT base_logit FROM ml.woe_anchor_model_registry_v1 "
                          "WHERE model_key = 'legacy_new'").fetchone()[0]
        assert logit == t.execute("SELECT ln(%s::float8 / (1 - %s::float8))", [rate, rate]).fetchone()[0]
        assert abs(logit - math.log(rate / (1 - rate))) <= 1e-12
        after = t.execute(f"SELECT generation, listing_id, t0, woe_logit FROM {legacy.TRAIN_VIEW} "
                          "ORDER BY 1, 2, 3").fetchall()
    assert [r[:3] for r in after] == [r[:3] for r in before] and all(math.isfinite(r[3]) for r in after)


def test_a_migration_waits_only_briefly_for_a_trainer_run_in_flight(trainer_db):
    """A trainer writing its tables holds them: migrate gives up after a few seconds rather than keep every
    reader of the pipeline's views queued behind it, and changes nothing."""
    dsn, _ = trainer_db
    with psycopg.connect(dsn) as trainer:
        trainer.execute("LOCK TABLE ml.woe_anchor_scores_v1 IN ROW EXCLUSIVE MODE")  # a persist in flight
        busy = _cli(dsn, *MIGRATE, "--recreate-views")
        trainer.rollback()
    assert busy.returncode == 2 and "tables are in use" in busy.stderr, busy.stderr
    with psycopg.connect(dsn) as t:
        assert t.execute("SELECT count(*) FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0] == 0
        assert t.execute("SELECT to_regclass('ml.woe_anchor_scores_v1') IS NOT NULL").fetchone()[0]
    assert _cli(dsn, *MIGRATE, "--recreate-views").returncode == 0


def test_the_trainer_serving_an_empty_model_is_refused_naming_it(trainer_db):
    dsn, info = trainer_db
    empty = info["quirks"]["empty_train"]
    with psycopg.connect(dsn, autocommit=True) as t:
        t.execute("UPDATE ml.woe_anchor_model_registry_v1 SET is_active = (model_key = %s), created_at = now()",
                  [empty])
    refused = _cli(dsn, *MIGRATE, "--recreate-views")
    assert refused.returncode == 2, refused.stdout
    assert empty in refused.stderr and "woe_anchor_trainer.woe_anchor_map_v1" in refused.stderr
    assert "woe_anchor_scores_v1_m" not in refused.stderr, "no internal partition names"
    with psycopg.connect(dsn) as t:
        assert t.execute("SELECT count(*) FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0] == 0
        assert t.execute("SELECT to_regclass(%s) IS NOT NULL", [legacy.TRAIN_VIEW]).fetchone()[0]


def test_create_views_never_replaces_a_view_it_did_not_make(server):
    name = f"woe_anchor_foreign_views_{os.getpid()}"
    dsn = install.fresh_database(server, name)
    try:
        with psycopg.connect(dsn, autocommit=True) as t:
            cases.load(t, "fv_src", cases.make_rows(seed=3, n=300))
            t.execute("CREATE VIEW ml.woe_anchor_scores_live_v1 AS SELECT 1 AS mine")
            t.execute("CREATE VIEW public.on_mine AS SELECT * FROM ml.woe_anchor_scores_live_v1")
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="did not create it") as refused:
                t.execute("SELECT ml.woe_anchor_create_views('fv_src')")
            assert "replace_views" in refused.value.diag.message_hint
            assert t.execute("SELECT mine FROM ml.woe_anchor_scores_live_v1").fetchone()[0] == 1
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="public.on_mine"):
                t.execute("SELECT ml.woe_anchor_create_views('fv_src', replace_views => true)")
            assert t.execute("SELECT count(*) FROM public.on_mine").fetchone()[0] == 1
            t.execute("DROP VIEW public.on_mine")
            t.execute("SELECT ml.woe_anchor_create_views('fv_src', replace_views => true)")
            assert sorted(r[0] for r in t.execute("SELECT ml.woe_anchor_drop_views()")) == [
                "ml.v_woe_anchor_bands_live_v1", "ml.woe_anchor_logit(public.fv_src,text)",
                "ml.woe_anchor_p(public.fv_src,text)", "ml.woe_anchor_scores_live_train_v",
                "ml.woe_anchor_scores_live_v1", "ml.woe_anchor_scores_of(public.fv_src,text)"]
    finally:
        install.drop_database(server, name)


def test_migrate_reads_no_trainer_table_that_carries_its_owners_code(trainer_db):
    """The legacy tables are read as a superuser: a column of the owner's type (with the owner's cast),
    or the owner's statistics, would run its code with those rights."""
    dsn, _ = trainer_db
    with psycopg.connect(dsn, autocommit=True) as t:
        _hostile_owner(t, "ml.woe_anchor_map_v1")
        t.execute("DROP STATISTICS o.armed")
        t.execute(f"SET ROLE {OWNER}")
        t.execute("CREATE TYPE o.number AS ENUM ('NaN')")
        t.execute("CREATE FUNCTION o.to_float(o.number) RETURNS float8 LANGUAGE plpgsql AS "
                  "$$ BEGIN PERFORM o.evil(); RETURN 'NaN'; END $$")
        t.execute("CREATE CAST (o.number AS float8) WITH FUNCTION o.to_float(o.number) AS ASSIGNMENT")
        t.execute("ALTER TABLE ml.woe_anchor_map_v1 ALTER COLUMN sum_w_pos TYPE o.number USING NULL")
        t.execute("RESET ROLE")
    refused = _cli(dsn, *MIGRATE, "--recreate-views")
    assert refused.returncode == 2, refused.stdout
    assert "woe_anchor_trainer.woe_anchor_map_v1" in refused.stderr and "not built in" in refused.stderr
    with psycopg.connect(dsn) as t:
        _not_escalated(t)
        assert t.execute("SELECT count(*) FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0] == 0


def test_the_import_locks_every_legacy_table_before_it_checks_any(trainer_db):
    """The import checks a legacy table, then reads it as a superuser: its owner must not be able to
    hang code on a table already checked while the import waits for the next one's lock."""
    dsn, _ = trainer_db
    assert _cli(dsn, *MIGRATE, "--recreate-views").returncode == 0
    legacy_tables = "woe_anchor_trainer.woe_anchor_model_registry_v1, woe_anchor_trainer.woe_anchor_cuts_v1"
    with psycopg.connect(dsn, autocommit=True) as t:
        _hostile_owner(t, "woe_anchor_trainer.woe_anchor_model_registry_v1")
        t.execute("DROP STATISTICS o.armed")
        t.execute(f"ALTER TABLE woe_anchor_trainer.woe_anchor_cuts_v1 OWNER TO {OWNER}")
        t.execute(f"GRANT CREATE ON SCHEMA woe_anchor_trainer TO {OWNER}")
    with psycopg.connect(dsn, autocommit=True) as owner, psycopg.connect(dsn, autocommit=True) as admin:
        owner.execute(f"SET ROLE {OWNER}")
        with owner.transaction(force_rollback=True):
            owner.execute(f"LOCK TABLE {legacy_tables.split(', ')[1]} IN ROW EXCLUSIVE MODE")
            importing = threading.Thread(target=_import_quietly, args=(admin,))
            importing.start()
            _wait_for_lock_wait(dsn, admin.info.backend_pid)
            owner.execute("SET lock_timeout = '300ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                owner.execute("CREATE INDEX ON woe_anchor_trainer.woe_anchor_model_registry_v1 (model_key) "
                              "WHERE o.evil_key(1) = 1")
        importing.join(timeout=60)
        assert not importing.is_alive()
    with psycopg.connect(dsn) as t:
        _not_escalated(t)


def test_the_import_refuses_a_legacy_schema_whose_owner_could_swap_its_tables(trainer_db):
    """The import reads the legacy tables by name in several statements: the owner of their schema could
    rename it between the check and a read and put views calling its code under the old names. Only a
    superuser's schema is read, and nothing of it is read before that holds."""
    dsn, _ = trainer_db
    assert _cli(dsn, *MIGRATE, "--recreate-views").returncode == 0
    with psycopg.connect(dsn, autocommit=True) as t:
        _hostile_owner(t, "woe_anchor_trainer.woe_anchor_model_registry_v1")
        t.execute(f"ALTER SCHEMA woe_anchor_trainer OWNER TO {OWNER}")
        before = t.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1").fetchone()[0]
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="not a superuser's") as refused:
            t.execute("SELECT * FROM ml.woe_anchor_import_trainer('woe_anchor_trainer')")
        assert "OWNER TO a superuser" in refused.value.diag.message_hint
        assert "Traceback" not in str(refused.value) + (refused.value.diag.context or "")
        assert t.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1").fetchone()[0] == before
        _not_escalated(t)
        t.execute("ALTER SCHEMA woe_anchor_trainer OWNER TO CURRENT_USER")
        t.execute("ALTER TABLE woe_anchor_trainer.woe_anchor_scores_v1 RENAME TO gone")
        with pytest.raises(psycopg.errors.UndefinedTable, match="woe_anchor_scores_v1 does not exist"):
            t.execute("SELECT * FROM ml.woe_anchor_import_trainer('woe_anchor_trainer')")


def _import_quietly(conn):
    try:
        conn.execute("SELECT * FROM ml.woe_anchor_import_trainer('woe_anchor_trainer')").fetchall()
    except psycopg.Error:
        pass  # the models were imported by the migration already: only the locks matter here


def _wait_for_lock_wait(dsn, pid):
    with psycopg.connect(dsn, autocommit=True) as watcher:  # a superuser sees every backend's wait
        for _ in range(200):
            if watcher.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                               [pid]).fetchone()[0]:
                return
            time.sleep(0.05)
    pytest.fail("the import never waited for the lock")


@pytest.mark.parametrize("variant", ["boolean_filter", "extra_filter", "gate_view", "guard_in_ml"])
def test_a_fail_closed_view_of_another_shape_is_not_migrated_without_an_explicit_guard(trainer_db, variant):
    """Only the trainer's shape (the scoring view's columns, one lateral guard call) is understood:
    a view that fails closed some other way is refused, not migrated into one that serves rows."""
    dsn, _ = trainer_db
    scoring = f"SELECT s.generation, s.listing_id, s.t0, s.model_key, s.woe_logit, s.woe_anchor_p_slow21 " \
              f"FROM {legacy.SCORES_VIEW} AS s"
    gate = "('ml.woe_anchor_feature_store_t0_v1_v', interval '24 hours')"
    with psycopg.connect(dsn, autocommit=True) as t:
        if variant == "boolean_filter":
            t.execute("CREATE FUNCTION audit.is_certified(text, interval) RETURNS boolean LANGUAGE sql STABLE "
                      "AS 'SELECT EXISTS (SELECT FROM audit.t0_cert_registry WHERE entrypoint = $1 "
                      "AND status = ''CERTIFIED'' AND certified_at >= now() - $2)'")
            body = f"{scoring} WHERE audit.is_certified{gate}"
        elif variant == "extra_filter":
            body = f"{scoring} CROSS JOIN LATERAL audit.require_certified_strict{gate} AS g " \
                   "WHERE s.t0 >= '2026-04-01'"
        elif variant == "gate_view":
            t.execute(f"CREATE VIEW audit.gate_v AS SELECT num_nulls(x.*) AS ok "
                      f"FROM (SELECT audit.require_certified_strict{gate} AS r) AS x")
            body = f"{scoring} CROSS JOIN audit.gate_v"
        else:
            t.execute("CREATE FUNCTION ml.require_certified(text, interval) RETURNS void LANGUAGE sql "
                      "AS 'SELECT audit.require_certified_strict($1, $2)'")
            body = f"{scoring} CROSS JOIN LATERAL ml.require_certified{gate} AS g"
        t.execute(f"CREATE OR REPLACE VIEW {legacy.TRAIN_VIEW} AS {body}")
        before = _views(dsn)
    refused = _cli(dsn, *MIGRATE, "--recreate-views")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "is not the trainer's fail-closed view" in refused.stderr and "--guard" in refused.stderr
    assert _views(dsn) == before
    with psycopg.connect(dsn) as t:
        assert t.execute("SELECT count(*) FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0] == 0
    # named by the user, the guard is what woe_anchor's view runs
    plan = _cli(dsn, *MIGRATE, "--dry-run", "--guard",
                "audit.require_certified_strict('ml.woe_anchor_feature_store_t0_v1_v'::text, '24:00:00'::interval)")
    assert plan.returncode == 0, plan.stderr


def test_a_legacy_schema_of_any_name_migrates_and_rolls_back(trainer_db):
    """--legacy-schema is an identifier the user chose: quoted wherever it is used (a quote and
    upper case in it name that schema, not another)."""
    dsn, _ = trainer_db
    before = _views(dsn)
    odd = 'Bad"Schema'
    done = _cli(dsn, *MIGRATE, "--recreate-views", "--legacy-schema", odd)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(dsn) as t:
        assert t.execute("SELECT count(*) FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
                         "WHERE n.nspname = %s AND c.relname = 'migrated_views'", [odd]).fetchone()[0] == 1
    back = _cli(dsn, "migrate", "--rollback", "--legacy-schema", odd)
    assert back.returncode == 0, back.stderr
    assert _views(dsn) == before
    with psycopg.connect(dsn) as t:
        assert t.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", [odd]).fetchone()[0] == 0


def test_a_model_served_again_by_bumping_created_at_keeps_its_scores(trainer_db):
    """existing-installation.md 7.3: the readers serve the newest created_at, so serving an older
    model again means bumping it; its scores, written by its last run, are still its own."""
    dsn, _ = trainer_db
    with psycopg.connect(dsn, autocommit=True) as t:
        legacy_rows = t.execute("SELECT count(*) FROM ml.woe_anchor_scores_v1 WHERE model_key = 'legacy_old'"
                                ).fetchone()[0]
        t.execute("UPDATE ml.woe_anchor_model_registry_v1 SET is_active = (model_key = 'legacy_old'), "
                  "created_at = CASE WHEN model_key = 'legacy_old' THEN now() ELSE created_at END")
        t.execute("SELECT audit.run_t0_cert_woe_anchor_store_v1()")
    done = _cli(dsn, *MIGRATE, "--recreate-views")
    assert done.returncode == 0, done.stderr
    assert "active: legacy_old" in done.stdout
    assert not [line for line in done.stdout.splitlines() if "legacy_old (imported)" in line and "older" in line]
    with psycopg.connect(dsn) as t:
        assert t.execute("SELECT count(*) FROM ml.woe_anchor_stored_scores('legacy_old')").fetchone()[0] \
            == legacy_rows > 0


def test_what_else_the_replaced_views_carry_comes_back_and_readers_never_deadlock(trainer_db):
    """Column grants, grant options, column comments, rules and triggers of a re-created view are made
    again (and by a rollback); a reader of the pipeline in flight waits for the migration, never
    deadlocks with it (the views are locked outermost first, then the tables)."""
    dsn, _ = trainer_db
    col, dele = f"woe_mig_col_{os.getpid()}", f"woe_mig_delegate_{os.getpid()}"
    entry = legacy.ENTRYPOINT
    with psycopg.connect(dsn, autocommit=True) as t:
        for role in (col, dele):
            t.execute(f"DROP ROLE IF EXISTS {role}")
            t.execute(f"CREATE ROLE {role}")
            t.execute(f"GRANT USAGE ON SCHEMA ml TO {role}")
        t.execute(f"GRANT SELECT (model_key, woe_logit) ON {entry} TO {col}")
        # woe_anchor's live views read the source with their reader's rights (the plan says so)
        t.execute(f"GRANT USAGE ON SCHEMA market TO {col}")
        t.execute(f"GRANT SELECT ON {legacy.SOCIO_STORE}, {legacy.VISION_STORE}, {legacy.LABELS} TO {col}")
        t.execute(f"GRANT SELECT ON {entry} TO {dele} WITH GRANT OPTION")
        t.execute(f"COMMENT ON COLUMN {entry}.woe_logit IS 'the anchor''s logit'")
        t.execute(f"CREATE RULE keep_rows AS ON DELETE TO {entry} DO INSTEAD NOTHING")
        t.execute("CREATE FUNCTION audit.refuse_insert() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN RAISE EXCEPTION 'read only'; END $$")
        t.execute(f"CREATE TRIGGER refuse_insert INSTEAD OF INSERT ON {entry} FOR EACH ROW "
                  "EXECUTE FUNCTION audit.refuse_insert()")
        carried = _carried(t, entry)
    assert len(carried) == 6, carried
    with psycopg.connect(dsn) as reader:
        reader.execute(f"SELECT count(*) FROM {entry}").fetchone()  # holds the entrypoint's lock, in a transaction
        done = _cli(dsn, *MIGRATE, "--recreate-views")
        assert done.returncode == 2 and "in use" in done.stderr, done.stderr  # waited, then gave up: no deadlock
        reader.rollback()
    stop, errors = threading.Event(), []
    readers = [threading.Thread(target=_read_in_a_loop, args=(dsn, entry, stop, errors)) for _ in range(2)]
    for r in readers:
        r.start()
    try:
        done = _cli(dsn, *MIGRATE, "--recreate-views")
    finally:
        stop.set()
        for r in readers:
            r.join(30)
    assert done.returncode == 0, done.stderr
    assert not [e for e in errors if isinstance(e, psycopg.errors.DeadlockDetected)], errors
    with psycopg.connect(dsn) as t:
        assert _carried(t, entry) == carried
        t.execute(f"SET ROLE {col}")
        assert t.execute(f"SELECT count(woe_logit) FROM {entry}").fetchone()[0] > 0
        t.rollback()
    rolled = _cli(dsn, "migrate", "--rollback")
    assert rolled.returncode == 0, rolled.stderr
    with psycopg.connect(dsn, autocommit=True) as t:
        assert _carried(t, entry) == carried
        for role in (col, dele):
            t.execute(f"DROP OWNED BY {role}")
            t.execute(f"DROP ROLE {role}")


def _carried(t, view):
    """A view's column grants and grant options, column comments, rules and triggers, as text."""
    return sorted(t.execute("""
        SELECT format('%%s %%s %%s', a.grantee::regrole, a.privilege_type, a.is_grantable)
        FROM aclexplode((SELECT relacl FROM pg_class WHERE oid = %(v)s::regclass)) AS a WHERE a.is_grantable
        UNION ALL SELECT format('%%s (%%s) %%s', a.grantee::regrole, t.attname, a.privilege_type)
        FROM pg_attribute AS t, aclexplode(t.attacl) AS a WHERE t.attrelid = %(v)s::regclass
        UNION ALL SELECT format('%%s: %%s', t.attname, col_description(t.attrelid, t.attnum)) FROM pg_attribute AS t
        WHERE t.attrelid = %(v)s::regclass AND col_description(t.attrelid, t.attnum) IS NOT NULL
        UNION ALL SELECT rulename FROM pg_rewrite WHERE ev_class = %(v)s::regclass AND rulename <> '_RETURN'
        UNION ALL SELECT tgname FROM pg_trigger WHERE tgrelid = %(v)s::regclass AND NOT tgisinternal""",
                            {"v": view}).fetchall())


def _read_in_a_loop(dsn, view, stop, errors):
    with psycopg.connect(dsn, autocommit=True) as c:
        while not stop.is_set():
            try:
                c.execute(f"SELECT count(*) FROM {view}").fetchone()
            except psycopg.Error as e:
                errors.append(e)


@pytest.mark.parametrize("args, words", [
    (["--source", "public.woe_no_such_source"], "woe_no_such_source"),
    (["--map", "t0=woe_no_such_column"], "woe_no_such_column"),
    (["--activation-hook", "audit.woe_no_such_hook()"], "woe_no_such_hook"),
    (["--guard", "not sql"], "not sql"),
])
def test_a_dry_run_refuses_what_the_migration_would(trainer_db, args, words):
    dsn, _ = trainer_db
    plan = _cli(dsn, *MIGRATE, *args, "--dry-run")
    assert plan.returncode == 2 and words in plan.stderr + plan.stdout and "Traceback" not in plan.stderr, \
        (plan.returncode, plan.stdout, plan.stderr)


def test_a_legacy_row_the_registry_refuses_is_named_and_a_schema_version_noted(trainer_db):
    dsn, _ = trainer_db
    with psycopg.connect(dsn, autocommit=True) as t:
        t.execute("UPDATE ml.woe_anchor_model_registry_v1 SET band_schema_version = 2 WHERE model_key = 'legacy_new'")
        t.execute("UPDATE ml.woe_anchor_model_registry_v1 SET eps = 0 WHERE model_key = 'legacy_old'")
    refused = _cli(dsn, *MIGRATE, "--recreate-views")
    assert refused.returncode == 2 and "'legacy_old'" in refused.stderr and "woe_anchor_model_registry_v1" in \
        refused.stderr and "eps" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    with psycopg.connect(dsn, autocommit=True) as t:
        t.execute("UPDATE ml.woe_anchor_model_registry_v1 SET eps = 0.5 WHERE model_key = 'legacy_old'")
    done = _cli(dsn, *MIGRATE, "--recreate-views")
    assert done.returncode == 0, done.stderr
    assert any("legacy_new (imported)" in line and "band_schema_version 2" in line for line in done.stdout.splitlines())


def test_a_function_returning_a_replaced_views_rows_is_a_blocker(trainer_db):
    dsn, _ = trainer_db
    with psycopg.connect(dsn, autocommit=True) as t:
        t.execute(f"CREATE FUNCTION audit.entry_rows() RETURNS SETOF {legacy.ENTRYPOINT} LANGUAGE sql "
                  f"AS 'SELECT * FROM {legacy.ENTRYPOINT}'")
    plan = _cli(dsn, *MIGRATE, "--dry-run")
    assert plan.returncode == 2 and "audit.entry_rows()" in plan.stdout and "keep them from being dropped" in \
        plan.stdout, (plan.stdout, plan.stderr)


@pytest.mark.parametrize("dropped", [False, True])
def test_a_rollback_removes_what_the_migration_installed_even_after_drop_extension_cascade(trainer_db, dropped):
    """plpython3u, installed by CREATE EXTENSION woe_anchor CASCADE, goes again; after a DROP EXTENSION
    woe_anchor CASCADE (PostgreSQL's own hint) the trainer's tables and views still come back."""
    dsn, _ = trainer_db
    extensions = "SELECT array_agg(extname::text ORDER BY extname) FROM pg_extension"
    with psycopg.connect(dsn) as t:
        before, views = t.execute(extensions).fetchone()[0], _views(dsn)
    assert "plpython3u" not in before
    done = _cli(dsn, *MIGRATE, "--recreate-views")
    assert done.returncode == 0, done.stderr
    if dropped:
        with psycopg.connect(dsn, autocommit=True) as t:
            t.execute("DROP EXTENSION woe_anchor CASCADE")
    rolled = _cli(dsn, "migrate", "--rollback")
    assert rolled.returncode == 0, rolled.stderr
    with psycopg.connect(dsn) as t:
        assert t.execute(extensions).fetchone()[0] == before
        assert t.execute(f"SELECT count(*) FROM {legacy.TRAIN_VIEW}").fetchone()[0] > 0
    assert _views(dsn) == views


def test_a_readers_view_over_the_pipeline_migrates_and_a_rule_on_a_replaced_view_is_a_blocker(trainer_db):
    """A view of a role that may only read (its owner's rights are checked by LOCK TABLE on a view)
    does not stop the migration; a rule or trigger on a view woe_anchor replaces would run with the
    new view's owner's rights, so it stops it."""
    dsn, _ = trainer_db
    analyst = f"woe_mig_analyst_{os.getpid()}"
    with psycopg.connect(dsn, autocommit=True) as t:
        t.execute(f"DROP ROLE IF EXISTS {analyst}")
        t.execute(f"CREATE ROLE {analyst}")
        t.execute(f"GRANT USAGE ON SCHEMA ml TO {analyst}")
        t.execute(f"GRANT SELECT ON {legacy.SCORES_VIEW} TO {analyst}")
        t.execute(f"CREATE VIEW public.analyst_scores AS SELECT model_key, count(*) AS n FROM {legacy.SCORES_VIEW} "
                  "GROUP BY 1")
        t.execute(f"ALTER VIEW public.analyst_scores OWNER TO {analyst}")
        t.execute("CREATE TABLE public.mig_loot (s text)")
        t.execute(f"CREATE RULE steal AS ON INSERT TO {legacy.SCORES_VIEW} DO INSTEAD "
                  "INSERT INTO public.mig_loot VALUES ('x')")
    plan = _cli(dsn, *MIGRATE, "--dry-run")
    assert plan.returncode == 2 and "carries rules or triggers" in plan.stdout, (plan.stdout, plan.stderr)
    with psycopg.connect(dsn, autocommit=True) as t:
        t.execute(f"DROP RULE steal ON {legacy.SCORES_VIEW}")
    done = _cli(dsn, *MIGRATE, "--recreate-views")
    assert done.returncode == 0, done.stderr
    with psycopg.connect(dsn, autocommit=True) as t:
        assert t.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'public.analyst_scores'::regclass"
                         ).fetchone()[0] == analyst
        t.execute("DROP VIEW public.analyst_scores")
        t.execute(f"DROP OWNED BY {analyst}")
        t.execute(f"DROP ROLE {analyst}")
