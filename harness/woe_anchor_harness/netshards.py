"""Shard servers behind a real network link, with a delay that can be turned up: what a sharded fit
sees when its shards are other machines.

``NetworkShards`` runs each shard cluster in a network namespace of its own,
reached over a veth pair (10.77.<i>.1 here, 10.77.<i>.2 there) with scram
logins. Links on these machines have no ``netem`` queueing discipline, so a
``DelayProxy`` on this side holds every segment the coordinator sends a shard
for ``delay_ms`` before passing it on (one-way delay: each round trip grows
by it). The coordinator's DSNs name the proxy; ``link_bytes`` counts what
crossed the veth links, headers included. Needs root and ``ip``; runs this
machine's own PostgreSQL (not a root's).
"""
from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from pathlib import Path

import psycopg

from . import server as servers
from .shards import ROOT, Shards

PASSWORD = "woe-anchor-shard"
SHARD_PORT = 5432  # each namespace has its own ports


def _ip(*args: str, ns: str | None = None) -> None:
    subprocess.run((["ip", "netns", "exec", ns] if ns else []) + ["ip", *args], check=True)


class DelayProxy:
    """TCP forwarding from 127.0.0.1 ports to shards, holding coordinator->shard data ``delay_ms``."""

    def __init__(self):
        self.delay_ms = 0.0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers = []

    def forward(self, port: int, host: str, target_port: int) -> None:
        async def start():
            return await asyncio.start_server(lambda r, w: self._connection(r, w, host, target_port),
                                              "127.0.0.1", port)
        self.servers.append(asyncio.run_coroutine_threadsafe(start(), self.loop).result())

    async def _connection(self, client_r, client_w, host, port):
        try:
            shard_r, shard_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()
            return
        held: asyncio.Queue = asyncio.Queue()

        async def read_client():
            try:
                while data := await client_r.read(65536):
                    held.put_nowait((time.monotonic() + self.delay_ms / 1000, data))
            finally:
                held.put_nowait((0.0, b""))

        async def send_held():  # in order, each segment once its time has come
            while True:
                due, data = await held.get()
                if not data:
                    break
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                shard_w.write(data)
                await shard_w.drain()
            shard_w.close()

        async def copy_back():
            while data := await shard_r.read(65536):
                client_w.write(data)
                await client_w.drain()
            client_w.close()

        # a side that closes or resets ends the connection: the other side's errors are expected then
        await asyncio.gather(read_client(), send_held(), copy_back(), return_exceptions=True)
        for w in (client_w, shard_w):
            w.close()

    def close(self) -> None:
        async def stop():
            for s in self.servers:
                s.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class NetworkShards(Shards):
    """``with NetworkShards(2, base_port=25461, server=srv) as shards:``: shards.dsns (through the proxy on
    base_port + i), shards.direct (the shard itself), shards.proxy.delay_ms, shards.link_bytes()."""

    def __init__(self, n: int, base_port: int, server: servers.Server):
        if server.root:
            raise RuntimeError("network shards run this machine's own PostgreSQL")
        super().__init__(n, base_port, server)
        self.proxy: DelayProxy | None = None
        self.direct: list[str] = []

    def _names(self, i: int) -> tuple[str, str, str]:
        """(namespace, veth here, veth there)."""
        return f"woe_shard{i}", f"woe_h{i}", f"woe_n{i}"

    def _start(self) -> None:
        self.proxy = DelayProxy()
        for i, port in enumerate(self.ports):
            ns, here_if, there_if = self._names(i)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            _ip("netns", "add", ns)
            _ip("link", "add", here_if, "type", "veth", "peer", "name", there_if)
            _ip("link", "set", there_if, "netns", ns)
            _ip("addr", "add", f"10.77.{i}.1/30", "dev", here_if)
            _ip("link", "set", here_if, "up")
            _ip("addr", "add", f"10.77.{i}.2/30", "dev", there_if, ns=ns)
            _ip("link", "set", there_if, "up", ns=ns)
            _ip("link", "set", "lo", "up", ns=ns)
            pgdata, _ = self._new_cluster(port, f"10.77.{i}.2", SHARD_PORT)  # no root: the paths are the same
            with open(pgdata / "pg_hba.conf", "a") as f:
                f.write(f"host all all 10.77.{i}.1/32 scram-sha-256\n")
            subprocess.run(["ip", "netns", "exec", ns, "runuser", "-u", "postgres", "--", f"{self.bindir}/pg_ctl",
                            "start", "-w", "-D", str(pgdata), "-l", str(pgdata / "server.log")],
                           check=True, stdout=subprocess.DEVNULL)
            with psycopg.connect(f"host={pgdata} port={SHARD_PORT} user=postgres dbname=postgres",
                                 autocommit=True) as conn:
                conn.execute(f"ALTER ROLE postgres PASSWORD '{PASSWORD}'")
            self.proxy.forward(port, f"10.77.{i}.2", SHARD_PORT)
            login = f"user=postgres password={PASSWORD} dbname=postgres"
            self.direct.append(f"host=10.77.{i}.2 port={SHARD_PORT} {login}")
            self.dsns.append(f"host=127.0.0.1 port={port} {login}")

    def _pgdata(self, port: int) -> Path:
        return ROOT / f"net{port}"

    def link_bytes(self) -> int:
        """Bytes that crossed the shards' links so far, both ways."""
        total = 0
        for i in range(len(self.ports)):
            stats = Path(f"/sys/class/net/{self._names(i)[1]}/statistics")
            total += int((stats / "rx_bytes").read_text()) + int((stats / "tx_bytes").read_text())
        return total

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        if self.proxy is not None:
            self.proxy.close()
        for i in range(len(self.ports)):
            subprocess.run(["ip", "netns", "del", self._names(i)[0]], capture_output=True, check=False)
