"""A hostile trainer (docs/security.md): it never acts as another role.

Every test plays the attacks a trainer set up with ml.woe_anchor_grant could
try: make an administrator or a reader run its code, read what it may not,
drop or block what is not its own. Trainer code records who runs it in a side
table (``woe_pwned``); after each test no row may name another role, and the
trainer must still not be a superuser.
"""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from contextlib import contextmanager, nullcontext

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import artifacts
import cases
from conftest import fit, drop_live_views
from woe_anchor_harness import install

SUFFIX = os.getpid()
TRAINER, OTHER, READER = f"woe_sec_t_{SUFFIX}", f"woe_sec_t2_{SUFFIX}", f"woe_sec_r_{SUFFIX}"
TSCHEMA = f"woe_sec_t_{SUFFIX}"  # the trainer's own schema, where its code lives

EVIL = f"""
CREATE FUNCTION {TSCHEMA}.evil() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.woe_pwned (who, what) VALUES (current_user, 'evil ran');
    BEGIN
        EXECUTE 'ALTER ROLE {TRAINER} SUPERUSER';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN true;
END
$$"""


@contextmanager
def as_role(conn, role):
    conn.execute(f"SET ROLE {role}")
    try:
        yield conn
    finally:
        conn.execute("RESET ROLE")


def escalations(conn):
    """Trainer code that ran as another role, and whether the trainer became a superuser."""
    ran = conn.execute("SELECT who, what FROM public.woe_pwned WHERE who <> %s", [TRAINER]).fetchall()
    superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [TRAINER]).fetchone()[0]
    return ran, superuser


@pytest.fixture
def cast(conn):
    """Two trainers, a reader (LOGIN: pg_cron runs jobs as them) and a source they may read."""
    for r in (TRAINER, OTHER, READER):
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [r]).fetchone():
            conn.execute(f"DROP OWNED BY {r}")
            conn.execute(f"DROP ROLE {r}")
        conn.execute(f"CREATE ROLE {r} LOGIN")
    conn.execute(f"CREATE SCHEMA {TSCHEMA} AUTHORIZATION {TRAINER}")
    conn.execute("DROP TABLE IF EXISTS public.woe_pwned")
    conn.execute("CREATE TABLE public.woe_pwned (who name, what text)")
    conn.execute("GRANT INSERT ON public.woe_pwned TO PUBLIC")
    cases.load(conn, "sec_src", cases.make_rows(seed=61, n=900))
    cases.load(conn, "sec_secret", cases.make_rows(seed=62, n=900))
    conn.execute(f"GRANT SELECT ON sec_src TO {TRAINER}, {OTHER}, {READER}")
    conn.execute("SELECT ml.woe_anchor_grant(trainer => %s, reader => %s)", [TRAINER, READER])
    conn.execute("SELECT ml.woe_anchor_grant(trainer => %s)", [OTHER])
    with as_role(conn, TRAINER):
        conn.execute(EVIL)
    yield conn
    conn.execute("RESET ROLE")
    assert escalations(conn) == ([], False), "no trainer code ran as another role"
    for key in [r[0] for r in conn.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1 "
                                           "WHERE fitted_by IN (%s, %s)", [TRAINER, OTHER])]:
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])
    conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE created_by IN (%s, %s)", [TRAINER, OTHER])
    for r in (TRAINER, OTHER, READER):
        conn.execute(f"DROP OWNED BY {r}")
        conn.execute(f"DROP ROLE {r}")


def test_training_features_never_read_a_trainers_source_as_someone_else(cast):
    conn = cast
    admin_view = f"woe_sec_wrapped_{SUFFIX}"
    with as_role(conn, TRAINER):
        conn.execute(f"CREATE VIEW {TSCHEMA}.trap AS SELECT * FROM public.sec_src WHERE {TSCHEMA}.evil()")
        conn.execute(f"GRANT USAGE ON SCHEMA {TSCHEMA} TO {READER}")
        conn.execute(f"GRANT SELECT ON {TSCHEMA}.trap TO {READER}")
        conn.execute(f"GRANT EXECUTE ON FUNCTION {TSCHEMA}.evil() TO PUBLIC")
        # row-level security whose policy runs the trainer's function for whoever reads
        conn.execute(f"CREATE TABLE {TSCHEMA}.guarded AS SELECT * FROM public.sec_src")
        conn.execute(f"ALTER TABLE {TSCHEMA}.guarded ENABLE ROW LEVEL SECURITY")
        conn.execute(f"CREATE POLICY p ON {TSCHEMA}.guarded USING ({TSCHEMA}.evil())")
        conn.execute(f"GRANT SELECT ON {TSCHEMA}.guarded TO {READER}")
        trap = fit(conn, f"{TSCHEMA}.trap", model_key="sec_trap", activate=False)
        guarded = fit(conn, f"{TSCHEMA}.guarded", model_key="sec_guarded", activate=False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE ml.woe_anchor_model_registry_v1 SET source_relation = %s", [f"{TSCHEMA}.trap"])
    # an administrator's own view over the trap: the trainer's code is still on the path
    conn.execute(f"CREATE VIEW public.{admin_view} AS SELECT * FROM {TSCHEMA}.trap")
    conn.execute(f"GRANT SELECT ON public.{admin_view} TO {TRAINER}")
    with as_role(conn, TRAINER):
        wrapped = fit(conn, f"public.{admin_view}", model_key="sec_wrapped", activate=False)
    for key in (trap, guarded, wrapped):
        for role in (None, READER):
            with as_role(conn, role) if role else nullcontext():
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="runs code of roles without your"):
                    conn.execute("SELECT count(*) FROM ml.woe_anchor_training_features(%s)", [key])
    assert escalations(conn) == ([], False)
    # the trainer reads its own source; a reader names a source it trusts
    with as_role(conn, TRAINER):
        assert conn.execute("SELECT count(*) FROM ml.woe_anchor_training_features(%s)", [trap]).fetchone()[0] == 900
    with as_role(conn, READER):
        got = conn.execute("SELECT count(*) FROM ml.woe_anchor_training_features(%s, 'public.sec_src')",
                           [trap]).fetchone()[0]
    assert got == 900
    conn.execute(f"DROP VIEW public.{admin_view}")
    # an administrator's own table in the trainer's schema: the trainer could rename the schema and
    # put its view under the recorded name between the check and the read
    conn.execute(f"CREATE TABLE {TSCHEMA}.admins_table AS SELECT * FROM public.sec_src")
    in_theirs = fit(conn, f"{TSCHEMA}.admins_table", model_key="sec_in_their_schema", activate=False)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"schema {TSCHEMA} "):
        conn.execute("SELECT count(*) FROM ml.woe_anchor_training_features(%s)", [in_theirs])
    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [in_theirs])
    conn.execute(f"DROP TABLE {TSCHEMA}.admins_table")


def test_readers_and_trainers_list_the_models_with_their_size(cast):
    """ml.woe_anchor_models() sizes each score partition in a schema no role has USAGE on."""
    conn = cast
    with as_role(conn, TRAINER):
        key = fit(conn, "public.sec_src", model_key="sec_listed", activate=False)
    size = conn.execute("SELECT scores_bytes FROM ml.woe_anchor_models() WHERE model_key = %s", [key]).fetchone()[0]
    assert size > 0
    for role in (TRAINER, OTHER, READER):
        with as_role(conn, role):
            assert conn.execute("SELECT scores_bytes FROM ml.woe_anchor_models() WHERE model_key = %s",
                                [key]).fetchone()[0] == size, role


