"""Build and install the extension into the server's share directory, create databases."""
from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from .server import Server

REPO = Path(__file__).resolve().parents[2]


def make_install(server: Server) -> None:
    """`make install` against the server's pg_config (root owns the share directory)."""
    subprocess.run(["make", "-s", "-C", str(REPO), "install", f"PG_CONFIG={server.pg_config}"],
                   check=True, stdout=subprocess.DEVNULL)


def fresh_database(server: Server, dbname: str, extension: bool = True) -> str:
    """Drop and re-create ``dbname``; install woe_anchor in it when asked. Returns its DSN."""
    with psycopg.connect(server.dsn_for("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    dsn = server.dsn_for(dbname)
    if extension:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION woe_anchor CASCADE")
    return dsn


def drop_database(server: Server, dbname: str) -> None:
    with psycopg.connect(server.dsn_for("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
