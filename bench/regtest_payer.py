"""Regtest benchmark of the payer (issue 7). Needs lightningd and bitcoind on
PATH; pytest is only the harness (pyln-testing's node_factory)::

    PATH=/opt/regtest/bin:$PATH RUST=0 python -m pytest bench/regtest_payer.py -s -q -p no:cacheprovider

P (asyncpay) -- L (asyncpay LSP) -- R (asyncpay recipient), as in
tests/test_regtest_payer.py.

1. R online: ``asyncpay-pay`` of R's offer next to CLN's ``fetchinvoice``
   plus ``xpay`` of the same offer, alternated, each call timed whole.
2. R offline: ``asyncpay-pay`` answers pending; R starts and reconnects; the
   time from the ``connect`` call until ``asyncpay-listpays`` says complete.

No timing assertions: only that every payment completed. Calls are paced
1.5 s apart: every payment sends several onion messages from L to P, and
P's connectd takes one per 250 ms per peer (burst 4) and warns beyond.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from regtest import require_binaries, wait_for  # noqa: E402

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from test_regtest_payer import payer_network  # noqa: E402
from test_regtest_recipient import ready_offer  # noqa: E402

RUNS = 7


def show(name: str, xs: list[float]) -> float:
    xs = sorted(xs)
    p50 = statistics.median(xs)
    print(f"{name}\n    runs {len(xs)}  p50 {p50 * 1000:.0f} ms  min {xs[0] * 1000:.0f} ms  max {xs[-1] * 1000:.0f} ms")
    return p50


def test_pay_online_next_to_fetchinvoice_and_xpay(node_factory):
    p, lsp, r = payer_network(node_factory)
    offer = ready_offer(r, description="bench")["bolt12"]
    ours, stock = [], []
    for i in range(RUNS):
        time.sleep(1.5)
        t = time.perf_counter()
        res = p.rpc.call("asyncpay-pay", {"offer": offer, "amount_msat": 10_000 + i})
        ours.append(time.perf_counter() - t)
        assert res["status"] == "complete" and res["kind"] == "invoice", res
        time.sleep(1.5)
        t = time.perf_counter()
        inv = p.rpc.fetchinvoice(offer, amount_msat=20_000 + i)
        p.rpc.call("xpay", {"invstring": inv["invoice"]})
        stock.append(time.perf_counter() - t)
    print()
    a = show("asyncpay-pay, recipient online (invoice_request -> invoice -> xpay)", ours)
    b = show("fetchinvoice + xpay of the same offer", stock)
    print(f"    ratio asyncpay-pay / (fetchinvoice + xpay): {a / b:.2f} (aim <= 1.3)")


def test_reconnect_to_complete(node_factory):
    p, lsp, r = payer_network(node_factory)
    offer = ready_offer(r, description="bench")["bolt12"]
    times = []
    for i in range(5):
        r.stop()
        res = p.rpc.call("asyncpay-pay", {"offer": offer, "amount_msat": 30_000 + i, "timeout": 4})
        assert res["status"] == "pending"
        wait_for(lambda: lsp.rpc.call("asyncpay-listmailbox")["messages"] >= 2, what="held queued")
        r.start()
        t = time.perf_counter()
        r.rpc.connect(lsp.info["id"], "localhost", lsp.port)
        pid = res["id"]
        wait_for(lambda pid=pid: p.rpc.call("asyncpay-listpays", {"id": pid})["pays"][0]["status"] == "complete",
                 what="complete", timeout=60)
        times.append(time.perf_counter() - t)
    print()
    show("recipient reconnects -> payment complete (mailbox flush, release, HTLC, claim)", times)