def test_views_read_the_source_with_the_readers_rights(cast):
    conn = cast
    version = 40 + SUFFIX % 1000
    columns = [c for c in cases.COLUMN_TYPES if c != "battery_pct_effective"]
    conn.execute(f"REVOKE SELECT ON sec_secret FROM {TRAINER}")
    conn.execute(f"GRANT SELECT ({', '.join(columns)}) ON sec_secret TO {TRAINER}")
    with as_role(conn, TRAINER):
        # schema 1 reads battery_pct_effective (band bat), which the trainer may not read in sec_secret
        conn.execute("SELECT ml.woe_anchor_copy_band_schema(1, %s)", [version])
        conn.execute(f"CREATE TABLE {TSCHEMA}.look_alike AS SELECT * FROM public.sec_src")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            fit(conn, "public.sec_secret", model_key="sec_column", band_schema_version=version)
        fit(conn, f"{TSCHEMA}.look_alike", model_key="sec_look", band_schema_version=version)
    conn.execute("SELECT ml.woe_anchor_create_views('sec_secret', %s)", [version])
    conn.execute("SELECT ml.woe_anchor_grant(trainer => %s, reader => %s)", [TRAINER, READER])
    try:
        for role in (TRAINER, READER):
            with as_role(conn, role):
                for query in ("SELECT bat_band FROM ml.v_woe_anchor_bands_live_v1",
                              "SELECT count(*) FROM ml.woe_anchor_scores_live_v1",
                              "SELECT count(*) FROM ml.woe_anchor_scores_live_train_v"):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(query)
        conn.execute(f"GRANT SELECT ON sec_secret TO {READER}")
        with as_role(conn, READER):
            assert conn.execute("SELECT count(*) FROM ml.woe_anchor_scores_live_train_v").fetchone()[0] == 900
    finally:
        drop_live_views(conn)
        conn.execute("SELECT ml.woe_anchor_drop_model('sec_look')")


def test_a_trainer_cannot_write_artifacts_take_ids_or_create_where_the_extension_acts(cast):
    conn = cast
    with as_role(conn, TRAINER):
        key = fit(conn, "sec_src", model_key="sec_mine", activate=False)
    model_id = artifacts.registry(conn, key)["model_id"]
    part = artifacts.partition(conn, key)
    with as_role(conn, TRAINER):
        for statement in (
                "UPDATE ml.woe_anchor_model_registry_v1 SET model_id = model_id + 1000",
                "UPDATE ml.woe_anchor_model_registry_v1 SET is_active = true WHERE model_key = 'sec_mine'",
                "DELETE FROM ml.woe_anchor_cuts_v1",
                "INSERT INTO ml.woe_anchor_map_v1 SELECT * FROM ml.woe_anchor_map_v1 LIMIT 1",
                "UPDATE ml.woe_anchor_cuts_v1 SET thresholds = '{\"c1\": \"1e999\"}'",
                "INSERT INTO ml.woe_anchor_shard_scores VALUES ('sec_mine', 'x', 'woe_anchor_scores_v1_0123456789ab_p0')",
                "SELECT setval('ml.woe_anchor_model_id_seq', 1)",
                "SELECT nextval('ml.woe_anchor_model_id_seq')",
                f"CREATE TABLE woe_anchor_scores.woe_anchor_scores_v1_m{model_id + 1} (x int)",
                "CREATE TABLE ml.planted (x int)",
                "CREATE FUNCTION ml.woe_anchor_score(text, text) RETURNS int LANGUAGE sql AS 'SELECT 1'",
                f"ALTER TABLE {part} ADD CHECK ({TSCHEMA}.evil())",
                f"CREATE VIEW {TSCHEMA}.on_partition AS SELECT * FROM {part} WHERE {TSCHEMA}.evil()",
                "SELECT woe_anchor_internal.set_active('sec_mine', current_user, 'activate', NULL)",
                "SELECT woe_anchor_internal.cron('SELECT 1')",
                "SELECT * FROM woe_anchor_internal.delete_models(ARRAY['sec_mine'])",
                f"SELECT woe_anchor_internal.caller('{uuid.uuid4()}')",
                "SELECT count(*) FROM ml._woe_anchor_callers"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    assert conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass",
                        [part]).fetchone()[0] == conn.execute(
        "SELECT pg_get_userbyid(extowner) FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0]
    # the staging table the fit wrote became that partition; its staging schema is gone, and with
    # it the only place besides its own schema where the trainer could create anything
    assert not conn.execute("SELECT has_table_privilege(%s, %s, 'INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER')",
                            [TRAINER, part]).fetchone()[0]
    assert conn.execute("SELECT array_agg(nspname::text) FROM pg_namespace WHERE has_schema_privilege(%s, oid, 'CREATE')",
                        [TRAINER]).fetchone()[0] == [TSCHEMA]
    # the trainer's default privileges grant its new tables to another role: not the partition
    with as_role(conn, TRAINER):
        conn.execute(f"ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT ON TABLES TO {OTHER}, PUBLIC")
        granted = fit(conn, "sec_src", model_key="sec_granted", activate=False)
    granted_part = artifacts.partition(conn, granted)
    for role in (OTHER, READER):
        assert not conn.execute("SELECT has_table_privilege(%s, %s, 'SELECT, INSERT')",
                                [role, granted_part]).fetchone()[0]
    # a fit after all that still gets the next id and its partition
    with as_role(conn, TRAINER):
        assert fit(conn, "sec_src", model_key="sec_next", activate=False) == "sec_next"


def test_forged_calls_of_the_definer_entry_points_are_refused(cast):
    conn = cast
    admin_key = fit(conn, "sec_src", model_key="sec_admins", activate=False)
    with as_role(conn, TRAINER):
        # a ticket says who inserted it, whatever the row claims
        ticket = str(uuid.uuid4())
        with conn.transaction():
            conn.execute("INSERT INTO ml._woe_anchor_callers VALUES (%s, %s, 0, '0')", [ticket, "postgres"])
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="fitted by"), conn.transaction():
                conn.execute("SELECT * FROM woe_anchor_internal.drop_model(%s, %s)", [ticket, admin_key])
        # that ticket is now of an earlier transaction: it is worth nothing
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="ticket"):
            conn.execute("SELECT woe_anchor_internal.activate(%s, %s)", [ticket, admin_key])
    # the definer takes staging tables over as the extension's owner: it must refuse anything but
    # a bare score table the caller made in a staging schema opened for it in this transaction,
    # or it would read what the caller may not, or run the caller's code
    payload = forged_payload(conn, staging=["public.sec_secret"])
    before = conn.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1").fetchone()[0]
    scores = ("generation int, listing_id bigint, t0 timestamptz, fold_id int, is_oof boolean, "
              "woe_logit float8, woe_p float8")
    with as_role(conn, TRAINER):
        # code planned or run with a table: a check, a default, a generated column; and what would
        # change the partition: no WAL, storage options, another shape
        conn.execute(f"CREATE FUNCTION {TSCHEMA}.evil_key(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS "
                     f"$$ BEGIN PERFORM {TSCHEMA}.evil(); RETURN $1; END $$")
        conn.execute(f"GRANT EXECUTE ON FUNCTION {TSCHEMA}.evil_key(int) TO PUBLIC")
        armed = (f"CREATE TABLE {{}} ({scores}, CHECK ({TSCHEMA}.evil_key(generation) > 0))",
                 f"CREATE TABLE {{}} ({scores.replace('woe_p float8', f'woe_p float8 DEFAULT {TSCHEMA}.evil_key(1)')})",
                 f"CREATE TABLE {{}} ({scores}, g int GENERATED ALWAYS AS ({TSCHEMA}.evil_key(generation)) STORED)",
                 f"CREATE UNLOGGED TABLE {{}} ({scores})",
                 f"CREATE TABLE {{}} ({scores}) WITH (autovacuum_enabled = false)",
                 f"CREATE TABLE {{}} ({scores}, extra int)",
                 f"CREATE TABLE {{}} ({scores}) PARTITION BY LIST (generation)",
                 f"CREATE TABLE {{}} OF {TSCHEMA}.score_row")
        conn.execute(f"CREATE TYPE {TSCHEMA}.score_row AS ({scores})")
        for statement in armed:
            with conn.transaction(force_rollback=True):
                schema = conn.execute("SELECT woe_anchor_internal.open_staging(woe_anchor_internal.ticket())").fetchone()[0]
                conn.execute(statement.format(f"{schema}.armed"))
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not a staging table"):
                    conn.execute("SELECT woe_anchor_internal.persist(woe_anchor_internal.ticket(), %s)",
                                 [json.dumps(dict(payload, staging=[f"{schema}.armed"]))])
        # a name is looked up, never run: tables named like SQL in the caller's own staging schema are
        # taken over as what they are, and the SQL in their names does nothing
        for injected in (f"t;alter/**/role/**/{TRAINER}/**/superuser--",
                         "t;select/**/pg_read_file('/etc/hostname')::int--"):
            with conn.transaction(force_rollback=True):
                schema = conn.execute("SELECT woe_anchor_internal.open_staging(woe_anchor_internal.ticket())").fetchone()[0]
                conn.execute(f"CREATE TABLE {schema}.t ({scores})")
                conn.execute(f'CREATE TABLE {schema}."{injected}" ({scores})')
                written = conn.execute("SELECT woe_anchor_internal.persist(woe_anchor_internal.ticket(), %s)",
                                       [json.dumps(dict(payload, staging=[f"{schema}.{injected}", f"{schema}.t"]))]
                                       ).fetchone()[0]
                assert json.loads(written)["model_key"] == payload["model_key"]
                assert not conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
        # an index or a trigger needs the table by name, so USAGE on the schema, which it never has
        with conn.transaction(force_rollback=True):
            schema = conn.execute("SELECT woe_anchor_internal.open_staging(woe_anchor_internal.ticket())").fetchone()[0]
            conn.execute(f"CREATE TABLE {schema}.scores ({scores})")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema"):
                conn.execute(f"CREATE INDEX ON {schema}.scores (({TSCHEMA}.evil_key(generation)))")
        conn.execute(f"CREATE TABLE {TSCHEMA}.not_staged ({scores})")
        conn.execute(f"CREATE TEMP TABLE temp_scores ({scores})")
        for staging in ("public.sec_secret", f"{TSCHEMA}.not_staged", "pg_temp.temp_scores"):
            with conn.transaction(force_rollback=True):
                conn.execute("SELECT woe_anchor_internal.open_staging(woe_anchor_internal.ticket())")
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not a staging table"):
                    conn.execute("SELECT woe_anchor_internal.persist(woe_anchor_internal.ticket(), %s)",
                                 [json.dumps(dict(payload, staging=[staging]))])
        # a staging schema is for its transaction only: committing one open fails, however it is tried
        for immediate in (False, True):
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="not taken over"):
                with conn.transaction():
                    conn.execute("SELECT woe_anchor_internal.open_staging(woe_anchor_internal.ticket())")
                    if immediate:
                        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # anything else created in it fails the persist that closes it
        with conn.transaction(force_rollback=True):
            schema = conn.execute("SELECT woe_anchor_internal.open_staging(woe_anchor_internal.ticket())").fetchone()[0]
            conn.execute(f"CREATE TABLE {schema}.scores ({scores})")
            conn.execute(f"CREATE FUNCTION {schema}.left_behind() RETURNS int LANGUAGE sql AS 'SELECT 1'")
            with pytest.raises(psycopg.errors.DependentObjectsStillExist, match="besides the fit's scores"):
                conn.execute("SELECT woe_anchor_internal.persist(woe_anchor_internal.ticket(), %s)",
                             [json.dumps(dict(payload, staging=[f"{schema}.scores"]))])
    assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'woe\\_anchor\\_staging\\_%'"
                        ).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM ml._woe_anchor_staging").fetchone()[0] == 0
    with as_role(conn, TRAINER):
        # a band schema other than the stored one is refused too
        doc = json.loads(payload["registry"]["band_schema"])
        doc["bands"] = doc["bands"][:2]
        forged = dict(payload, staging=[], registry=dict(payload["registry"], band_schema=json.dumps(doc)))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="band schema"):
            conn.execute("SELECT woe_anchor_internal.persist(woe_anchor_internal.ticket(), %s)", [json.dumps(forged)])
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1").fetchone()[0] == before
    # the trainer's own definer function, run by an administrator, still acts as the trainer
    with as_role(conn, TRAINER):
        conn.execute(f"CREATE FUNCTION {TSCHEMA}.sneaky(k text) RETURNS boolean LANGUAGE sql SECURITY DEFINER "
                     "AS 'SELECT ml.woe_anchor_drop_model(k)'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="fitted by"):
        conn.execute(f"SELECT {TSCHEMA}.sneaky(%s)", [admin_key])
    assert artifacts.registry(conn, admin_key) is not None
    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [admin_key])


