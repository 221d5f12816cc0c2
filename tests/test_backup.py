"""pg_dump / restore keeps every model, the active pointer and identical scores."""
from __future__ import annotations

import os
import subprocess

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import cases
from conftest import fit
from woe_anchor_harness import install

ARTIFACT_QUERIES = {
    "registry": "SELECT * FROM ml.woe_anchor_model_registry_v1 ORDER BY model_key",
    "cuts": "SELECT * FROM ml.woe_anchor_cuts_v1 ORDER BY model_key, fold_id NULLS FIRST",
    "map": "SELECT * FROM ml.woe_anchor_map_v1 ORDER BY model_key, fold_id NULLS FIRST, band_name, band_value",
    "scores": "SELECT * FROM ml.woe_anchor_scores_v1 ORDER BY model_key, generation, listing_id, t0",
    "partitions": "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), "
                  "(SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) "
                  "FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid "
                  "WHERE h.inhparent = 'ml.woe_anchor_scores_v1'::regclass ORDER BY 1",
    "score_fn": "SELECT * FROM ml.woe_anchor_score('bk_src') ORDER BY 1, 2, 3",
    "score_fn_b": "SELECT * FROM ml.woe_anchor_score('bk_src', 'bk_replaced') ORDER BY 1, 2, 3",
    "scores_view": "SELECT * FROM ml.woe_anchor_scores_live_v1 ORDER BY 1, 2, 3",
    "train_view": "SELECT * FROM ml.woe_anchor_scores_live_train_v ORDER BY 1, 2, 3",
    "bands_view": "SELECT * FROM ml.v_woe_anchor_bands_live_v1 ORDER BY 1, 2, 3",
    "features": "SELECT * FROM ml.woe_anchor_training_features('bk_active') ORDER BY 1, 2, 3",
    "sequence": "SELECT last_value FROM ml.woe_anchor_model_id_seq",
    # schema 1 comes from CREATE EXTENSION (its own created_at); the others from the dump
    "band_schemas": "SELECT version, description, created_by, subsets, learned, "
                    "CASE WHEN version <> 1 THEN created_at END FROM ml.woe_anchor_band_schemas ORDER BY version",
    "bands": "SELECT * FROM ml.woe_anchor_bands ORDER BY schema_version, position",
    "score_fn_schema_2": "SELECT * FROM ml.woe_anchor_score('bk_src', 'bk_schema_2') ORDER BY 1, 2, 3",
    # the lifecycle and monitoring tables, and the per-row functions
    "activations": "SELECT * FROM ml.woe_anchor_activations ORDER BY id",
    "policy": "SELECT * FROM ml.woe_anchor_policy ORDER BY name",
    "notes": "SELECT * FROM ml.woe_anchor_model_notes ORDER BY model_key",
    "realized": "SELECT * FROM ml.woe_anchor_realized ORDER BY model_key, week",
    "alerts": "SELECT * FROM ml.woe_anchor_alerts ORDER BY id",
    "psi": "SELECT * FROM ml.woe_anchor_psi ORDER BY model_key, at, band_name",
    "row_fn": "SELECT ml.woe_anchor_p(l) FROM bk_src AS l ORDER BY generation, listing_id, t0",
}


def snapshot(dsn):
    with psycopg.connect(dsn) as conn:
        return {name: conn.execute(q).fetchall() for name, q in ARTIFACT_QUERIES.items()}


