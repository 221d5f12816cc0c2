"""The test server as a container of docker/Dockerfile (testcontainers), on request.

The tests use a container only when ``WOE_ANCHOR_CONTAINERS=1`` asks for one, and then an
engine must answer: no silent fallback, and no silent skip of the tests that need this
machine's own installation when nobody asked for a container. Where no container engine
runs (these development machines: ``docker`` is a client only), ``engine_answers`` is
False within seconds.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import psycopg

from .server import Server

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "woe_anchor"  # a throwaway container's superuser, reachable from this host only


def engine_answers(timeout: float = 3.0) -> bool:
    """True when a Docker-compatible engine answers a ping."""
    try:
        # testcontainers' own client: the same DOCKER_HOST and testcontainers settings it will use
        from testcontainers.core.docker_client import DockerClient
        return bool(DockerClient(timeout=timeout).client.ping())
    except Exception:  # no socket, no permission, no daemon: all mean "no engine"
        return False


def server_kind(environ=os.environ) -> str:
    """Which server the tests use: "dsn" (WOE_ANCHOR_DSN, as is), "container" (asked for with
    WOE_ANCHOR_CONTAINERS=1; an engine must answer), else "local" (the harness's private cluster)."""
    if "WOE_ANCHOR_DSN" in environ:
        return "dsn"
    if environ.get("WOE_ANCHOR_CONTAINERS", "0") == "1":
        if not engine_answers():
            raise RuntimeError("WOE_ANCHOR_CONTAINERS=1 asks for a container, but no Docker engine answers "
                               f"(DOCKER_HOST={environ.get('DOCKER_HOST', 'unset')})")
        return "container"
    return "local"


@contextlib.contextmanager
def running(major: int, ready_timeout: float = 180.0):
    """Build the image for ``major``, run it, yield a Server for it; the container goes afterwards."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.image import DockerImage

    image = DockerImage(path=str(REPO), dockerfile_path="docker/Dockerfile", tag=f"woe_anchor:{major}-test",
                        buildargs={"PG_MAJOR": str(major)}).build()
    container = DockerContainer(str(image)).with_env("POSTGRES_PASSWORD", PASSWORD).with_exposed_ports(5432)
    container.start()
    try:
        host = container.get_container_host_ip()
        dsn = f"host={host} port={container.get_exposed_port(5432)} user=postgres password={PASSWORD}"
        _wait_ready(dsn, ready_timeout)
        # client tools (pg_dump) of the same major on this machine, when installed
        yield Server(dsn=dsn, bindir=f"/usr/lib/postgresql/{major}/bin", major=major)
    finally:
        container.stop()


def _wait_ready(dsn: str, timeout: float) -> None:
    """Until the entrypoint's init scripts are done: woe_anchor exists in the postgres database."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(f"{dsn} dbname=postgres", connect_timeout=3) as conn:
                if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'woe_anchor'").fetchone():
                    return
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the woe_anchor container did not become ready in {timeout:.0f} s")
        time.sleep(1)
