"""Upgrade machinery (issue #6, item 4), checked with a synthetic next version.

0.1.0 is the first release, so there is no real second version yet. The test
writes a tiny table migration, builds from it both a full script of a
synthetic version and the upgrade script to it (frozen migration + every
routine re-created in place), installs both next to the real ones, and
checks that 0.1.0 + ALTER EXTENSION UPDATE gives the same catalog as a
fresh install of that version, with a model fitted before the upgrade intact.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

import cases
from conftest import REPO, fit
from woe_anchor_harness import install

pytestmark = pytest.mark.local_server  # installs a synthetic version into this machine's share directory

TARGET = "0.1.0-upgradetest"
MIGRATION = """-- a synthetic migration: one new column, with a comment
ALTER TABLE ml.woe_anchor_model_registry_v1 ADD COLUMN upgrade_probe text;
COMMENT ON COLUMN ml.woe_anchor_model_registry_v1.upgrade_probe IS 'added by the synthetic upgrade';
"""

# Every object of the extension with its definition, privileges and comment.
CATALOG = """
SELECT pg_describe_object(d.classid, d.objid, 0) AS object,
       CASE d.classid
         WHEN 'pg_proc'::regclass THEN pg_get_functiondef(d.objid) || coalesce(p.proacl::text, '')
         WHEN 'pg_class'::regclass THEN concat_ws(' | ',
           (SELECT string_agg(format('%s %s %s %s', a.attname, format_type(a.atttypid, a.atttypmod),
                                     a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid)), ', ' ORDER BY a.attnum)
            FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
            WHERE a.attrelid = d.objid AND a.attnum > 0 AND NOT a.attisdropped),
           (SELECT string_agg(pg_get_constraintdef(c.oid), '; ' ORDER BY c.conname)
            FROM pg_constraint c WHERE c.conrelid = d.objid),
           (SELECT string_agg(pg_get_indexdef(i.indexrelid), '; ' ORDER BY 1) FROM pg_index i WHERE i.indrelid = d.objid),
           (SELECT string_agg(pg_get_triggerdef(t.oid), '; ' ORDER BY t.tgname)
            FROM pg_trigger t WHERE t.tgrelid = d.objid AND NOT t.tgisinternal),
           (SELECT string_agg(col_description(d.objid, a.attnum), '; ' ORDER BY a.attnum)
            FROM pg_attribute a WHERE a.attrelid = d.objid AND a.attnum > 0),
           r.relacl::text)
         ELSE '' END AS definition,
       obj_description(d.objid, (SELECT relname FROM pg_class WHERE oid = d.classid)) AS comment
FROM pg_depend d
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'woe_anchor'
LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
LEFT JOIN pg_class r ON d.classid = 'pg_class'::regclass AND r.oid = d.objid
WHERE d.deptype = 'e'
ORDER BY 1
"""


def _make_var(name):
    return subprocess.run(["make", "-s", f"print-{name}"], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout.split()


@pytest.fixture
def synthetic_version(server, tmp_path):
    migration = tmp_path / f"0.1.0--{TARGET}.sql"
    migration.write_text(MIGRATION)
    modules = _make_var("PY_MODULES")
    tables, functions = _make_var("TABLE_SOURCES"), _make_var("FUNCTION_SOURCES")
    sharedir = subprocess.run([server.pg_config, "--sharedir"], check=True, capture_output=True,
                              text=True).stdout.strip()
    full = Path(sharedir) / "extension" / f"woe_anchor--{TARGET}.sql"
    step = Path(sharedir) / "extension" / f"woe_anchor--0.1.0--{TARGET}.sql"
    build = [sys.executable, "extension/build.py", TARGET]
    subprocess.run(build + [str(full), "sql/header.sql", *tables, str(migration), *functions, "--", *modules],
                   cwd=REPO, check=True)
    subprocess.run(build + [str(step), "sql/header.sql", str(migration), *functions, "--", *modules],
                   cwd=REPO, check=True)
    text = step.read_text()
    assert "CREATE OR REPLACE FUNCTION ml._fit_woe_anchor" in text
    assert not re.search(r"^CREATE (TABLE|TYPE|SCHEMA|FUNCTION|TRIGGER) ", text, re.M), "tables only by migration"
    yield
    full.unlink()
    step.unlink()


def _catalog(dsn):
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(CATALOG).fetchall()
    # the inlined package is keyed by version and code hash, the same code either way
    return [tuple(re.sub(r"woe_anchor/[^']+'", "woe_anchor/KEY'", str(v)) for v in r) for r in rows]


def test_update_from_0_1_0_gives_the_catalog_of_a_fresh_install(server, synthetic_version):
    names = [f"woe_anchor_upgraded_{os.getpid()}", f"woe_anchor_fresh_{os.getpid()}"]
    upgraded, fresh = (install.fresh_database(server, n, extension=False) for n in names)
    try:
        with psycopg.connect(upgraded, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION woe_anchor VERSION '0.1.0' CASCADE")
            cases.load(conn, "up_src", cases.make_rows(seed=97, n=800))
            key = fit(conn, "up_src", model_key="before_upgrade")
            before = conn.execute("SELECT * FROM ml.woe_anchor_score('up_src') ORDER BY 1, 2, 3").fetchall()
            conn.execute(f"ALTER EXTENSION woe_anchor UPDATE TO '{TARGET}'")
            assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0] \
                == TARGET
            assert conn.execute("SELECT * FROM ml.woe_anchor_score('up_src') ORDER BY 1, 2, 3").fetchall() == before
            assert conn.execute("SELECT ml.woe_anchor_assert_ready()").fetchone()[0]
            assert fit(conn, "up_src", model_key="after_upgrade") == "after_upgrade"
            assert key == "before_upgrade"
        with psycopg.connect(fresh, autocommit=True) as conn:
            conn.execute(f"CREATE EXTENSION woe_anchor VERSION '{TARGET}' CASCADE")
        got, want = _catalog(upgraded), _catalog(fresh)
        assert len(want) > 30
        assert got == want, [(a, b) for a, b in zip(got, want) if a != b][:3]
    finally:
        for n in names:
            install.drop_database(server, n)
