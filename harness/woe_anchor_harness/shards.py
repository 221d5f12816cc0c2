"""Throwaway shard servers on loopback ports, and a source sharded across them with postgres_fdw.

``Shards`` initdb's and starts N small clusters (trust auth, 127.0.0.1 only)
and stops and removes them on exit. ``shard_table`` turns a coordinator
table into a LIST-partitioned table whose partitions are foreign tables on
the shards (or local tables), with postgres_fdw servers and user mappings.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from . import server as servers

ROOT = Path("/var/tmp/woe_anchor_shards")


class Shards:
    """``with Shards(2, base_port=25441, server=srv) as shards:`` gives shards.dsns, one per running cluster.

    Use ports below the kernel's ephemeral range (32768-60999 by default): a client connection that
    happens to hold the port locally would keep the cluster from listening on it."""

    def __init__(self, n: int, base_port: int, server: servers.Server):
        """The shards run ``server``'s installation: its major, in its root if it has one."""
        self.server = server
        self.ports = [base_port + i for i in range(n)]
        self.bindir = self.server.bindir
        self.dsns: list[str] = []

    def _pgdata(self, port: int) -> Path:
        """The cluster's directory as its server sees it (self.server.host_path gives it here)."""
        return ROOT / str(port)

    def __enter__(self) -> "Shards":
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _new_cluster(self, port: int, listen: str, listen_port: int) -> tuple[Path, Path]:
        """A fresh cluster for shard ``port`` (any left from an earlier run stopped and removed) that
        listens on ``listen``:``listen_port``: its directory as the server sees it, and here."""
        pgdata, here = self._pgdata(port), self.server.host_path(self._pgdata(port))
        uid, gid = self.server.owner_ids()
        self._stop(port)
        shutil.rmtree(here, ignore_errors=True)
        here.mkdir(parents=True)
        for p in (here, here.parent):
            shutil.chown(p, uid, gid)
        self.server.as_postgres([f"{self.bindir}/initdb", "-D", str(pgdata), "-U", "postgres", "--auth=trust",
                                 "--encoding=UTF8", "--locale=C.UTF-8"], stdout=subprocess.DEVNULL)
        with open(here / "postgresql.auto.conf", "a") as f:
            f.write(f"listen_addresses = '{listen}'\nport = {listen_port}\nunix_socket_directories = '{pgdata}'\n"
                    "shared_buffers = '128MB'\nfsync = off\n")
        return pgdata, here

    def _start(self) -> None:
        for port in self.ports:
            pgdata, here = self._new_cluster(port, "127.0.0.1", port)
            try:
                self.server.as_postgres([f"{self.bindir}/pg_ctl", "start", "-w", "-D", str(pgdata),
                                         "-l", str(pgdata / "server.log")], stdout=subprocess.DEVNULL)
            except subprocess.CalledProcessError:
                log = (here / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"shard cluster on port {port} did not start:\n{log}") from None
            self.dsns.append(f"host=127.0.0.1 port={port} user=postgres dbname=postgres")

    def add_login(self, role: str, password: str) -> None:
        """A role that logs in to every shard with a password over TCP (scram): what a user mapping of a
        role that is not a superuser needs, since postgres_fdw and dblink require a password for it."""
        for port, dsn in zip(self.ports, self.dsns):
            hba = self.server.host_path(self._pgdata(port)) / "pg_hba.conf"
            line = f"host all {role} 127.0.0.1/32 scram-sha-256\n"
            if line not in hba.read_text():
                hba.write_text(line + hba.read_text())
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role),
                                                                               sql.Literal(password)))
                conn.execute("SELECT pg_reload_conf()")

    def _stop(self, port: int) -> None:
        pgdata = self._pgdata(port)
        if (self.server.host_path(pgdata) / "postmaster.pid").exists():
            self.server.as_postgres([f"{self.bindir}/pg_ctl", "stop", "-m", "immediate", "-D", str(pgdata)],
                                    capture_output=True, check=False)

    def __exit__(self, *exc) -> None:
        for port in self.ports:
            self._stop(port)
            shutil.rmtree(self.server.host_path(self._pgdata(port)), ignore_errors=True)


