"""PostgreSQL majors other than the host's, each from a distribution release that ships it.

``debootstrap`` builds a minimal root of that release with the server, its
PL/Python, pg_cron and numpy (cached under WOE_ANCHOR_ROOTS, default
/var/tmp/woe_anchor_roots); the server runs inside it (chroot, as
``postgres``, its own port on 127.0.0.1) and the host's tests reach it over
TCP. The extension is built on the host (`make`: its script is plain SQL) and
its files copied into the root's extension directory. Root only.

Debian ships one major per release: 15 in bookworm, 17 in trixie, 18 in sid
(the host's own major is tested on the host, not in a root). No Debian
release the mirror serves has 16, and the PostgreSQL project's own
repository is not reachable from here; Ubuntu's archive is, and Ubuntu
24.04 (noble) ships 16, kept current in its ``noble-updates`` pocket. Its
archive key comes from Ubuntu's own keyring package and is checked against
the fingerprint pinned below before debootstrap trusts it.

Measured on this machine: noble (16) 75 s, trixie (17) about 70 s and
800 MB, sid (18) 2 to 7 minutes.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .install import REPO
from .server import Server


@dataclass(frozen=True)
class Release:
    suite: str
    mirror: str = "http://deb.debian.org/debian"
    updates: tuple[str, ...] = ()   # pockets applied over the release (Ubuntu's point releases live there)
    ubuntu: bool = False


UBUNTU = "http://archive.ubuntu.com/ubuntu"
RELEASES = {15: Release("bookworm"), 16: Release("noble", UBUNTU, ("noble-updates", "noble-security"), ubuntu=True),
            17: Release("trixie"), 18: Release("sid")}
# majors whose release ships the server's JIT (llvmjit) in a package of its own: sid's 18
SEPARATE_JIT = {18}
ROOTS = Path(os.environ.get("WOE_ANCHOR_ROOTS", "/var/tmp/woe_anchor_roots"))
# "Ubuntu Archive Automatic Signing Key (2018) <ftpmaster@ubuntu.com>", which signs noble
UBUNTU_ARCHIVE_KEY = "F6ECB3762474EDA9D21B7022871920D1991BC93C"
UBUNTU_KEYRING_DEB = "pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def _roots() -> Path:
    """The cache of roots, which the harness enters as root: refused unless only root can write it."""
    ROOTS.mkdir(parents=True, exist_ok=True)
    st = ROOTS.stat()
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise RuntimeError(f"{ROOTS} must be owned by root and writable by root alone")
    return ROOTS


def _fingerprints(keys: bytes) -> list[str]:
    with tempfile.TemporaryDirectory() as home:
        shown = _run(["gpg", "--batch", "--homedir", home, "--show-keys", "--with-colons"],
                     input=keys, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode()
    return [line.split(":")[9] for line in shown.splitlines() if line.startswith("fpr:")]


def _ubuntu_keyring() -> Path:
    """Ubuntu's archive key alone in a keyring, checked against the pinned fingerprint at each use."""
    keyring = _roots() / "ubuntu-archive-2018.gpg"
    if not keyring.exists():
        with tempfile.TemporaryDirectory() as tmp:
            deb = Path(tmp) / "keyring.deb"
            urllib.request.urlretrieve(f"{UBUNTU}/{UBUNTU_KEYRING_DEB}", deb)
            _run(["dpkg-deb", "-x", str(deb), f"{tmp}/deb"])
            gpg = ["gpg", "--batch", "--quiet", "--homedir", tmp, "--no-default-keyring", "--keyring", f"{tmp}/k.gpg"]
            _run([*gpg, "--import", f"{tmp}/deb/usr/share/keyrings/ubuntu-archive-keyring.gpg"],
                 stderr=subprocess.DEVNULL)
            exported = _run([*gpg, "--export", UBUNTU_ARCHIVE_KEY], stdout=subprocess.PIPE).stdout
            partial = keyring.with_suffix(".partial")
            partial.write_bytes(exported)
            os.replace(partial, keyring)
    if _fingerprints(keyring.read_bytes()) != [UBUNTU_ARCHIVE_KEY]:
        raise RuntimeError(f"{keyring} does not hold exactly Ubuntu's archive key {UBUNTU_ARCHIVE_KEY}")
    return keyring


