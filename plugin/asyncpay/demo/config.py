"""Ports and configuration files of the demo network, without a daemon.
Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on loopback right now: all sockets
    are held open together so the kernel cannot hand out one twice."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class BitcoindAuth:
    rpcport: int
    user: str
    password: str


def bitcoin_conf(auth: BitcoindAuth) -> str:
    """bitcoind's bitcoin.conf: regtest, RPC on loopback, no P2P at all."""
    return "\n".join([
        "# asyncpay-demo: a private regtest chain, RPC on loopback only",
        "regtest=1",
        "server=1",
        "listen=0",
        "listenonion=0",
        "dnsseed=0",
        "fallbackfee=0.00001",
        f"rpcuser={auth.user}",
        f"rpcpassword={auth.password}",
        "[regtest]",
        f"rpcbind={LOOPBACK}",
        f"rpcallowip={LOOPBACK}",
        f"rpcport={auth.rpcport}",
        "",
    ])


# What pyln-testing gives the regtest tests' nodes (tests/regtest.py): short
# CLTV deltas, a 1 s bitcoind poll and fast gossip (developer options).
LIGHTNINGD_OPTIONS: tuple[str, ...] = (
    "developer",
    "dev-fast-gossip",
    "dev-bitcoind-poll=1",
    "cltv-delta=6",
    "cltv-final=5",
    "watchtime-blocks=5",
    "ignore-fee-limits=false",
    "disable-dns",
    "autoconnect-seeker-peers=0",
    "log-level=debug",
)


def lightning_conf(alias: str, lightning_dir: str, port: int, auth: BitcoindAuth, plugin: str,
                   plugin_options: Mapping[str, str] | None = None) -> str:
    """A node's ``config`` in its lightning-dir. bitcoin-datadir is the node's
    own directory so bitcoin-cli reads no bitcoin.conf from $HOME."""
    lines = [
        f"# asyncpay-demo node {alias}",
        "network=regtest",
        f"alias={alias}",
        f"addr={LOOPBACK}:{port}",
        f"log-file={lightning_dir}/log",
        f"bitcoin-rpcconnect={LOOPBACK}",
        f"bitcoin-rpcport={auth.rpcport}",
        f"bitcoin-rpcuser={auth.user}",
        f"bitcoin-rpcpassword={auth.password}",
        f"bitcoin-datadir={lightning_dir}",
        *LIGHTNINGD_OPTIONS,
        f"plugin={plugin}",
        *(f"{k}={v}" for k, v in (plugin_options or {}).items()),
    ]
    return "\n".join(lines) + "\n"


def stop_script(lightning_cli: str, lightning_dirs: Sequence[str], bitcoin_cli: str, bitcoin_dir: str,
                base_dir: str) -> str:
    """A shell script that stops a kept network and removes its directory."""
    lines = ["#!/bin/sh", "# Stops the asyncpay-demo network and removes its directory."]
    lines += [f"'{lightning_cli}' --lightning-dir='{d}' stop >/dev/null 2>&1" for d in lightning_dirs]
    lines += [f"'{bitcoin_cli}' -datadir='{bitcoin_dir}' stop >/dev/null 2>&1",
              "sleep 3",
              f"rm -rf '{base_dir}'",
              "echo 'asyncpay-demo network stopped and removed'",
              ""]
    return "\n".join(lines)