def forged_payload(conn, staging):
    """What a trainer would hand woe_anchor_internal.persist itself: a complete, plausible model."""
    doc = conn.execute("SELECT ml.woe_anchor_band_schema(1)::text").fetchone()[0]
    registry = dict(train_cutoff_ts="2026-01-01T00:00:00+00", half_life_days=150, eps=0.5, n_folds=1,
                    band_schema_version=1, band_schema=doc, base_rate=0.5, base_logit=0.0,
                    slow_threshold_hours=504, min_duration_hours=48, oof=False, weight_ref_ts=0.0,
                    n_train_sold=1, n_learned=1, n_days=1, n_folds_with_rows=0, n_scored_oof=0,
                    source_relation="public.sec_src", parameters="{}", timings_ms='{"total": 0}')
    return dict(model_key=f"sec_forged_{SUFFIX}", replace=False, activate=False, registry=registry,
                thresholds='{"dsold_t1": -0.15, "dsold_t2": -0.05, "dsold_t3": 0.05, "dsold_t4": 0.15, '
                           '"c1": 0, "c2": 0}',
                fits={"fold_id": [None], "base_rate": [0.5], "base_logit": [0.0], "n_learned": [1]},
                maps={k: [] for k in ("fold_id", "band_name", "band_value", "woe", "sum_w_pos", "sum_w_neg",
                                      "n_rows")},
                staging=staging, shard_tables=[])


