"""Regtest benchmark: the payer's round trip for a static invoice served by
asyncpay while the recipient is offline, next to CLN's own ``fetchinvoice``
to an online node, in the same run. Needs lightningd and bitcoind on PATH;
pytest is only the harness (pyln-testing's node_factory)::

    PATH=/opt/regtest/bin:$PATH RUST=0 python -m pytest bench/regtest_roundtrip.py -s -q -p no:cacheprovider

Network: l1 (payer, recorder plugin) -- l2 (LSP, asyncpay) -- l3 (recipient
wallet's node, recorder), and l4 (plain CLN, online) with a channel to l1.

1. static invoice: after the handshake l3 stops; the payer wallet on l1
   sends ``invoice_request`` to the offer path (l1 -> l2 -> V). Each request
   is timed from the ``injectonionmessage`` call at l1 until the static
   invoice reaches l1's recorder (l2 -> l1 -> W, seen as
   onionmessage_forward_fail), polled every ~5 ms.
2. fetchinvoice: l1 ``fetchinvoice`` for an ``offer`` of l4, each call timed.

Requests are paced >= 0.3 s apart (connectd's per-peer onion-message limit).
No timing assertions: only that every request got its answer.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from regtest import (  # noqa: E402
    ASYNCPAY,
    RECORDER,
    arrivals,
    handshake,
    inject,
    node_id,
    require_binaries,
)

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from wallet import Wallet  # noqa: E402

REQUESTS = 30
PACE = 0.3  # seconds between the starts of two requests
POLL = 0.005
REPLY_TIMEOUT = 15.0


def summary(name: str, samples_s: list[float]) -> None:
    ms = sorted(x * 1000 for x in samples_s)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    print(f"{name:<52} n={len(ms):<3} p50 {statistics.median(ms):7.1f} ms  p90 {p90:7.1f} ms  "
          f"max {ms[-1]:7.1f} ms  min {ms[0]:7.1f} ms")


def paced(start: float) -> None:
    delay = start + PACE - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def static_invoice_round_trips(l1, offer, invoice) -> list[float]:
    payer = Wallet(node_id(l1))
    seen = len(arrivals(l1, payer.endpoint))
    times = []
    for _ in range(REQUESTS + 1):  # the first is a warm-up, not counted
        _, onion = payer.invoice_request(offer)
        start = time.perf_counter()
        inject(l1, onion)
        while len(arrivals(l1, payer.endpoint)) <= seen:
            if time.perf_counter() - start > REPLY_TIMEOUT:
                raise AssertionError(f"no static invoice for request {len(times) + 1} after {REPLY_TIMEOUT} s")
            time.sleep(POLL)
        times.append(time.perf_counter() - start)
        seen += 1
        paced(start)
    # Every answer is the stored static invoice (checked outside the timing).
    got = arrivals(l1, payer.endpoint)
    assert len(got) == REQUESTS + 1
    assert all(payer.open(o).static_invoice == invoice.encode() for o in got)
    print(f"static invoice warm-up request: {times[0] * 1000:.1f} ms")
    return times[1:]


def fetchinvoice_round_trips(l1, l4) -> list[float]:
    bolt12 = l4.rpc.call("offer", {"amount": "1000msat", "description": "asyncpay bench"})["bolt12"]
    times = []
    for _ in range(REQUESTS + 1):  # the first is a warm-up, not counted
        start = time.perf_counter()
        res = l1.rpc.call("fetchinvoice", {"offer": bolt12, "timeout": int(REPLY_TIMEOUT)})
        times.append(time.perf_counter() - start)
        assert res.get("invoice", "").startswith("lni1"), res
        paced(start)
    print(f"fetchinvoice warm-up request: {times[0] * 1000:.1f} ms")
    return times[1:]


def test_static_invoice_vs_fetchinvoice(node_factory):
    opts = [{"plugin": RECORDER, "may_reconnect": True},
            {"plugin": ASYNCPAY, "may_reconnect": True},
            {"plugin": RECORDER, "may_reconnect": True},
            {}]
    l1, l2, l3, l4 = node_factory.get_nodes(4, opts=opts)
    node_factory.join_nodes([l1, l2], wait_for_announce=False)
    node_factory.join_nodes([l2, l3], wait_for_announce=False)
    node_factory.join_nodes([l1, l4], wait_for_announce=False)

    _, offer, invoice = handshake(l2, l3)
    l3.stop()  # the recipient goes offline: only the LSP can answer
    static = static_invoice_round_trips(l1, offer, invoice)
    status = l2.rpc.call("asyncpay-status")
    assert status["server"]["invoices_served"] == REQUESTS + 1, status
    fetch = fetchinvoice_round_trips(l1, l4)

    print(f"\n{REQUESTS} requests each, paced >= {PACE} s, reply polled every {POLL * 1000:.0f} ms")
    summary("static invoice (l1 -> l2/asyncpay -> l1, l3 offline)", static)
    summary("CLN fetchinvoice (l1 -> l4 online -> l1)", fetch)
