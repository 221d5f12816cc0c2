"""Installing the extension the ways users do: PGXS installcheck, CREATE EXTENSION on odd databases."""
from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import cases
import reference
from conftest import REPO
from woe_anchor_harness import install

REGRESS = REPO / "tests" / "regress"


@pytest.mark.local_server
def test_make_installcheck_passes(server):
    info = conninfo_to_dict(server.dsn)
    env = dict(os.environ, PGHOST=info.get("host", ""), PGPORT=str(info.get("port", "")),
               PGUSER=info.get("user", ""))
    result = subprocess.run(["make", "-s", "-C", str(REPO), "installcheck", f"PG_CONFIG={server.pg_config}"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All 1 tests passed" in result.stdout


def _psql_tables(out: str) -> list[list[list[str]]]:
    """The result tables of an aligned psql transcript, in order, as rows of stripped cells."""
    tables, rows = [], None
    for line in out.splitlines():
        if re.fullmatch(r"-+(\+-+)*", line):
            rows = []
        elif rows is not None and re.fullmatch(r"\(\d+ rows?\)", line):
            tables.append(rows)
            rows = None
        elif rows is not None:
            rows.append([cell.strip() for cell in line.split("|")])
    return tables


def test_the_smoke_tests_expected_numbers_are_the_references(conn):
    """make installcheck's golden numbers are not the engine's say-so: the independent reference,
    run on the same rows, gives each of them (to the 6 decimals printed)."""
    script = (REGRESS / "sql" / "woe_anchor_smoke.sql").read_text()
    create = re.search(r"CREATE TABLE smoke_listings AS.*?;", script, re.DOTALL)[0]
    conn.execute(create.replace("smoke_listings", "pg_temp.smoke_listings"))
    cutoff = re.search(r"cutoff => '([\d-]+)'", script)[1]
    cur = conn.execute("SELECT * FROM pg_temp.smoke_listings ORDER BY listing_id")
    names = [d.name for d in cur.description]
    columns = dict(zip(names, map(list, zip(*cur.fetchall()))))
    rows = {}
    for name, values in columns.items():
        if name in ("t0", "sold_time"):
            rows[name] = np.array([cases.epoch_us(v) for v in values], dtype=np.int64).astype("datetime64[us]")
        elif name == "final_status":
            rows[name] = np.array(values, dtype=object)
        else:
            rows[name] = np.array([float(v) for v in values], dtype=np.float64)
    ref = reference.fit_reference(rows, cutoff=np.datetime64(cutoff, "us"))
    _, registry, cuts, maps, scores = _psql_tables((REGRESS / "expected" / "woe_anchor_smoke.out").read_text())

    def same(printed: str, value: float) -> bool:
        return abs(float(printed) - value) <= 5e-7 + 1e-12

    final = ref["fits"][None]
    (_, _, n_train_sold, n_learned, n_days, n_folds, base_rate, t1, t4), = registry
    assert (int(n_train_sold), int(n_learned), int(n_days), int(n_folds)) == (
        ref["n_train_sold"], ref["n_learned"], ref["n_days"], len(ref["fits"]) - 1)
    assert same(base_rate, final["base_rate"])
    assert (float(t1), float(t4)) == (ref["dsold_thresholds"][0], ref["dsold_thresholds"][3])
    assert [int(r[0]) if r[0] else None for r in cuts] == [None] + sorted(k for k in ref["fits"] if k is not None)
    for fold, c1, c2, n in cuts:
        fit_ = ref["fits"][int(fold) if fold else None]
        assert same(c1, ref["cuts"][0]) and same(c2, ref["cuts"][1]) and int(n) == fit_["n_learned"]
    bands = sorted({band for band, _ in final["map"]})
    assert [r[0] for r in maps] == bands
    for band, n_values, weight in maps:
        entries = [v for (b, _), v in final["map"].items() if b == band]
        assert int(n_values) == len(entries) and same(weight, sum(e[1] + e[2] for e in entries)), band
    by_fold = {}
    for fold, _, _, p in ref["scores"].values():
        by_fold.setdefault(fold, []).append(p)
    assert [(int(f), o, int(n)) for f, o, n, _ in scores] == [(f, "t", len(by_fold[f])) for f in sorted(by_fold)]
    for fold, _, _, mean_p in scores:
        assert same(mean_p, float(np.mean(by_fold[int(fold)]))), fold


@pytest.fixture
def scratch(server):
    name = f"woe_anchor_scratch_{os.getpid()}"
    dsn = install.fresh_database(server, name, extension=False)
    yield dsn
    install.drop_database(server, name)


def test_create_extension_without_ml_schema(scratch):
    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION woe_anchor CASCADE")
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0] \
            == re.search(r"default_version = '(.+)'", (REPO / "woe_anchor.control").read_text())[1]
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'plpython3u'").fetchone()[0] == 1


def test_create_extension_where_ml_holds_unrelated_objects(scratch):
    with psycopg.connect(scratch, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA ml")
        conn.execute("CREATE TABLE ml.features (id int PRIMARY KEY, x float8)")
        conn.execute("INSERT INTO ml.features VALUES (1, 2.5)")
        conn.execute("CREATE FUNCTION ml.helper() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        conn.execute("CREATE EXTENSION woe_anchor CASCADE")
        assert conn.execute("SELECT x FROM ml.features").fetchone()[0] == 2.5
        assert conn.execute("SELECT ml.helper()").fetchone()[0] == 1
        conn.execute("DROP EXTENSION woe_anchor")
        assert conn.execute("SELECT x FROM ml.features").fetchone()[0] == 2.5, "drop leaves user objects alone"


def test_nothing_is_executable_by_public(conn):
    rows = conn.execute("""
        SELECT p.oid::regprocedure::text FROM pg_proc p
        JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
        JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'woe_anchor'
        WHERE has_function_privilege('public', p.oid, 'EXECUTE')""").fetchall()
    assert rows == []


def test_every_function_pins_search_path(conn):
    rows = conn.execute("""
        SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p
        JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
        JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'woe_anchor'""").fetchall()
    assert rows
    for name, config in rows:
        assert "search_path=pg_catalog, pg_temp" in (config or []), name


def test_only_the_documented_entry_points_are_security_definer(conn):
    rows = conn.execute("""
        SELECT p.proname FROM pg_proc p
        JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
        JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'woe_anchor'
        WHERE p.prosecdef ORDER BY 1""").fetchall()
    # docs/security.md, "Entry points": each learns its caller from a ticket
    assert [r[0] for r in rows] == ["activate", "annotate", "drop_model", "edit_band_schema",
                                    "open_staging", "persist", "prune", "record_monitoring",
                                    "rollback", "schedule", "unschedule"]


def test_internal_routines_are_out_of_the_users_way(conn):
    """\\df ml.* lists what a user calls, each with a comment; the internals are in their own schema."""
    rows = conn.execute("""
        SELECT n.nspname, p.proname, obj_description(p.oid, 'pg_proc') FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
        JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'woe_anchor'""").fetchall()
    public = {name: comment for schema, name, comment in rows if schema == "ml"}
    internal = [name for schema, name, _ in rows if schema == "woe_anchor_internal"]
    assert {schema for schema, _, _ in rows} == {"ml", "woe_anchor_internal"}
    assert len(internal) > 30 and len(public) < 45
    assert [n for n in public if "woe_anchor" not in n] == [], "public names say whose they are"
    assert [n for n, c in public.items() if not c or c.startswith("woe_anchor internal")] == []


def test_every_artifact_column_says_what_it_holds(conn):
    missing = conn.execute("""
        SELECT c.relname || '.' || a.attname FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
        WHERE c.relnamespace = 'ml'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relname IN ('woe_anchor_model_registry_v1', 'woe_anchor_cuts_v1', 'woe_anchor_map_v1',
                            'woe_anchor_scores_v1', 'woe_anchor_shard_scores')
          AND col_description(c.oid, a.attnum) IS NULL""").fetchall()
    assert missing == []