def test_one_trainer_cannot_drop_replace_or_block_anothers_models(cast):
    conn = cast
    with as_role(conn, TRAINER):
        mine = fit(conn, "sec_src", model_key="sec_t_model", activate=False)
        conn.execute("SELECT ml.woe_anchor_copy_band_schema(1, %s)", [60 + SUFFIX % 1000])
    with as_role(conn, OTHER):
        theirs = fit(conn, "sec_src", model_key="sec_t2_model", activate=False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="fitted by"):
            conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [mine])
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="fitted by"):
            fit(conn, "sec_src", model_key=mine, replace=True)
        assert conn.execute("SELECT * FROM ml.woe_anchor_prune(0)").fetchall() == [(theirs,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="created by"):
            conn.execute("SELECT ml.woe_anchor_drop_band(%s, 'sale')", [60 + SUFFIX % 1000])
        # no role but the extension's owner may lock the tables every fit reads
        for statement in ("LOCK TABLE ml.woe_anchor_band_schemas IN ACCESS EXCLUSIVE MODE",
                          "SELECT FROM ml.woe_anchor_band_schemas WHERE version = 1 FOR UPDATE",
                          "LOCK TABLE ml.woe_anchor_bands IN SHARE MODE"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(statement)
        # activation is the one switch every trainer shares
        conn.execute("SELECT ml.woe_anchor_activate(%s)", [mine])
    assert artifacts.registry(conn, mine) is not None and artifacts.active_keys(conn) == [mine]
    # a view over a model's partition (an administrator's here: trainers cannot even reach the
    # partitions) does not keep its model from being dropped
    part = artifacts.partition(conn, mine)
    conn.execute(f"CREATE VIEW public.woe_sec_on_partition AS SELECT * FROM {part}")
    conn.execute("SELECT ml.woe_anchor_activate(%s)", [fit(conn, "sec_src", model_key="sec_keep_active")])
    with as_role(conn, TRAINER):
        assert conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [mine]).fetchone()[0] is True
    assert conn.execute("SELECT to_regclass('public.woe_sec_on_partition')").fetchone()[0] is None
    conn.execute("SELECT ml.woe_anchor_drop_model('sec_keep_active')")


def test_one_trainer_cannot_freeze_anothers_band_schema_or_overwrite_its_monitoring(cast):
    """A model keeps its band schema from changing: no trainer fits with another's. A trainer may not
    monitor another's model, and what it records (calling the entry point itself) is its own claim:
    it replaces no week another role recorded, and the model's owner replaces what it recorded."""
    conn = cast
    version = 70 + SUFFIX % 1000
    with as_role(conn, TRAINER):
        conn.execute("SELECT ml.woe_anchor_copy_band_schema(1, %s)", [version])
        # listings created after the cutoff: realized performance has weeks to record
        cutoff = conn.execute("SELECT percentile_disc(0.7) WITHIN GROUP (ORDER BY t0) FROM sec_src").fetchone()[0]
        mine = fit(conn, "sec_src", model_key="sec_t_watched", activate=False, cutoff=cutoff)
        conn.execute("SELECT * FROM ml.woe_anchor_monitor('sec_src', %s, window_days => 3650, channel => NULL)",
                     [mine]).fetchall()
    history = ("SELECT week::text, n_rows, auc, recorded_by FROM ml.woe_anchor_realized WHERE model_key = %s "
               "ORDER BY week")
    recorded = conn.execute(history, [mine]).fetchall()
    assert recorded and {r[3] for r in recorded} == {TRAINER}
    fake_week = "2030-01-07"
    mine_id = conn.execute("SELECT model_id FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s",
                           [mine]).fetchone()[0]
    forged = {"model_key": mine, "model_id": mine_id, "channel": None, "window_days": 7, "psi": {"dsold": 9.9},
              "weeks": [{"week": week, "rows": 1, "slow21_rows": 1, "auc": 0.01, "logloss": 9.0, "mean_p": 0.5,
                         "observed_rate": 1.0} for week in (recorded[0][0], fake_week)],
              "alerts": [{"kind": "drift", "subject": "forged", "value": 9.9, "threshold": 0.25}]}
    record = "SELECT woe_anchor_internal.record_monitoring(woe_anchor_internal.ticket(), %s::jsonb)"
    with as_role(conn, OTHER):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"band schema {version}: it was created by"):
            fit(conn, "sec_src", model_key="sec_t2_on_theirs", band_schema_version=version, activate=False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"band schema {version}: it was created by"):
            conn.execute("SELECT ml.schedule_woe_anchor_fit('sec_on_theirs', '0 3 * * *', 'sec_src', "
                         "band_schema_version => %s)", [version])
        # the persist entry point itself, handed a model of that schema
        payload = forged_payload(conn, [])
        payload["registry"]["band_schema_version"] = version
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"band schema {version}: it was created by"):
            conn.execute("SELECT woe_anchor_internal.persist(woe_anchor_internal.ticket(), %s)", [json.dumps(payload)])
        # it may not monitor a model of a role it may not act as (a run reads as the fitter)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not act as that one"):
            conn.execute("SELECT * FROM ml.woe_anchor_monitor('sec_src', %s, window_days => 3650, channel => NULL)",
                         [mine])
        conn.execute(record, [json.dumps(forged)])
    now = conn.execute(history, [mine]).fetchall()
    assert now[:-1] == recorded and now[-1] == (fake_week, 1, 0.01, OTHER), "the owner's weeks stay"
    assert conn.execute("SELECT by_role FROM ml.woe_anchor_alerts WHERE subject = 'forged'").fetchall() == [(OTHER,)]
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1 WHERE band_schema_version = %s",
                        [version]).fetchone()[0] == 0
    with as_role(conn, TRAINER):
        conn.execute(record, [json.dumps(dict(forged, weeks=[dict(forged["weeks"][1], auc=0.5)], alerts=[]))])
        assert conn.execute(history, [mine]).fetchall()[-1] == (fake_week, 1, 0.5, TRAINER), "the owner replaces it"
        conn.execute("SELECT ml.woe_anchor_drop_band(%s, 'sale')", [version])  # still the trainer's to change
        # the persist entry point, called with what is not a fit's payload: a plain refusal
        good = forged_payload(conn, [])
        for payload in ("not json", "[]", '{"registry": 5}', json.dumps(dict(good, staging=[5])),
                        json.dumps(dict(good, registry=dict(good["registry"], band_schema_version="x")))):
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a payload of ml.fit_woe_anchor"):
                conn.execute("SELECT woe_anchor_internal.persist(woe_anchor_internal.ticket(), %s)", [payload])


def test_install_refuses_objects_a_non_superuser_planted_in_ml(server):
    name = f"woe_anchor_planted_{SUFFIX}"
    role = f"woe_planter_{SUFFIX}"
    dsn = install.fresh_database(server, name, extension=False)
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"DROP ROLE IF EXISTS {role}")
            c.execute(f"CREATE ROLE {role}")
            c.execute("CREATE SCHEMA ml")
            c.execute(f"GRANT USAGE, CREATE ON SCHEMA ml TO {role}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may create objects in schema ml"):
                c.execute("CREATE EXTENSION woe_anchor CASCADE")
            c.execute(f"SET ROLE {role}")
            c.execute("CREATE FUNCTION ml.woe_anchor_score(source text, model_key text DEFAULT NULL) "
                      "RETURNS int LANGUAGE sql AS 'SELECT 1'")
            c.execute("RESET ROLE")
            c.execute(f"REVOKE CREATE ON SCHEMA ml FROM {role}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"woe_anchor_score\(text,text\)"):
                c.execute("CREATE EXTENSION woe_anchor CASCADE")
            c.execute("DROP FUNCTION ml.woe_anchor_score(text, text)")
            c.execute("CREATE EXTENSION woe_anchor CASCADE")
            c.execute(f"DROP OWNED BY {role}")
    finally:
        install.drop_database(server, name)
        with psycopg.connect(server.dsn_for("postgres"), autocommit=True) as c:
            c.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.mark.local_server
@pytest.mark.usefixtures("cast")  # the trainer role
def test_dump_and_restore_run_no_trainer_code(server, tmp_path):
    """A database with a trainer's models, views and code, dumped and restored by a superuser."""
    name = f"woe_anchor_sec_dump_{SUFFIX}"
    source = install.fresh_database(server, name)
    restored = f"{name}_restored"
    try:
        with psycopg.connect(source, autocommit=True) as c:
            c.execute("CREATE TABLE public.woe_pwned (who name, what text)")
            c.execute("GRANT INSERT ON public.woe_pwned TO PUBLIC")
            cases.load(c, "sec_src", cases.make_rows(seed=63, n=600))
            c.execute(f"GRANT SELECT ON sec_src TO {TRAINER}")
            c.execute("SELECT ml.woe_anchor_grant(trainer => %s)", [TRAINER])
            c.execute(f"CREATE SCHEMA {TSCHEMA} AUTHORIZATION {TRAINER}")
            c.execute(f"SET ROLE {TRAINER}")
            c.execute(EVIL)
            c.execute(f"CREATE VIEW {TSCHEMA}.trap AS SELECT * FROM public.sec_src WHERE {TSCHEMA}.evil()")
            key = fit(c, f"{TSCHEMA}.trap", model_key="dumped")
            part = artifacts.partition(c, key)
            # code a restore would run as the restoring superuser: a check on the model's partition, or
            # a partition of its own whose key calls the trainer (IMMUTABLE, falsely)
            c.execute(f"CREATE FUNCTION {TSCHEMA}.evil_key(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS "
                      f"$$ BEGIN PERFORM {TSCHEMA}.evil(); RETURN $1; END $$")
            for attack in (f"ALTER TABLE {part} ADD CHECK ({TSCHEMA}.evil())",
                           "CREATE TABLE woe_anchor_scores.woe_anchor_scores_v1_m999 (LIKE ml.woe_anchor_scores_v1) "
                           f"PARTITION BY LIST (({TSCHEMA}.evil_key(generation)))"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute(attack)
            c.execute("RESET ROLE")
            c.execute("DELETE FROM public.woe_pwned")
        info = conninfo_to_dict(server.dsn)
        dump = tmp_path / "db.dump"
        common = ["-h", info["host"], "-p", str(info["port"]), "-U", info["user"]]
        subprocess.run([*server.client("pg_dump"), *common, "-Fc", "-f", str(dump), name], check=True)
        install.fresh_database(server, restored, extension=False)
        subprocess.run([*server.client("pg_restore"), *common, "-d", restored, "--exit-on-error",
                        str(dump)], check=True, capture_output=True)
        with psycopg.connect(server.dsn_for(restored)) as r:
            assert r.execute("SELECT count(*) FROM public.woe_pwned").fetchone()[0] == 0
            assert r.execute("SELECT count(*) FROM ml.woe_anchor_scores_v1 WHERE model_key = 'dumped'"
                             ).fetchone()[0] > 0
            assert r.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [TRAINER]).fetchone()[0] is False
    finally:
        install.drop_database(server, restored)
        install.drop_database(server, name)


def test_band_schema_numbers_out_of_range_are_problems_not_tracebacks(cast):
    conn = cast
    version = 80 + SUFFIX % 1000
    with as_role(conn, TRAINER):
        conn.execute("SELECT ml.woe_anchor_copy_band_schema(1, %s)", [version])
        for i, value in enumerate(("1e400", "9" * 5000, "-1e999")):
            conn.execute("SELECT ml.woe_anchor_set_band(%s, %s, %s::jsonb)",
                         [version, f"huge_{i}", f'{{"kind": "ladder", "input": {{"column": "image_count"}}, '
                                                f'"steps": [{{"op": "<", "value": {value}, "label": "lo"}}], '
                                                f'"else": "hi"}}'])
        conn.execute("SELECT ml.woe_anchor_set_band(%s, 'year', %s::jsonb)",
                     [version, '{"kind": "ladder", "input": {"t0_utc_year": 1e300}, '
                               '"steps": [{"op": "<", "value": 1, "label": "lo"}], "else": "hi"}'])
        problems = conn.execute("SELECT band_name, problem FROM ml.woe_anchor_band_schema_problems(%s)",
                                [version]).fetchall()
        assert {b for b, _ in problems} == {"huge_0", "huge_1", "huge_2", "year"}, problems
        with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
            fit(conn, "sec_src", model_key="sec_huge", band_schema_version=version)
    assert "Traceback" not in str(refused.value) and "Error" not in str(refused.value).split(":")[0]


def test_training_features_follow_partitions_to_their_owners(cast):
    """A superuser's partitioned source with a trainer's partition, whose statistics call the trainer."""
    conn = cast
    conn.execute("DROP TABLE IF EXISTS public.sec_parts")
    conn.execute("CREATE TABLE public.sec_parts (LIKE public.sec_src) PARTITION BY LIST (generation)")
    conn.execute("CREATE TABLE public.sec_parts_a PARTITION OF public.sec_parts FOR VALUES IN (1, 2)")
    conn.execute(f"CREATE TABLE {TSCHEMA}.sec_parts_b PARTITION OF public.sec_parts FOR VALUES IN (3)")
    conn.execute(f"ALTER TABLE {TSCHEMA}.sec_parts_b OWNER TO {TRAINER}")
    conn.execute("INSERT INTO public.sec_parts SELECT * FROM public.sec_src")
    conn.execute(f"GRANT SELECT ON public.sec_parts TO {TRAINER}, {READER}")
    with as_role(conn, TRAINER):
        conn.execute(f"CREATE FUNCTION {TSCHEMA}.evil_key(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS "
                     f"$$ BEGIN PERFORM {TSCHEMA}.evil(); RETURN $1; END $$")
        key = fit(conn, "public.sec_parts", model_key="sec_parts", activate=False)
        conn.execute(f"CREATE STATISTICS {TSCHEMA}.armed ON ({TSCHEMA}.evil_key(1)), generation "
                     f"FROM {TSCHEMA}.sec_parts_b")
    for role in (None, READER):
        with as_role(conn, role) if role else nullcontext():
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"{TSCHEMA}.sec_parts_b"):
                conn.execute("SELECT count(*) FROM ml.woe_anchor_training_features(%s)", [key])
    conn.execute("DROP TABLE public.sec_parts")


