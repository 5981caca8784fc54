"""Regtest: the chaos run (issue 14, docs/chaos.md) with one modest seed.

bench/chaos runs the same scenario with any seed, payment count and
duration (CHAOS_SEED, CHAOS_PAYMENTS, CHAOS_DURATION; CHAOS_REPORT names a
file for the table, CHAOS_LOGS a directory for the nodes' logs)."""

from __future__ import annotations

import os
import shutil

import pytest

from regtest import require_binaries

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from chaos import invariants  # noqa: E402
from chaos.driver import Driver  # noqa: E402
from chaos.network import Network  # noqa: E402

SEED = int(os.environ.get("CHAOS_SEED", "1"))
PAYMENTS = int(os.environ.get("CHAOS_PAYMENTS", "12"))
DURATION = float(os.environ.get("CHAOS_DURATION", "300"))
SETTLE = float(os.environ.get("CHAOS_SETTLE", "300"))
# "postgresql": the LSPs on a PostgreSQL primary with a synchronous standby, which the
# driver restarts and fails over (tests/pg_replicated.py).
STORE = os.environ.get("CHAOS_STORE", "sqlite")


@pytest.fixture
def cluster():
    if STORE != "postgresql":
        yield None
        return
    from pg_replicated import Replicated, lightningd_has_postgres, server_binaries

    if not lightningd_has_postgres() or not server_binaries():
        pytest.skip("chaos on PostgreSQL: lightningd without libpq, or no PostgreSQL server binaries")
    r = Replicated()
    yield r
    r.close()


def test_chaos(node_factory, bitcoind, cluster):
    net = Network(node_factory, bitcoind, cluster)
    net.build()
    before = invariants.balances(net)
    driver = Driver(net, SEED, PAYMENTS, DURATION)
    run = driver.play()
    settled = driver.settle(SETTLE)
    invariants.resolve_stock(net, run)
    rows = [("settled within the settle time", settled, f"{SETTLE:.0f} s allowed")]
    rows += invariants.check(net, run, before)
    warned, limited = invariants.peer_warnings(net)
    rows.append(warned)
    report = invariants.table(SEED, PAYMENTS, DURATION, rows, invariants.figures(net, run, limited))
    print(report)
    if os.environ.get("CHAOS_REPORT"):
        with open(os.environ["CHAOS_REPORT"], "w") as f:
            f.write(report + "\n")
        with open(os.environ["CHAOS_REPORT"] + ".events", "w") as f:  # the timeline, to replay a failure
            f.writelines(f"{t - run.started:8.1f} {kind:<10} {detail}\n" for t, kind, detail in run.events)
            f.writelines(f"payment #{p.n} {p.payer}->{p.recipient} {p.amount_msat} {p.status} {p.payment_hash} "
                         f"{p.reason or ''}\n" for p in run.payments)
    if os.environ.get("CHAOS_LOGS"):  # each node's log under its name in the scenario, kept after the run
        os.makedirs(os.environ["CHAOS_LOGS"], exist_ok=True)
        for name, n in net.nodes.items():
            shutil.copy(os.path.join(n.node.daemon.lightning_dir, "log"), os.path.join(os.environ["CHAOS_LOGS"],
                                                                                       f"{name}.log"))
    failed = [name for name, ok, _ in rows if not ok]
    assert not failed, report
