"""Regtest benchmark: the payer's round trip for a static invoice served by
asyncpay while the recipient is offline, next to CLN's own ``fetchinvoice``
to an online node, in the same run, printed as a ratio. Needs lightningd and
bitcoind on PATH; pytest is only the harness (pyln-testing's node_factory)::

    PATH=/opt/regtest/bin:$PATH RUST=0 python -m pytest bench/regtest_roundtrip.py -s -q -p no:cacheprovider

Network: l1 (payer, bench/plugins/stamp.py) -- l2 (LSP, asyncpay) -- l3
(recipient wallet's node, recorder), and l4 (plain CLN, online) with a
channel to l1.

* static invoice: after the handshake l3 stops; the payer wallet on l1 sends
  ``invoice_request`` to the offer path (l1 -> l2 -> V). Timed from just
  before the ``injectonionmessage`` call at l1 until l1's stamp plugin gets
  the static invoice (l2 -> l1 -> W, an onionmessage_forward_fail), read on
  the machine-wide monotonic clock: no polling in the figure.
* fetchinvoice: l1 ``fetchinvoice`` for an ``offer`` of l4, each call timed.

The two alternate, one of each per round, so that the load of a shared
machine falls on both alike; requests are paced >= 0.3 s apart (connectd's
per-peer onion-message limit). ``ASYNCPAY_BENCH_PLUGIN`` runs another build
of the plugin as the LSP (an executable, e.g. a launcher for an older
checkout), to compare versions under the same harness.
No timing assertions: only that every request got its answer.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from regtest import (  # noqa: E402
    ASYNCPAY,
    RECORDER,
    _bound_to_this_python,
    handshake,
    inject,
    node_id,
    require_binaries,
)

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from wallet import Wallet  # noqa: E402

STAMP = _bound_to_this_python(Path(__file__).resolve().parent / "plugins" / "stamp.py")
LSP_PLUGIN = os.environ.get("ASYNCPAY_BENCH_PLUGIN") or ASYNCPAY
REQUESTS = int(os.environ.get("ASYNCPAY_BENCH_REQUESTS", "30"))
PACE = 0.3  # seconds between the starts of two requests to the same peer
REPLY_TIMEOUT = 15.0


def p50(samples_s: list[float]) -> float:
    return statistics.median(samples_s) * 1000


def summary(name: str, samples_s: list[float]) -> None:
    ms = sorted(x * 1000 for x in samples_s)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    print(f"{name:<52} n={len(ms):<3} p50 {statistics.median(ms):7.1f} ms  p90 {p90:7.1f} ms  "
          f"max {ms[-1]:7.1f} ms  min {ms[0]:7.1f} ms")


def paced(start: float) -> None:
    delay = start + PACE - time.monotonic()
    if delay > 0:
        time.sleep(delay)


class StaticInvoices:
    """The payer wallet on l1 asking the LSP for the sleeping wallet's invoice."""

    def __init__(self, l1, offer, invoice) -> None:
        self.l1, self.offer, self.invoice = l1, offer, invoice
        self.payer = Wallet(node_id(l1))
        self.seen = 0

    def stamps(self) -> list[dict]:
        got = self.l1.rpc.call("stamp-list", {"since": self.seen})["stamps"]
        return [s for s in got if s.get("next_node_id") == self.payer.endpoint.hex()]

    def once(self) -> float:
        _, onion = self.payer.invoice_request(self.offer)
        start = time.monotonic()
        inject(self.l1, onion)
        while not (got := self.stamps()):
            if time.monotonic() - start > REPLY_TIMEOUT:
                raise AssertionError(f"no static invoice after {REPLY_TIMEOUT} s")
            time.sleep(0.002)
        assert len(got) == 1, got
        self.seen += len(self.l1.rpc.call("stamp-list", {"since": self.seen})["stamps"])
        # Every answer is the stored static invoice (checked outside the timing).
        assert self.payer.open(bytes.fromhex(got[0]["outgoing"])).static_invoice == self.invoice.encode()
        return got[0]["at"] - start


def fetchinvoice_once(l1, bolt12: str) -> float:
    start = time.monotonic()
    res = l1.rpc.call("fetchinvoice", {"offer": bolt12, "timeout": int(REPLY_TIMEOUT)})
    took = time.monotonic() - start
    assert res.get("invoice", "").startswith("lni1"), res
    return took


def test_static_invoice_vs_fetchinvoice(node_factory):
    opts = [{"plugin": STAMP, "may_reconnect": True},
            {"plugin": [LSP_PLUGIN, STAMP], "may_reconnect": True},  # l2's stamp: when the LSP got the request
            {"plugin": RECORDER, "may_reconnect": True},
            {}]
    l1, l2, l3, l4 = node_factory.get_nodes(4, opts=opts)
    node_factory.join_nodes([l1, l2], wait_for_announce=False)
    node_factory.join_nodes([l2, l3], wait_for_announce=False)
    node_factory.join_nodes([l1, l4], wait_for_announce=False)

    _, offer, invoice = handshake(l2, l3)
    l3.stop()  # the recipient goes offline: only the LSP can answer
    bolt12 = l4.rpc.call("offer", {"amount": "1000msat", "description": "asyncpay bench"})["bolt12"]
    asker = StaticInvoices(l1, offer, invoice)
    v = l2.rpc.call("asyncpay-status")["endpoint_id"]
    static, fetch, at_lsp = [], [], []
    for i in range(REQUESTS + 1):  # the first round is a warm-up, not counted
        start = time.monotonic()
        s = asker.once()
        # The request's arrival at l2 (for V), as l2's stamp plugin saw it:
        # from there to l1's stamp is asyncpay's answer plus one hop back.
        got_at_l2 = [x["at"] for x in l2.rpc.call("stamp-list")["stamps"] if x.get("next_node_id") == v][-1]
        f = fetchinvoice_once(l1, bolt12)  # to another peer: no pacing needed in between
        if i:
            static.append(s)
            fetch.append(f)
            at_lsp.append(start + s - got_at_l2)
        paced(start)
    status = l2.rpc.call("asyncpay-status")
    assert status["server"]["invoices_served"] == REQUESTS + 1, status

    label = "this checkout" if LSP_PLUGIN == ASYNCPAY else LSP_PLUGIN
    print(f"\nLSP plugin: {label}; {REQUESTS} rounds (static invoice, then fetchinvoice), "
          f"paced >= {PACE} s, arrival stamped in l1's plugin")
    summary("static invoice (l1 -> l2/asyncpay -> l1, l3 offline)", static)
    summary("CLN fetchinvoice (l1 -> l4 online -> l1)", fetch)
    # Approximate: l2's stamp plugin is a process of its own, notified in turn
    # (on a loaded machine it may even be stamped after the answer left).
    summary("  of which l2 notified -> l1 has it (approx.)", at_lsp)
    print(f"ratio of p50s, static invoice / fetchinvoice: {p50(static) / p50(fetch):.2f} (aim <= 0.5)")