def test_activation_hooks_run_with_narrow_rights_and_a_pinned_search_path(cast):
    """A hook runs in the activating trainer's session, where its temporary tables come first, and
    inside an entry point that runs as the extension's owner: it must bring rights of its own."""
    conn = cast
    auditor = f"woe_sec_auditor_{SUFFIX}"
    conn.execute(f"DROP ROLE IF EXISTS {auditor}")
    conn.execute(f"CREATE ROLE {auditor}")
    conn.execute("CREATE TABLE public.sec_activations (model_key text, who name)")
    conn.execute(f"GRANT INSERT ON public.sec_activations TO {auditor}")
    body = "AS 'INSERT INTO sec_activations VALUES (k, current_user)'"
    pinned = "SET search_path = public, pg_catalog, pg_temp"
    elevated = f"woe_sec_elevated_{SUFFIX}"  # a member of a superuser role: as good as one
    conn.execute(f"DROP ROLE IF EXISTS {elevated}")
    conn.execute(f"CREATE ROLE {elevated} NOINHERIT")
    conn.execute(f"GRANT postgres TO {elevated}")
    hooks = {"sec_invoker": f"{pinned} {body}", "sec_unpinned": f"SECURITY DEFINER {body}",
             "sec_superusers": f"SECURITY DEFINER {pinned} {body}", "sec_elevated": f"SECURITY DEFINER {pinned} {body}",
             "sec_audited": f"SECURITY DEFINER {pinned} {body}"}
    for name, rest in hooks.items():
        conn.execute(f"CREATE FUNCTION public.{name}(k text) RETURNS void LANGUAGE sql {rest}")
    conn.execute(f"ALTER FUNCTION public.sec_audited(text) OWNER TO {auditor}")
    conn.execute(f"ALTER FUNCTION public.sec_unpinned(text) OWNER TO {auditor}")
    conn.execute(f"ALTER FUNCTION public.sec_elevated(text) OWNER TO {elevated}")
    try:
        for name, problem in (("sec_invoker", "SECURITY DEFINER"), ("sec_superusers", "not a superuser"),
                              ("sec_elevated", "nor a member of one"), ("sec_unpinned", "must pin its search_path")):
            with pytest.raises(psycopg.errors.InvalidParameterValue, match=problem):
                conn.execute(f"SELECT ml.woe_anchor_add_activation_hook('public.{name}(text)')")
        conn.execute("SELECT ml.woe_anchor_add_activation_hook('public.sec_audited(text)')")
        with as_role(conn, TRAINER):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT ml.woe_anchor_add_activation_hook('public.sec_audited(text)')")
            key = fit(conn, "sec_src", model_key="sec_hooked", activate=False)
            # the trainer's own table of that name, with a trigger running its code
            conn.execute("CREATE TEMP TABLE sec_activations (model_key text, who name)")
            conn.execute(f"CREATE FUNCTION {TSCHEMA}.trap() RETURNS trigger LANGUAGE plpgsql AS "
                         f"$$ BEGIN PERFORM {TSCHEMA}.evil(); RETURN NEW; END $$")
            conn.execute(f"CREATE TRIGGER trap BEFORE INSERT ON pg_temp.sec_activations "
                         f"FOR EACH ROW EXECUTE FUNCTION {TSCHEMA}.trap()")
            conn.execute("SELECT ml.woe_anchor_activate(%s)", [key])
            conn.execute("DROP TABLE pg_temp.sec_activations")
        assert conn.execute("SELECT model_key, who FROM public.sec_activations").fetchall() == [(key, auditor)]
        # a hook handed to another role, or dropped, does not silently stop guarding activations
        other = fit(conn, "sec_src", model_key="sec_hooked_2", activate=False)
        conn.execute(f"ALTER FUNCTION public.sec_audited(text) OWNER TO {TRAINER}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"now belongs to {TRAINER}"):
            conn.execute("SELECT ml.woe_anchor_activate(%s)", [other])
        conn.execute(f"ALTER FUNCTION public.sec_audited(text) OWNER TO {auditor}")
        conn.execute("DROP FUNCTION public.sec_audited(text)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no longer exists"):
            conn.execute("SELECT ml.woe_anchor_activate(%s)", [other])
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [other])
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_activation_hooks")
        conn.execute("DROP TABLE public.sec_activations")
        for name in hooks:
            conn.execute(f"DROP FUNCTION IF EXISTS public.{name}(text)")
        conn.execute(f"DROP ROLE {auditor}")
        conn.execute(f"DROP ROLE {elevated}")


