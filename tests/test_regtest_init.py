"""Regtest: a plugin that cannot start says why and lightningd runs on
without it (issue 18)."""

from __future__ import annotations

import re

from regtest import ASYNCPAY, require_binaries

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403


def test_a_db_it_cannot_open_disables_the_plugin_and_the_node_runs(node_factory, tmp_path):
    bad = str(tmp_path / "no-such-dir" / "asyncpay.sqlite3")
    n = node_factory.get_node(options={"plugin": ASYNCPAY, "asyncpay-db": bad})
    # Both lines come before get_node returns (init is part of lightningd's start).
    assert n.daemon.is_in_log(re.escape(f"disabled itself at init: asyncpay-db {bad}: OperationalError"))
    assert n.daemon.is_in_log(re.escape(f"asyncpay disabled: asyncpay-db {bad}"))
    assert n.rpc.getinfo()["id"]  # lightningd still answers
    assert not [p for p in n.rpc.plugin("list")["plugins"] if p["name"].endswith("/asyncpay")]
    assert "asyncpay-status" not in {c["command"] for c in n.rpc.help()["help"]}
