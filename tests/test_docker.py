"""docker/Dockerfile. No container engine runs on the development machines, so
the image itself is not built here; these tests check what can be checked without one."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import REPO
from woe_anchor_harness import containers

DOCKERFILE = (REPO / "docker" / "Dockerfile").read_text()


@pytest.mark.local_server
def test_what_the_image_copies_is_enough_to_build_the_extension(server, tmp_path):
    """The image's `make install` runs on exactly the files its COPY lines bring in."""
    if server.root:
        pytest.skip("the image context builds with this machine's PGXS, whatever major serves the tests")
    copies = re.findall(r"^COPY (?!docker/)(.+) /src/woe_anchor/(\S*)$", DOCKERFILE, re.MULTILINE)
    assert copies, "the Dockerfile copies the sources into /src/woe_anchor"
    src = tmp_path / "woe_anchor"
    for sources, target in copies:
        for name in sources.split():
            if (REPO / name).is_dir():  # Docker copies a directory's contents into the target
                shutil.copytree(REPO / name, src / target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                (src / target).mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / name, src / target)
    (src / "extension" / f"woe_anchor--{_control_version()}.sql").unlink(missing_ok=True)  # .dockerignore
    subprocess.run(["make", "-s", "-C", str(src), f"PG_CONFIG={server.pg_config}"], check=True,
                   capture_output=True)
    script = (src / "extension" / f"woe_anchor--{_control_version()}.sql").read_text()
    assert "CREATE PROCEDURE ml.fit_woe_anchor" in script


def _control_version() -> str:
    text = (REPO / "woe_anchor.control").read_text()
    return re.search(r"default_version\s*=\s*'([^']+)'", text)[1]


def test_the_image_preloads_pg_cron_and_installs_for_its_major():
    for package in ('"postgresql-plpython3-${PG_MAJOR}"', '"postgresql-${PG_MAJOR}-cron"', "python3-numpy"):
        assert package in DOCKERFILE
    # in postgresql.conf (via initdb's sample), so `docker run image -c ...` keeps them
    assert re.search(r"shared_preload_libraries = 'pg_cron'.*postgresql\.conf\.sample", DOCKERFILE, re.DOTALL)
    assert "cron.use_background_workers = on" in DOCKERFILE
    subprocess.run(["sh", "-n", str(REPO / "docker" / "initdb" / "10-woe_anchor.sh")], check=True)


def test_containers_are_asked_for_and_never_a_silent_fallback(monkeypatch):
    """Without WOE_ANCHOR_CONTAINERS=1 the suite runs on the local cluster, whatever engine answers;
    with it and no engine, it stops with a clear error instead of skipping or falling back."""
    monkeypatch.delenv("WOE_ANCHOR_DSN", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/woe_anchor/docker.sock")
    assert containers.engine_answers() is False  # a socket nobody listens on reads as "no engine"
    monkeypatch.delenv("WOE_ANCHOR_CONTAINERS", raising=False)
    assert containers.server_kind() == "local"
    monkeypatch.setenv("WOE_ANCHOR_CONTAINERS", "1")
    with pytest.raises(RuntimeError, match="no Docker engine answers.*nonexistent"):
        containers.server_kind()
    monkeypatch.setenv("WOE_ANCHOR_DSN", "host=elsewhere")
    assert containers.server_kind() == "dsn"