def test_a_hooks_owner_cannot_change_it_between_its_check_and_its_call(cast, dsn):
    """Hooks run as the extension's owner's callee: one that stops being SECURITY DEFINER, or is
    swapped for another function by name, between its check and its call would run as the owner."""
    conn = cast
    pinned = f"SECURITY DEFINER SET search_path = {TSCHEMA}, pg_catalog, pg_temp"
    with as_role(conn, TRAINER):
        conn.execute(f"CREATE FUNCTION {TSCHEMA}.hook_b(k text) RETURNS void LANGUAGE plpgsql {pinned} AS "
                     f"$$ BEGIN PERFORM {TSCHEMA}.evil(); END $$")
        # an earlier hook of the same owner strips the later one of SECURITY DEFINER ...
        conn.execute(f"CREATE FUNCTION {TSCHEMA}.hook_a(k text) RETURNS void LANGUAGE plpgsql {pinned} AS "
                     f"$$ BEGIN ALTER FUNCTION {TSCHEMA}.hook_b(text) SECURITY INVOKER; END $$")
        # ... or renames it and puts a plain function in its place
        conn.execute(f"CREATE FUNCTION {TSCHEMA}.hook_swap(k text) RETURNS void LANGUAGE plpgsql {pinned} AS "
                     f"$$ BEGIN ALTER FUNCTION {TSCHEMA}.hook_c(text) RENAME TO hook_c_orig; "
                     f"CREATE FUNCTION {TSCHEMA}.hook_c(k text) RETURNS void LANGUAGE plpgsql "
                     f"AS 'BEGIN PERFORM {TSCHEMA}.evil(); END'; END $$")
        conn.execute(f"CREATE FUNCTION {TSCHEMA}.hook_c(k text) RETURNS void LANGUAGE sql {pinned} AS "
                     "'INSERT INTO public.woe_pwned VALUES (current_user, ''hook_c ran'')'")
        key = fit(conn, "sec_src", model_key="sec_swapped", activate=False)
    try:
        for hook in ("hook_a", "hook_b"):
            conn.execute("SELECT ml.woe_anchor_add_activation_hook(%s)", [f"{TSCHEMA}.{hook}(text)"])
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be SECURITY DEFINER"):
            conn.execute("SELECT ml.woe_anchor_activate(%s)", [key])
        conn.execute("DELETE FROM ml.woe_anchor_activation_hooks")
        for hook in ("hook_swap", "hook_c"):
            conn.execute("SELECT ml.woe_anchor_add_activation_hook(%s)", [f"{TSCHEMA}.{hook}(text)"])
        # the plain function put in the registered one's name is checked, and refused, before it runs
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be SECURITY DEFINER"):
            conn.execute("SELECT ml.woe_anchor_activate(%s)", [key])
        assert conn.execute("SELECT who, what FROM public.woe_pwned").fetchall() == []
        # while an activation's transaction is open, its hooks are locked against their owner
        assert conn.execute("SELECT ml.woe_anchor_remove_activation_hook(%s)", [f"{TSCHEMA}.hook_swap(text)"]
                            ).fetchone()[0]
        conn.execute("SELECT ml.woe_anchor_activate(%s)", [key])
        assert conn.execute("SELECT who, what FROM public.woe_pwned").fetchall() == [(TRAINER, "hook_c ran")]
        other = fit(conn, "sec_src", model_key="sec_swapped_2", activate=False)
        conn.execute(f"GRANT CREATE ON DATABASE {conn.info.dbname} TO {TRAINER}")  # to rename its schema
        with psycopg.connect(dsn, autocommit=True) as owner:
            owner.execute(f"SET ROLE {TRAINER}")
            owner.execute("SET lock_timeout = '200ms'")
            with conn.transaction(force_rollback=True):
                conn.execute("SELECT ml.woe_anchor_activate(%s)", [other])
                with pytest.raises(psycopg.errors.LockNotAvailable):
                    owner.execute(f"ALTER FUNCTION {TSCHEMA}.hook_c(text) SECURITY INVOKER")
                with pytest.raises(psycopg.errors.LockNotAvailable):
                    owner.execute(f"ALTER SCHEMA {TSCHEMA} RENAME TO {TSCHEMA}_moved")
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [other])
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_activation_hooks")


def test_a_hook_leaves_nothing_behind_in_the_session_that_activates(cast):
    """A hook runs in the activator's session: a plain SET, a temporary view in front of the
    activator's tables or a prepared statement in place of one of the activator's would outlive it."""
    conn = cast
    pinned = f"SECURITY DEFINER SET search_path = {TSCHEMA}, pg_catalog, pg_temp"
    bodies = {"sets": f"SET search_path = {TSCHEMA}, pg_catalog, public",
              "shadows": f"CREATE TEMP VIEW sec_src AS SELECT * FROM public.sec_src WHERE {TSCHEMA}.evil()",
              "prepares": f"EXECUTE 'DEALLOCATE sec_mine'; EXECUTE 'PREPARE sec_mine AS SELECT {TSCHEMA}.evil()'",
              # a deferred trigger fires at commit as whoever commits: the administrator
              "defers": f"INSERT INTO {TSCHEMA}.later VALUES (1)",
              # a setting nothing defines (a placeholder) is not in pg_settings: this one lifts the artifact guard
              "unguards": "SET woe_anchor.artifact_write = on",
              # what the activation log records as the model that served before a direct activation
              "forges_the_log": "PERFORM set_config('woe_anchor.deactivated', '1', false)",
              # the activator's next fit would spill every row to disk
              "starves_fits": "PERFORM set_config('woe_anchor.fit_memory', '64kB', false)"}
    with as_role(conn, TRAINER):
        conn.execute(f"CREATE TABLE {TSCHEMA}.later (x int)")
        conn.execute(f"CREATE FUNCTION {TSCHEMA}.at_commit() RETURNS trigger LANGUAGE plpgsql AS "
                     f"$$ BEGIN PERFORM {TSCHEMA}.evil(); RETURN NULL; END $$")
        conn.execute(f"CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON {TSCHEMA}.later "
                     f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {TSCHEMA}.at_commit()")
        for name, body in bodies.items():
            conn.execute(f"CREATE FUNCTION {TSCHEMA}.{name}(k text) RETURNS void LANGUAGE plpgsql {pinned} AS "
                         f"$$ BEGIN {body}; END $$")
        key = fit(conn, "sec_src", model_key="sec_session", activate=False)
    search_path = conn.execute("SHOW search_path").fetchone()[0]
    conn.execute("PREPARE sec_mine AS SELECT 1")
    try:
        for name in bodies:
            conn.execute("SELECT ml.woe_anchor_add_activation_hook(%s)", [f"{TSCHEMA}.{name}(text)"])
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="changed the session"):
                conn.execute("SELECT ml.woe_anchor_activate(%s)", [key])
            conn.execute("DELETE FROM ml.woe_anchor_activation_hooks")
        assert conn.execute("SHOW search_path").fetchone()[0] == search_path
        assert conn.execute("SELECT to_regclass('pg_temp.sec_src')").fetchone()[0] is None
        # the statement the hook put in place of the administrator's is gone: executing it fails, runs nothing
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            conn.execute("EXECUTE sec_mine")
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_activation_hooks")
        conn.execute("DEALLOCATE ALL")