def build(major: int) -> Path:
    """The cached root of the release that ships ``major`` (built the first time)."""
    release = RELEASES[major]
    root = _roots() / release.suite
    packages = f"postgresql-{major},postgresql-plpython3-{major},postgresql-{major}-cron,python3-numpy" + (
        f",postgresql-{major}-jit" if major in SEPARATE_JIT else "")
    ready, recipe = root / ".woe_anchor_ready", f"{release!r} {packages}\n"  # written last: a cut build is redone
    if ready.exists() and ready.read_text() == recipe:
        return root
    if shutil.which("debootstrap") is None:
        _run(["apt-get", "install", "-y", "-qq", "debootstrap"], stdout=subprocess.DEVNULL)
    shutil.rmtree(root, ignore_errors=True)
    options = ["--variant=minbase", f"--include={packages}"]
    script = []
    if release.ubuntu:  # pg_cron is in universe; bookworm's debootstrap knows noble by its generic script
        options += ["--components=main,universe", f"--keyring={_ubuntu_keyring()}"]
        script = ["/usr/share/debootstrap/scripts/gutsy"]
    _run(["debootstrap", *options, release.suite, str(root), release.mirror, *script], stdout=subprocess.DEVNULL)
    if release.updates:
        components = "main universe" if release.ubuntu else "main"
        (root / "etc/apt/sources.list").write_text("".join(
            f"deb {release.mirror} {suite} {components}\n" for suite in (release.suite, *release.updates)))
        shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
        _run(["chroot", str(root), "sh", "-c", "apt-get update -qq && apt-get full-upgrade -y -qq"],
             stdout=subprocess.DEVNULL, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    ready.write_text(recipe)
    return root


@contextlib.contextmanager
def running(major: int, port: int | None = None):
    """Start ``major``'s server in its root with woe_anchor installed; yield a Server; stop after."""
    root = build(major)
    # below the kernel's ephemeral range (32768-60999): a client connection of the host's tests that
    # happened to hold 54316 locally kept 16's server from listening there once (shards.py alike)
    port = port or 25400 + major
    srv = Server(dsn=f"host=127.0.0.1 port={port} user=postgres", bindir=f"/usr/lib/postgresql/{major}/bin",
                 major=major, root=str(root))
    pg_ctl, data = f"{srv.bindir}/pg_ctl", f"/var/lib/postgresql/woe_anchor_{major}"
    _run(["make", "-s", "-C", str(REPO)], stdout=subprocess.DEVNULL)
    extension_dir = root / f"usr/share/postgresql/{major}/extension"
    for f in [REPO / "woe_anchor.control", *sorted((REPO / "extension").glob("woe_anchor--*.sql"))]:
        shutil.copy(f, extension_dir)
    proc = root / "proc"
    if not os.path.ismount(proc):
        _run(["mount", "-t", "proc", "proc", str(proc)])
    try:
        shutil.rmtree(srv.host_path(data), ignore_errors=True)
        srv.as_postgres([f"{srv.bindir}/initdb", "-D", data, "--auth=trust", "-U", "postgres"],
                        stdout=subprocess.DEVNULL)
        settings = (f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '/tmp'\n"
                    "shared_preload_libraries = 'pg_cron'\ncron.database_name = 'postgres'\n"
                    "cron.use_background_workers = on\nmax_worker_processes = 16\n")
        with open(srv.host_path(data) / "postgresql.auto.conf", "a") as f:
            f.write(settings)
        srv.as_postgres([pg_ctl, "-D", data, "-l", f"{data}/server.log", "-w", "start"], stdout=subprocess.DEVNULL)
        try:
            yield srv
        finally:
            srv.as_postgres([pg_ctl, "-D", data, "-m", "fast", "stop"], stdout=subprocess.DEVNULL)
    finally:
        subprocess.run(["umount", str(proc)], check=False)


def test_major(major: int, pytest_args: list[str]) -> int:
    """The whole suite on ``major``, its server running in its root. Tests that need the server's
    installation use the root's (its programs, its clusters for the shards; Server.root). The host's
    server (WOE_ANCHOR_DSN, else the private cluster, installed) is named beside it for the tests that
    compare two majors (tests/test_majors.py)."""
    import sys
    from . import install, server
    host = server.from_env_or_local()
    if host.major == major:
        print(f"[matrix] PostgreSQL {major} is the host's own: tested there", flush=True)
        return 0
    if not os.environ.get("WOE_ANCHOR_DSN"):
        install.make_install(host)
    with running(major) as srv:
        env = dict(os.environ, WOE_ANCHOR_DSN=srv.dsn, WOE_ANCHOR_CONTAINERS="0", WOE_ANCHOR_HOST_DSN=host.dsn,
                   WOE_ANCHOR_ROOT=srv.root)
        print(f"[matrix] PostgreSQL {major} from {RELEASES[major].suite}: {srv.dsn}", flush=True)
        return subprocess.run([sys.executable, "-m", "pytest", str(REPO / "tests"), *pytest_args],
                              env=env).returncode
