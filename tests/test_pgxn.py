"""PGXN release: META.json per the PGXN meta spec, `make dist`, a real pgxnclient install."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import psycopg
import pytest

from conftest import REPO
from woe_anchor_harness import install

SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z-]+)?$")
LICENSES = {"postgresql", "bsd", "mit", "apache_2_0", "gpl_3", "lgpl_3_0", "artistic_2", "restricted", "unknown"}


def _control_version() -> str:
    return re.search(r"default_version\s*=\s*'([^']+)'", (REPO / "woe_anchor.control").read_text()).group(1)


def _dist(tmp_path) -> Path:
    subprocess.run(["make", "-s", "dist"], cwd=REPO, check=True, capture_output=True)
    zip_path = REPO / f"woe_anchor-{_control_version()}.zip"
    target = tmp_path / zip_path.name
    shutil.move(zip_path, target)
    return target


def test_meta_json_follows_the_pgxn_spec_and_the_control_file(tmp_path):
    release = _dist(tmp_path)
    version = _control_version()
    with zipfile.ZipFile(release) as z:
        names = set(z.namelist())
        meta = json.loads(z.read(f"woe_anchor-{version}/META.json"))
    for key in ("name", "abstract", "version", "maintainer", "license", "provides", "meta-spec"):
        assert meta.get(key), f"META.json needs {key}"
    assert meta["meta-spec"]["version"] == "1.0.0"
    assert meta["name"] == "woe_anchor" and SEMVER.match(meta["version"]) and meta["version"] == version
    assert meta["license"] in LICENSES
    assert meta["release_status"] in ("stable", "testing", "unstable")
    runtime = meta["prereqs"]["runtime"]
    # a version, or a range of clauses such as ">= 15.0.0, < 19.0.0" (the spec's version ranges)
    clauses = [c.strip() for c in runtime["requires"]["PostgreSQL"].split(",")]
    assert "plpython3u" in runtime["requires"] and all(
        SEMVER.match(re.sub(r"^(>=|<=|>|<|==|!=)\s*", "", c)) for c in clauses), clauses
    assert "pg_cron" in runtime["recommends"]
    for ext, spec in meta["provides"].items():
        assert spec["version"] == version and SEMVER.match(spec["version"])
        # the extension script is built by `make`; its sources and the docfile ship in the zip
        assert spec["file"] == f"extension/{ext}--{version}.sql"
        assert f"woe_anchor-{version}/{spec['docfile']}" in names
    for needed in ("Makefile", "woe_anchor.control", "extension/build.py", "plpython/woe_anchor/fit.py"):
        assert f"woe_anchor-{version}/{needed}" in names


@pytest.mark.local_server
def test_pgxnclient_installs_the_release_zip(server, tmp_path):
    if server.root:
        pytest.skip("pgxn installs with this machine's pg_config, not into a root's server")
    release = _dist(tmp_path)
    pgxn = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "pgxn"
    if not pgxn.exists():
        pgxn = Path(shutil.which("pgxn"))
    done = subprocess.run([str(pgxn), "install", "--nosudo", "--pg_config", server.pg_config, str(release)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    name = f"woe_anchor_pgxn_{os.getpid()}"
    dsn = install.fresh_database(server, name, extension=False)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION woe_anchor CASCADE")
            version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0]
            assert version == _control_version()
            assert conn.execute("SELECT ml.woe_anchor_band_schema(1) ->> 'version'").fetchone()[0] == "1"
    finally:
        install.drop_database(server, name)