def test_a_hook_that_changes_nothing_is_not_refused(cast, dsn):
    """In a fresh session, a hook that loads a library defining settings of its own (postgres_fdw),
    or calls an extension function that defines the extension's own setting (a prune), changes
    nothing the activator keeps: the activation goes through."""
    conn = cast
    conn.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
    pinned = f"SECURITY DEFINER SET search_path = {TSCHEMA}, public, pg_catalog, pg_temp"
    with as_role(conn, TRAINER):
        conn.execute(f"CREATE FUNCTION {TSCHEMA}.quiet(k text) RETURNS void LANGUAGE plpgsql {pinned} AS "
                     "$$ BEGIN PERFORM count(*) FROM postgres_fdw_get_connections(); "
                     "PERFORM ml.woe_anchor_prune(1000); END $$")
        key = fit(conn, "sec_src", model_key="sec_quiet", activate=False)
    conn.execute(f"GRANT EXECUTE ON FUNCTION postgres_fdw_get_connections TO {TRAINER}")  # 18 added an argument
    conn.execute("SELECT ml.woe_anchor_add_activation_hook(%s)", [f"{TSCHEMA}.quiet(text)"])
    try:
        with psycopg.connect(dsn, autocommit=True) as fresh:  # nothing loaded, nothing defined yet
            fresh.execute("SELECT ml.woe_anchor_activate(%s)", [key])
            assert fresh.execute("SELECT current_setting('postgres_fdw.application_name', true) IS NOT NULL"
                                 ).fetchone()[0], "the hook did load the library"
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_activation_hooks")


def test_source_views_live_only_in_a_superusers_schema(cast):
    conn = cast
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="owned by a superuser"):
        conn.execute("SELECT ml.woe_anchor_create_source_view(%s, ARRAY['public.sec_src'::regclass])",
                     [f"{TSCHEMA}.swappable"])
    name = conn.execute("SELECT ml.woe_anchor_create_source_view('public.sec_source_v', "
                        "ARRAY['public.sec_src'::regclass])").fetchone()[0]
    assert conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == 900
    with as_role(conn, TRAINER):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT ml.woe_anchor_create_source_view('public.sec_other_v', "
                         "ARRAY['public.sec_src'::regclass])")
    conn.execute("SELECT ml.woe_anchor_drop_views()")


def test_tickets_a_caller_kept_do_not_pile_up(cast):
    conn = cast
    with as_role(conn, TRAINER):
        for _ in range(50):
            conn.execute("INSERT INTO ml._woe_anchor_callers VALUES (gen_random_uuid(), '', 0, '0')")
        conn.execute("SELECT ml.woe_anchor_drop_model('sec_no_such_model')")
    assert conn.execute("SELECT count(*) FROM ml._woe_anchor_callers").fetchone()[0] == 0


def test_training_features_follow_casts_to_a_trainers_domain(cast):
    """An administrator's view that casts to a trainer's domain runs the domain's check as its reader."""
    conn = cast
    with as_role(conn, TRAINER):
        conn.execute(f"CREATE DOMAIN {TSCHEMA}.checked AS integer CHECK ({TSCHEMA}.evil())")
        conn.execute(f"GRANT USAGE ON SCHEMA {TSCHEMA} TO PUBLIC")
        conn.execute(f"GRANT USAGE ON TYPE {TSCHEMA}.checked TO PUBLIC")
    columns = ", ".join(f"s.{c}::{TSCHEMA}.checked AS {c}" if c == "generation" else f"s.{c}"
                        for c in cases.COLUMN_TYPES)
    conn.execute(f"CREATE VIEW public.sec_cast_v AS SELECT {columns} FROM public.sec_src AS s")
    conn.execute(f"GRANT SELECT ON public.sec_cast_v TO {TRAINER}, {READER}")
    with as_role(conn, TRAINER):
        key = fit(conn, "public.sec_cast_v", model_key="sec_cast", activate=False)
    try:
        for role in (None, READER):
            with as_role(conn, role) if role else nullcontext():
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"type {TSCHEMA}.checked"):
                    conn.execute("SELECT count(*) FROM ml.woe_anchor_training_features(%s)", [key])
    finally:
        conn.execute("DROP VIEW public.sec_cast_v")


def test_a_caller_holding_old_tickets_blocks_no_one(cast, dsn):
    """The clean-up of unused tickets skips rows another transaction holds instead of waiting for them."""
    conn = cast
    fit(conn, "sec_src", model_key="sec_unblocked", activate=False)
    with psycopg.connect(dsn, autocommit=True) as a, psycopg.connect(dsn) as b, \
            psycopg.connect(dsn, autocommit=True) as c:
        a.execute(f"SET ROLE {OTHER}")
        a.execute("SELECT woe_anchor_internal.ticket()")  # committed and never used
        b.execute(f"SET ROLE {OTHER}")
        b.execute("SELECT ml.woe_anchor_drop_model('sec_no_such_model')")  # cleans up, and stays open
        c.execute(f"SET ROLE {TRAINER}")
        c.execute("SET statement_timeout = '5s'")
        a.execute("SELECT woe_anchor_internal.ticket()")
        c.execute("SELECT ml.woe_anchor_activate('sec_unblocked')")
        b.rollback()
    assert artifacts.active_keys(conn) == ["sec_unblocked"]
    conn.execute("SELECT ml.woe_anchor_drop_model('sec_unblocked')")


def test_revoke_takes_back_select_on_source_views_outside_ml(conn):
    """woe_anchor_grant gives readers SELECT on the views woe_anchor made, source views in any
    superuser's schema included; woe_anchor_revoke takes all of it back."""
    cases.load(conn, "sec_sv_base", cases.make_rows(n=300, seed=5))
    conn.execute("DROP SCHEMA IF EXISTS sec_views CASCADE")
    conn.execute("CREATE SCHEMA sec_views")
    conn.execute("DROP ROLE IF EXISTS sec_sv_reader")
    conn.execute("CREATE ROLE sec_sv_reader")
    try:
        view = conn.execute("SELECT ml.woe_anchor_create_source_view('sec_views.listings', "
                            "ARRAY['sec_sv_base']::regclass[])").fetchone()[0]
        conn.execute("SELECT ml.woe_anchor_grant(reader => 'sec_sv_reader')")
        assert conn.execute("SELECT has_table_privilege('sec_sv_reader', %s, 'SELECT')", [view]).fetchone()[0]
        conn.execute("SELECT ml.woe_anchor_revoke('sec_sv_reader')")
        assert not conn.execute("SELECT has_table_privilege('sec_sv_reader', %s, 'SELECT')", [view]).fetchone()[0]
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_views WHERE view_name = 'sec_views.listings'")
        conn.execute("DROP SCHEMA sec_views CASCADE")
        conn.execute("DROP OWNED BY sec_sv_reader")
        conn.execute("DROP ROLE sec_sv_reader")


