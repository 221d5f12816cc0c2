"""Find or set up a PostgreSQL server with plpython3u for the harness and the tests.

WOE_ANCHOR_DSN, when set, names a server to use as is. Otherwise a private
cluster (trust auth, 127.0.0.1 only) is created once under
WOE_ANCHOR_PGDATA and started when it is not running.
"""
from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 54329


@dataclass(frozen=True)
class Server:
    dsn: str          # libpq connection string to the maintenance database
    bindir: str       # where pg_config, pg_ctl, pg_dump of this major live, as the server sees it
    major: int
    root: str = ""    # the root directory the server runs in (roots.py), "" for this machine's own

    def dsn_for(self, dbname: str) -> str:
        return f"{self.dsn} dbname={dbname}"

    @property
    def pg_config(self) -> str:
        """PGXS of this machine's server: the extension is plain SQL, so its build is the same for any
        major (a root has no PGXS; roots.running copies the built files into it)."""
        return os.path.join(self.bindir if not self.root else host_bindir(), "pg_config")

    def host_path(self, path: str | os.PathLike) -> Path:
        """Where a path of the server's file system is on this machine."""
        return Path(self.root + os.fspath(path)) if self.root else Path(path)

    def client(self, program: str) -> list[str]:
        """argv that runs this major's own ``program`` (pg_dump, pgbench, ...) from this machine, with
        this machine's paths: a root's program runs with the root's loader and libraries."""
        if not self.root:
            return [os.path.join(self.bindir, program)]
        libs = ":".join(f"{self.root}{d}" for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"))
        # the loader itself, not /lib64's link to it: bookworm's is absolute and would name this machine's
        return [f"{self.root}/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "--library-path", libs,
                f"{self.root}{self.bindir}/{program}"]

    def as_postgres(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        """Run a server program (initdb, pg_ctl) as ``postgres``, in the server's root if it has one;
        paths in ``cmd`` are the server's."""
        if self.root:
            return subprocess.run(["chroot", self.root, "su", "postgres", "-s", "/bin/sh", "-c",
                                   shlex.join(cmd)], **{"check": True, **kw})
        return _as_postgres(cmd, **kw)

    def owner_ids(self) -> tuple[int, int]:
        """uid and gid of the ``postgres`` user the server runs as (a root has its own)."""
        if not self.root:
            return _owner_ids()
        for line in (Path(self.root) / "etc/passwd").read_text().splitlines():
            name, _, uid, gid = line.split(":")[:4]
            if name == "postgres":
                return int(uid), int(gid)
        raise RuntimeError(f"no postgres user in {self.root}")


def host_bindir() -> str:
    pg_config = shutil.which("pg_config")
    return os.path.dirname(pg_config) if pg_config else f"/usr/lib/postgresql/{pick_major()}/bin"


def majors_with_plpython() -> list[int]:
    """Installed PostgreSQL majors (newest first) whose plpython3 is installed."""
    found = []
    for lib in glob.glob("/usr/lib/postgresql/*/lib/plpython3.so"):
        major = Path(lib).parent.parent.name
        if major.isdigit() and int(major) >= 15:
            found.append(int(major))
    return sorted(found, reverse=True)


def pick_major() -> int:
    wanted = os.environ.get("WOE_ANCHOR_PG_MAJOR")
    if wanted:
        return int(wanted)
    majors = majors_with_plpython()
    if not majors:
        raise SystemExit("no PostgreSQL >= 15 with plpython3 found: run `bash harness/run.sh` to install one")
    return majors[0]


def _as_postgres(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root: drop to the postgres user when we are root."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return subprocess.run(cmd, **{"check": True, "cwd": "/", **kw})


def _owner_ids():
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        return pw.pw_uid, pw.pw_gid
    return os.geteuid(), os.getegid()


def ensure_local(major: int | None = None, port: int | None = None,
                 extra_conf: dict | None = None) -> Server:
    """Create (once) and start a private cluster; return how to reach it."""
    major = major or pick_major()
    port = port or int(os.environ.get("WOE_ANCHOR_PGPORT", DEFAULT_PORT))
    bindir = f"/usr/lib/postgresql/{major}/bin"
    pgdata = Path(os.environ.get("WOE_ANCHOR_PGDATA", f"/var/tmp/woe_anchor_pg/{major}"))
    uid, gid = _owner_ids()
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(parents=True, exist_ok=True)
        for p in [pgdata, *pgdata.parents][:2]:
            os.chown(p, uid, gid)
        _as_postgres([f"{bindir}/initdb", "-D", str(pgdata), "-U", "postgres", "--auth=trust",
                      "--encoding=UTF8", "--locale=C.UTF-8"], stdout=subprocess.DEVNULL)
        conf = {"listen_addresses": "'127.0.0.1'", "port": str(port),
                "unix_socket_directories": f"'{pgdata}'", "fsync": "on"}
        conf.update(extra_conf or {})
        with open(pgdata / "postgresql.auto.conf", "a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
    status = subprocess.run([f"{bindir}/pg_ctl", "status", "-D", str(pgdata)],
                            capture_output=True, text=True,
                            user="postgres" if os.geteuid() == 0 else None)
    if _preload_pg_cron(pgdata, major) and status.returncode == 0:
        _as_postgres([f"{bindir}/pg_ctl", "restart", "-w", "-m", "fast", "-D", str(pgdata),
                      "-l", str(pgdata / "server.log")], stdout=subprocess.DEVNULL)
    elif status.returncode != 0:
        _as_postgres([f"{bindir}/pg_ctl", "start", "-w", "-D", str(pgdata),
                      "-l", str(pgdata / "server.log")], stdout=subprocess.DEVNULL)
    return Server(dsn=f"host=127.0.0.1 port={port} user=postgres", bindir=bindir, major=major)


def _preload_pg_cron(pgdata: Path, major: int) -> bool:
    """Preload pg_cron when it is installed (scheduled fits); True when the setting was just added.

    Jobs run in background workers: the private cluster has no passwords for
    pg_cron's own connections.
    """
    conf = pgdata / "postgresql.auto.conf"
    if not Path(f"/usr/lib/postgresql/{major}/lib/pg_cron.so").exists() or "pg_cron" in conf.read_text():
        return False
    with open(conf, "a") as f:
        f.write("shared_preload_libraries = 'pg_cron'\ncron.use_background_workers = on\n"
                "cron.database_name = 'postgres'\nmax_worker_processes = 16\n")
    return True


def from_env_or_local() -> Server:
    """The server named by WOE_ANCHOR_DSN (running in WOE_ANCHOR_ROOT when that is set: roots.py),
    else the private local cluster."""
    dsn = os.environ.get("WOE_ANCHOR_DSN")
    if not dsn:
        return ensure_local()
    import psycopg
    with psycopg.connect(dsn, dbname="postgres", connect_timeout=10) as conn:
        major = conn.info.server_version // 10000
    root = os.environ.get("WOE_ANCHOR_ROOT", "")
    bindir = f"/usr/lib/postgresql/{major}/bin"
    return Server(dsn=dsn, bindir=bindir if root or os.path.isdir(bindir) else host_bindir(), major=major, root=root)