def shard_table(conn, name: str, columns_sql: str, placement: dict, batch_size: int = 10000) -> None:
    """Create ``name`` PARTITION BY LIST (generation) on the coordinator ``conn``.

    ``placement`` maps a shard DSN (or None for a local partition) to the
    generations it holds; each shard must already have a table ``name`` with
    ``columns_sql``. Foreign partitions go through one postgres_fdw server per
    shard; dblink on the coordinator lets the fit aggregate on the shards.
    """
    conn.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
    conn.execute("CREATE EXTENSION IF NOT EXISTS dblink")
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    conn.execute(sql.SQL("CREATE TABLE {} ({}) PARTITION BY LIST (generation)").format(
        sql.Identifier(name), sql.SQL(columns_sql)))
    for i, (dsn, generations) in enumerate(placement.items()):
        part = sql.Identifier(f"{name}_p{i}")
        values = sql.SQL(", ").join(map(sql.Literal, generations))
        if dsn is None:
            conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES IN ({})").format(
                part, sql.Identifier(name), values))
            continue
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        srv = sql.Identifier(f"shard_{info['port']}")
        # one server per shard, shared by every table sharded on it
        conn.execute(sql.SQL("CREATE SERVER IF NOT EXISTS {} FOREIGN DATA WRAPPER postgres_fdw OPTIONS "
                             "(host {}, port {}, dbname {}, batch_size {}, fetch_size '10000', async_capable 'true')").format(
            srv, sql.Literal(info["host"]), sql.Literal(str(info["port"])), sql.Literal(info["dbname"]),
            sql.Literal(str(batch_size))))
        login = [("user", info["user"])] + ([("password", info["password"])] if "password" in info else [])
        conn.execute(sql.SQL("CREATE USER MAPPING IF NOT EXISTS FOR CURRENT_USER SERVER {} OPTIONS ({})").format(
            srv, sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in login)))
        conn.execute(sql.SQL("CREATE FOREIGN TABLE {} PARTITION OF {} FOR VALUES IN ({}) SERVER {} "
                             "OPTIONS (table_name {})").format(
            part, sql.Identifier(name), values, srv, sql.Literal(name)))


def generate_sharded(conn, name: str, rows: int, placement: dict, local_copy: str | None = None) -> None:
    """Synthetic listings (``datagen``) sharded by generation as ``placement`` says.

    Every server generates the same rows from the same seed and keeps only its
    generations, so nothing is copied between servers; ``local_copy`` names an
    unsharded table of all the rows on the coordinator, for comparisons.
    """
    from . import datagen

    full = local_copy or f"{name}_all"
    datagen.generate_listings(conn, full, rows=rows)
    columns = conn.execute(sql.SQL("SELECT string_agg(format('%I %s', attname, format_type(atttypid, atttypmod)), "
                                   "', ' ORDER BY attnum) FROM pg_attribute WHERE attrelid = {}::regclass "
                                   "AND attnum > 0 AND NOT attisdropped").format(sql.Literal(full))).fetchone()[0]
    for dsn, generations in placement.items():
        if dsn is None:
            continue
        with psycopg.connect(dsn, autocommit=True) as shard:
            datagen.generate_listings(shard, name, rows=rows)
            shard.execute(sql.SQL("DELETE FROM {} WHERE NOT generation = ANY({})").format(
                sql.Identifier(name), sql.Literal(list(generations))))
            # compact, as a shard loaded with only its rows would be: its size is what a fit is measured against
            shard.execute(sql.SQL("VACUUM (FULL, ANALYZE) {}").format(sql.Identifier(name)))
    shard_table(conn, name, columns, placement)
    for i, (dsn, generations) in enumerate(placement.items()):
        if dsn is None:
            conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {} WHERE generation = ANY({})").format(
                sql.Identifier(f"{name}_p{i}"), sql.Identifier(full), sql.Literal(list(generations))))
    if local_copy is None:
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(full)))