def test_a_trainer_rolls_back_as_itself_and_cannot_change_the_policy_or_the_log(cast):
    """Rollback is the one serving switch again: logged with the trainer as who asked. The
    activation policy and the log are the extension's: a trainer reads them, nothing more."""
    conn = cast
    with as_role(conn, TRAINER):
        first = fit(conn, "sec_src", model_key=f"sec_rb1_{SUFFIX}")
        fit(conn, "sec_src", model_key=f"sec_rb2_{SUFFIX}", half_life_days=30.0)
        assert conn.execute("SELECT ml.woe_anchor_rollback()").fetchone()[0] == first
        assert conn.execute("SELECT by_role, action FROM ml.woe_anchor_activations ORDER BY id DESC LIMIT 1"
                            ).fetchone() == (TRAINER, "rollback")
        for attack in ("SELECT ml.woe_anchor_set_policy('min_oof_auc', 0.99)",
                       "INSERT INTO ml.woe_anchor_policy (name, value) VALUES ('min_oof_auc', 0.99)",
                       "DELETE FROM ml.woe_anchor_activations",
                       f"INSERT INTO ml.woe_anchor_activations (by_role, to_model, action) VALUES ('postgres', '{first}', 'activate')",
                       "SELECT woe_anchor_internal.set_active('x', 'postgres', 'activate', NULL)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(attack)
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_policy").fetchone()[0] == 0
    # notes: the owner's, another trainer may not touch them, nor write the table
    with as_role(conn, TRAINER):
        assert conn.execute("SELECT pinned FROM ml.woe_anchor_annotate(%s, pinned => true)", [first]).fetchone()[0]
    with as_role(conn, OTHER):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied to annotate model"):
            conn.execute("SELECT ml.woe_anchor_annotate(%s, pinned => false)", [first])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE ml.woe_anchor_model_notes SET pinned = false")
    assert conn.execute("SELECT pinned FROM ml.woe_anchor_model_notes WHERE model_key = %s", [first]).fetchone()[0]


def test_what_an_administrators_monitor_run_measured_stays_its_own(cast):
    """A trainer's bands, monitored by an administrator over a table the trainer may not read, would
    show the trainer that table's distribution (PSI against its own training shares, the weeks' row
    counts, the alerts): through readable records, and through what row security leaves (their
    count, the alerts' ids, a NOTIFY, the planner's statistics). Such a run is refused; what an
    administrator measured over what the trainer may read stays the administrator's."""
    conn = cast
    cases.load(conn, "sec_secret", cases.make_rows(seed=62, n=900))
    with as_role(conn, TRAINER):
        key = fit(conn, "sec_src", model_key="sec_probe")  # active: what a monitor without a key measures
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM sec_secret")
    counts = ("SELECT (SELECT count(*) FROM ml.woe_anchor_psi WHERE model_key = %(k)s), "
              "(SELECT count(*) FROM ml.woe_anchor_realized WHERE model_key = %(k)s), "
              "(SELECT count(*) FROM ml.woe_anchor_alerts WHERE model_key = %(k)s)")
    monitor = "SELECT count(*) FROM ml.woe_anchor_monitor(%s, window_days => 3650, psi_limit => 1e-9)"
    try:
        alert_ids = "SELECT last_value FROM ml.woe_anchor_alerts_id_seq"
        before = conn.execute(alert_ids).fetchone()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"fitted by {TRAINER}, who may not read"):
            conn.execute(monitor, ["sec_secret"])
        assert conn.execute(counts, {"k": key}).fetchone() == (0, 0, 0)
        assert conn.execute(alert_ids).fetchone() == before, "not one alert id taken"
        # the trainer may read the table, but row security hides half of it from it: the run reads
        # it as the trainer, so it measures that half (the rows the trainer reads itself)
        conn.execute(f"GRANT SELECT ON sec_secret TO {TRAINER}")
        conn.execute("ALTER TABLE sec_secret ENABLE ROW LEVEL SECURITY")
        conn.execute(f"CREATE POLICY sec_half ON sec_secret TO {TRAINER} USING (listing_id % 2 = 0)")
        psi = ("SELECT band_name, max(band_psi) FROM ml.woe_anchor_drift('sec_secret', now() - interval '3650 days', "
               "now(), %s) GROUP BY 1 ORDER BY 1")
        with as_role(conn, TRAINER):
            seen = conn.execute(psi, [key]).fetchall()
        assert seen != conn.execute(psi, [key]).fetchall(), "the trainer reads other rows than the administrator"
        conn.execute("SELECT count(*) FROM ml.woe_anchor_monitor('sec_secret', window_days => 3650, psi_limit => 1e9, "
                     "channel => NULL)")
        assert conn.execute("SELECT current_user").fetchone()[0] != TRAINER, "the caller's role is back"
        recorded = conn.execute("SELECT band_name, psi FROM ml.woe_anchor_psi WHERE model_key = %s ORDER BY 1",
                                [key]).fetchall()
        assert [(b, round(p, 12)) for b, p in recorded] == [(b, round(p, 12)) for b, p in seen]
        conn.execute("DELETE FROM ml.woe_anchor_realized WHERE model_key = %s", [key])
        conn.execute("DELETE FROM ml.woe_anchor_psi WHERE model_key = %s", [key])
        # over what the trainer reads, the administrator's records are the administrator's
        assert conn.execute(monitor, ["sec_src"]).fetchone()[0] > 0
        measured = conn.execute(counts, {"k": key}).fetchone()
        assert measured[0] and measured[2], measured
        for role in (TRAINER, OTHER, READER):
            with as_role(conn, role):
                assert conn.execute(counts, {"k": key}).fetchone() == (0, 0, 0), role
        # the trainer's own run, over what it may read, is its own to read
        with as_role(conn, TRAINER):
            conn.execute("SELECT count(*) FROM ml.woe_anchor_monitor('sec_src', window_days => 3650, channel => NULL)")
            assert conn.execute(counts, {"k": key}).fetchone()[0] > 0
            assert {r[0] for r in conn.execute("SELECT recorded_by FROM ml.woe_anchor_psi")} == {TRAINER}
    finally:
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])
        conn.execute("DELETE FROM ml.woe_anchor_alerts WHERE model_key = %s", [key])
        conn.execute("DROP TABLE sec_secret")


def test_who_may_monitor_anothers_model_is_the_current_roles_question(cast, dsn):
    """PostgreSQL lets a role SET ROLE by its session's login role: a login role that may become
    either trainer (a pooler's authenticator, say) must not make one trainer read as the other.
    And the monitor's switch of role ends with the caller's transaction as the caller's own would."""
    conn = cast
    with as_role(conn, TRAINER):
        theirs = fit(conn, "sec_src", model_key="sec_t_theirs", activate=False)
    auth = f"woe_sec_auth_{SUFFIX}"
    conn.execute(f"DROP ROLE IF EXISTS {auth}")
    conn.execute(f"CREATE ROLE {auth} LOGIN NOINHERIT")
    conn.execute(f"GRANT {TRAINER}, {OTHER} TO {auth}")
    monitor = "SELECT count(*) FROM ml.woe_anchor_monitor('sec_src', %s, window_days => 3650, channel => NULL)"
    try:
        with psycopg.connect(f"{dsn} user={auth}", autocommit=True) as c:
            c.execute(f"SET ROLE {OTHER}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not act as that one"):
                c.execute(monitor, [theirs])
            c.execute(f"SET ROLE {TRAINER}")
            c.execute(monitor, [theirs])  # its own model
        conn.execute(f"GRANT {TRAINER} TO {OTHER}")  # now a member: may act as the fitter
        with conn.transaction():
            conn.execute(f"SET LOCAL ROLE {OTHER}")
            conn.execute(monitor, [theirs])
            assert conn.execute("SELECT current_user").fetchone()[0] == OTHER
        assert conn.execute("SELECT current_user, current_setting('role')").fetchone() == (conn.info.user, "none")
    finally:
        conn.execute(f"REVOKE {TRAINER} FROM {OTHER}")
        conn.execute(f"DROP OWNED BY {auth}")
        conn.execute(f"DROP ROLE {auth}")
        conn.execute("DELETE FROM ml.woe_anchor_alerts WHERE model_key = %s", [theirs])
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [theirs])


def test_the_callers_role_comes_back_by_its_oid_after_a_rename(cast, dsn):
    """The role a monitor run sets back is the caller's by oid: renamed meanwhile (current_setting('role')
    keeps the old name), it comes back, and the records are the caller's, never the fitter's."""
    conn = cast
    with as_role(conn, TRAINER):
        theirs = fit(conn, "sec_src", model_key="sec_t_renamed", activate=False)
    member, renamed = f"woe_sec_m_{SUFFIX}", f"woe_sec_m2_{SUFFIX}"
    for r in (member, renamed):
        conn.execute(f"DROP ROLE IF EXISTS {r}")
    conn.execute(f"CREATE ROLE {member}")
    conn.execute(f"GRANT {TRAINER} TO {member}")
    conn.execute("SELECT ml.woe_anchor_grant(trainer => %s)", [member])
    try:
        with psycopg.connect(dsn) as c:
            c.execute(f"SET ROLE {member}")
            conn.execute(f"ALTER ROLE {member} RENAME TO {renamed}")
            c.execute("SELECT count(*) FROM ml.woe_anchor_monitor('sec_src', %s, window_days => 3650, channel => NULL)",
                      [theirs])
            assert c.execute("SELECT current_user").fetchone()[0] == renamed
            assert {r[0] for r in c.execute("SELECT recorded_by FROM ml.woe_anchor_psi WHERE model_key = %s",
                                            [theirs])} == {renamed}
            c.rollback()
    finally:
        conn.execute(f"DROP OWNED BY {renamed}")
        conn.execute(f"DROP ROLE {renamed}")
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [theirs])