@pytest.fixture
def source_db(server):
    name = f"woe_anchor_backup_{os.getpid()}"
    dsn = install.fresh_database(server, name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        cases.load(conn, "bk_src", cases.make_rows(seed=51, n=1200))
        fit(conn, "bk_src", model_key="bk_active", cutoff="2026-03-28 00:00+00")  # settled rows after it
        fit(conn, "bk_src", model_key="bk_replaced", activate=False)
        fit(conn, "bk_src", model_key="bk_replaced", activate=False, n_folds=3, replace=True)
        fit(conn, "bk_src", model_key="bk_dropped", activate=False)
        cases.define_schema_2(conn, 2, 50.0)  # a user schema, used by a model: restored before its guard bites
        fit(conn, "bk_src", model_key="bk_schema_2", activate=False, band_schema_version=2)
        conn.execute("SELECT ml.woe_anchor_drop_model('bk_dropped')")
        conn.execute("SELECT ml.woe_anchor_create_views('bk_src')")
        conn.execute("SELECT ml.woe_anchor_annotate('bk_replaced', 'kept', ARRAY['b'], true)")
        conn.execute("SELECT ml.woe_anchor_set_policy('min_train_sold', 10)")
        conn.execute("SELECT * FROM ml.woe_anchor_monitor('bk_src', 'bk_active', window_days => 3650, "
                     "psi_limit => 1e-9, channel => NULL)")
        conn.execute("SELECT ml.woe_anchor_activate('bk_replaced'), ml.woe_anchor_rollback()")
    yield name, dsn
    install.drop_database(server, name)


def _env(server):
    info = conninfo_to_dict(server.dsn)
    return dict(os.environ, PGHOST=info["host"], PGPORT=str(info["port"]), PGUSER=info["user"])


@pytest.mark.local_server  # this machine's pg_dump and pg_restore, without a password
@pytest.mark.parametrize("form", ["custom", "plain", "parallel"])
def test_dump_and_restore_keep_every_model(server, source_db, tmp_path, form):
    name, dsn = source_db
    before = snapshot(dsn)
    assert len(before["registry"]) == 3 and len(before["partitions"]) == 3
    assert [v[0] for v in before["band_schemas"]] == [1, 2]
    assert all(p[2] == 1 for p in before["partitions"]), "each partition has its primary key"
    kept = ("activations", "policy", "notes", "realized", "alerts", "psi")
    assert all(before[name] for name in kept), {name: len(before[name]) for name in kept}
    target = f"{name}_restored"
    restored = install.fresh_database(server, target, extension=False)
    env, dump = _env(server), tmp_path / "woe.dump"
    try:
        if form == "custom":
            subprocess.run([*server.client("pg_dump"), "-Fc", "-d", name, "-f", str(dump)], env=env, check=True)
            subprocess.run([*server.client("pg_restore"), "--exit-on-error", "-d", target, str(dump)],
                           env=env, check=True)
        elif form == "parallel":
            # docs/backup.md: everything but woe_anchor's configuration tables with -j, then those
            # alone and serially, in the archive's order (their foreign keys exist from CREATE EXTENSION)
            subprocess.run([*server.client("pg_dump"), "-Fc", "-d", name, "-f", str(dump)], env=env, check=True)
            listed = subprocess.run([*server.client("pg_restore"), "-l", str(dump)], env=env, check=True,
                                    capture_output=True, text=True).stdout.splitlines(keepends=True)
            ours = [line for line in listed if " TABLE DATA ml woe_anchor_" in line]
            (tmp_path / "rest.list").write_text("".join(line for line in listed if line not in ours))
            (tmp_path / "woe_anchor.list").write_text("".join(ours))
            for jobs, items in (("-j2", "rest.list"), ("-j1", "woe_anchor.list")):
                subprocess.run([*server.client("pg_restore"), "--exit-on-error", jobs, "-d", target,
                                "-L", str(tmp_path / items), str(dump)], env=env, check=True)
        else:
            subprocess.run([*server.client("pg_dump"), "-d", name, "-f", str(dump)], env=env, check=True)
            subprocess.run([*server.client("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target, "-f", str(dump)],
                           env=env, check=True, capture_output=True)
        assert snapshot(restored) == before
        with psycopg.connect(restored, autocommit=True) as conn:  # the restored copy keeps fitting
            assert fit(conn, "bk_src", model_key="bk_after_restore") == "bk_after_restore"
    finally:
        install.drop_database(server, target)


@pytest.mark.local_server
def test_a_dump_of_schema_ml_alone_gives_no_in_sample_scores_for_lost_oof_ones(server, source_db, tmp_path):
    """`pg_dump -n ml` leaves the score partitions (schema woe_anchor_scores) out: the restored
    models must refuse to give training features, never fill TRAIN SOLD with in-sample scores."""
    name, dsn = source_db
    target = f"{name}_ml_only"
    restored = install.fresh_database(server, target)
    env, dump = _env(server), tmp_path / "ml.dump"
    try:
        subprocess.run([*server.client("pg_dump"), "-Fc", "-n", "ml", "-n", "public", "-d", name, "-f", str(dump)],
                       env=env, check=True)
        # the extension is there already: its schema's CREATE fails, the rest restores
        subprocess.run([*server.client("pg_restore"), "-d", target, str(dump)], env=env, capture_output=True)
        with psycopg.connect(restored, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1").fetchone()[0] == 3
            for query in ("SELECT count(*) FROM ml.woe_anchor_training_features('bk_active')",
                          "SELECT count(*) FROM ml.woe_anchor_stored_scores('bk_active')"):
                with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as refused:
                    conn.execute(query)
                assert "has no stored scores" in refused.value.diag.message_primary
                assert "woe_anchor_scores" in refused.value.diag.message_hint
    finally:
        install.drop_database(server, target)


def test_drop_extension_needs_cascade_with_views_and_takes_the_models_with_it(source_db):
    """What docs/backup.md promises."""
    _, dsn = source_db
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DependentObjectsStillExist) as refused:
            conn.execute("DROP EXTENSION woe_anchor")
        assert "v_woe_anchor_bands_live_v1" in refused.value.diag.message_detail
        assert "woe_anchor_scores_of" in refused.value.diag.message_detail, "the per-row functions too"
        dropped = {r[0] for r in conn.execute("SELECT ml.woe_anchor_drop_views()")}
        assert {"ml.v_woe_anchor_bands_live_v1", "ml.woe_anchor_scores_live_v1",
                "ml.woe_anchor_scores_live_train_v"} <= dropped
        conn.execute("DROP EXTENSION woe_anchor")
        left = conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname IN ('ml', 'woe_anchor_scores') AND c.relname LIKE 'woe_anchor%'"
                            ).fetchone()[0]
        assert left == 0, "registry, maps, cuts and every score partition are gone"
        assert conn.execute("SELECT to_regnamespace('woe_anchor_scores')").fetchone()[0] is None
        conn.execute("CREATE EXTENSION woe_anchor")
        assert conn.execute("SELECT count(*) FROM ml.woe_anchor_model_registry_v1").fetchone()[0] == 0


@pytest.mark.local_server
def test_files_no_relation_owns_are_listed(conn, server):
    """A killed fit leaves its half-written scores' files; the function lists such files (here one
    put there by hand, as a crash would leave it) and nothing a relation owns."""
    data = server.host_path(conn.execute("SHOW data_directory").fetchone()[0])
    dboid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]
    stray, tombstone = data / "base" / str(dboid) / "4000000001", data / "base" / str(dboid) / "4000000003"
    stray.write_bytes(b"\0" * 8192)
    tombstone.write_bytes(b"")  # what a dropped relation leaves until the next checkpoint
    for f in (stray, tombstone):
        os.chown(f, *server.owner_ids())
    try:
        listed = conn.execute("SELECT file, bytes FROM ml.woe_anchor_orphaned_files()").fetchall()
        assert (f"base/{dboid}/4000000001", 8192) in listed
        assert not [file for file, _ in listed if file.endswith("/4000000003")], "an empty file holds nothing"
        mine = conn.execute("SELECT pg_relation_filepath('ml.woe_anchor_map_v1')").fetchone()[0]
        assert all(file != mine for file, _ in listed)
    finally:
        stray.unlink()
        tombstone.unlink()
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_orphaned_files() WHERE file LIKE '%%/4000000001'"
                        ).fetchone()[0] == 0
