"""PostgreSQL majors other than the host's, each from a Debian release that ships it.

``debootstrap`` builds a minimal root of that release with the server, its
PL/Python and numpy (cached under WOE_ANCHOR_ROOTS, default
/var/tmp/woe_anchor_roots); the server runs inside it (chroot, as
``postgres``, its own port on 127.0.0.1) and the host's tests reach it over
TCP. The extension is built on the host (`make`: its script is plain SQL) and
its files copied into the root's extension directory. Root only.

Measured on this machine: trixie (17) about 70 s and 800 MB, sid (18) about
2 minutes. Debian has no PostgreSQL 16 in any release the mirror serves
(bookworm 15, trixie 17, sid 18, no backports), and the PostgreSQL
project's own repository is not reachable from here.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from .install import REPO
from .server import Server

RELEASES = {17: "trixie", 18: "sid"}
MIRROR = "http://deb.debian.org/debian"
ROOTS = Path(os.environ.get("WOE_ANCHOR_ROOTS", "/var/tmp/woe_anchor_roots"))


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def build(major: int) -> Path:
    """The cached root of the release that ships ``major`` (built the first time)."""
    release = RELEASES[major]
    root = ROOTS / release
    if (root / f"usr/lib/postgresql/{major}/lib/plpython3.so").exists():
        return root
    if shutil.which("debootstrap") is None:
        _run(["apt-get", "install", "-y", "-qq", "debootstrap"], stdout=subprocess.DEVNULL)
    shutil.rmtree(root, ignore_errors=True)
    ROOTS.mkdir(parents=True, exist_ok=True)
    packages = f"postgresql-{major},postgresql-plpython3-{major},postgresql-{major}-cron,python3-numpy"
    _run(["debootstrap", "--variant=minbase", f"--include={packages}", release, str(root), MIRROR],
         stdout=subprocess.DEVNULL)
    return root


def _in_root(root: Path, command: str) -> None:
    _run(["chroot", str(root), "su", "postgres", "-s", "/bin/sh", "-c", command], stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def running(major: int, port: int | None = None):
    """Start ``major``'s server in its root with woe_anchor installed; yield a Server; stop after."""
    root = build(major)
    port = port or 54300 + major
    bindir, data = f"/usr/lib/postgresql/{major}/bin", f"/var/lib/postgresql/woe_anchor_{major}"
    _run(["make", "-s", "-C", str(REPO)], stdout=subprocess.DEVNULL)
    extension_dir = root / f"usr/share/postgresql/{major}/extension"
    for f in [REPO / "woe_anchor.control", *sorted((REPO / "extension").glob("woe_anchor--*.sql"))]:
        shutil.copy(f, extension_dir)
    proc = root / "proc"
    if not os.path.ismount(proc):
        _run(["mount", "-t", "proc", "proc", str(proc)])
    try:
        _in_root(root, f"rm -rf {data} && {bindir}/initdb -D {data} --auth=trust -U postgres")
        settings = (f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '/tmp'\n"
                    "shared_preload_libraries = 'pg_cron'\ncron.database_name = 'postgres'\n"
                    "cron.use_background_workers = on\nmax_worker_processes = 16\n")
        with open(root / data.lstrip("/") / "postgresql.auto.conf", "a") as f:
            f.write(settings)
        _in_root(root, f"{bindir}/pg_ctl -D {data} -l {data}/server.log -w start")
        try:
            yield Server(dsn=f"host=127.0.0.1 port={port} user=postgres", bindir=str(root) + bindir, major=major)
        finally:
            _in_root(root, f"{bindir}/pg_ctl -D {data} -m fast stop")
    finally:
        subprocess.run(["umount", str(proc)], check=False)


def test_major(major: int, pytest_args: list[str]) -> int:
    """The suite on ``major``, but the tests that need the host's own installation (``local_server``);
    the host's server (WOE_ANCHOR_DSN, else the private cluster, installed) is named beside it for
    the tests that compare two majors (tests/test_majors.py)."""
    import sys
    from . import install, server
    host = server.from_env_or_local()
    if not os.environ.get("WOE_ANCHOR_DSN"):
        install.make_install(host)
    with running(major) as srv:
        env = dict(os.environ, WOE_ANCHOR_DSN=srv.dsn, WOE_ANCHOR_CONTAINERS="0", WOE_ANCHOR_HOST_DSN=host.dsn,
                   WOE_ANCHOR_HOST_BINDIR=host.bindir, WOE_ANCHOR_ROOT=str(build(major)))
        print(f"[matrix] PostgreSQL {major} from Debian {RELEASES[major]}: {srv.dsn}", flush=True)
        args, marks = list(pytest_args), "not local_server"
        if "-m" in args:  # pytest keeps the last -m: fold the caller's into ours
            at = args.index("-m")
            marks = f"({args[at + 1]}) and not local_server"
            del args[at:at + 2]
        return subprocess.run([sys.executable, "-m", "pytest", str(REPO / "tests"), "-m", marks, *args],
                              env=env).returncode
