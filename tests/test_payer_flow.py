"""The payer role in-process (issue 7): payer (asyncpay) -- LSP (asyncpay) --
recipient (asyncpay) on the emulated CLN of tests/emulated_cln.py."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time

import pytest

from asyncpay.cln.node import Node
from asyncpay.cln.payer import ORPHAN_LOOKS, TICK
from asyncpay.lsp import LspConfig
from asyncpay.offers import Invoice
from asyncpay.payer import PayerConfig
from asyncpay.recipient import RecipientConfig
from test_recipient_flow import Flow


def attach_payer(flow: Flow, tmp_path, **payer) -> Node:
    notes: list[tuple[str, dict]] = []
    n = Node(flow.pnode.rpc, lambda msg, level="info": None, str(tmp_path / "payer.sqlite3"), LspConfig(),
             RecipientConfig(), PayerConfig(**payer), notify=lambda topic, params: notes.append((topic, params)))
    n.notes = notes

    def listener(topic: str, params: dict) -> None:
        if topic == "onionmessage_forward_fail":
            n.on_forward_fail(params["onionmessage_forward_fail"])
        elif topic == "custommsg":  # as cln/plugin.py's hook
            n.on_custommsg(params["peer_id"], params["payload"])

    flow.pnode.listeners.append(listener)
    return n


def wait(pred, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    raise AssertionError("timed out")


@pytest.fixture
def net(tmp_path):
    flow = Flow(tmp_path)
    flow.setserver()
    payer = attach_payer(flow, tmp_path, payer_invoice_grace=1)
    return flow, payer


def test_offline_recipient_is_paid_after_it_releases(net):
    flow, payer = net
    offer = flow.offer(description="coffee").to_string()
    flow.net.disconnect(flow.lnode, flow.rnode)
    res = payer.payer.pay(offer, 30_000, None, 0)
    assert res["status"] == "pending" and res["kind"] == "static"
    # After the grace, held_htlc_available goes out and waits at the LSP.
    payer.payer.tick(int(time.time()) + 2)
    assert flow.lsp.store.mailbox_totals(flow.rnode.id)[0] >= 1
    flow.net.connect(flow.lnode, flow.rnode)
    flow.lsp.lsp.wait_flushes()
    wait(lambda: payer.payer.core.records.get(res["id"]).state == "complete")
    [done] = [r.view() for r in payer.payer.core.records.all()]
    assert done["status"] == "complete" and done["kind"] == "static"
    assert hashlib.sha256(bytes.fromhex(done["payment_preimage"])).hexdigest() == done["payment_hash"]
    [got] = flow.r.recipient.core.records.payments()
    assert got["payment_hash"] == done["payment_hash"] and got["kind"] == "static"
    # The notification follows the record (sent outside the lock).
    wait(lambda: ("asyncpay_payment_sent", done) in payer.notes)


def test_online_recipient_is_paid_with_a_normal_invoice(net):
    flow, payer = net
    offer = flow.offer(description="tea", amount_msat=12_000).to_string()
    res = payer.payer.pay(offer, None, "thanks", 2)
    assert res["status"] == "complete" and res["kind"] == "invoice", res
    [got] = flow.r.recipient.core.records.payments()
    assert got["kind"] == "invoice" and got["payment_preimage"] == res["payment_preimage"]
    # The static invoice that came first was not used: no release was asked for.
    assert flow.r.store.counters().get("recipient_releases", 0) == 0


def test_no_answer_fails_after_the_attempts(net):
    flow, payer = net
    offer = flow.offer(description="coffee").to_string()
    flow.net.disconnect(flow.lnode, flow.pnode)  # nothing reaches the LSP any more
    res = payer.payer.pay(offer, 1_000, None, 0)
    assert res["status"] == "pending"
    cfg = payer.payer.config
    now = int(time.time())
    for i in range(1, cfg.payer_request_attempts + 1):
        payer.payer.tick(now + i * cfg.payer_request_retry)
    [row] = payer.payer.core.records.all()
    assert row.attempts == cfg.payer_request_attempts and row.state == "failed"
    assert "no invoice came" in row.reason
    assert payer.notes[-1][0] == "asyncpay_payment_failed" and payer.notes[-1][1]["reason"] == row.reason


def test_static_payment_over_fee_cap_is_never_sent(net):
    """The review's case end to end: the recipient's LSP charges 2,000,000 msat
    + 100 ppm on its blinded path; a 30,000 msat payment capped at 5,300 msat
    used to go out as 2,030,003 msat. Now nothing is sent: no hold, no HTLC."""
    flow, payer = net
    flow.lnode.policy = dataclasses.replace(flow.lnode.policy, fee_base_msat=2_000_000)
    offer = flow.offer(description="coffee").to_string()
    flow.net.disconnect(flow.lnode, flow.rnode)
    res = payer.payer.pay(offer, 30_000, None, 0)
    queued = flow.lsp.store.mailbox_totals(flow.rnode.id)[0]  # our invoice_request, for when it wakes
    payer.payer.tick(int(time.time()) + 2)
    row = payer.payer.core.records.get(res["id"])
    assert row.state == "failed" and "blinded path fee 2000003 msat is over the cap of 5300 msat" in row.reason
    assert flow.lsp.store.mailbox_totals(flow.rnode.id)[0] == queued  # no held_htlc_available
    assert flow.pnode.sendpays == {}
    assert payer.notes[-1][0] == "asyncpay_payment_failed"


def test_askrene_route_over_the_cap_is_never_injected(net, monkeypatch):
    """askrene is asked for a route within the rest of the cap; if the route
    it answers costs more, the payer refuses it before injectpaymentonion."""
    flow, payer = net
    offer = flow.offer(description="coffee").to_string()
    rpc = flow.pnode.rpc
    honest = rpc._getroutes
    asked = []

    def greedy(params):
        asked.append(params)
        routes = honest(params)
        routes["routes"][0]["path"][0]["amount_out_msat"] += 10**6  # askrene ignoring maxfee_msat
        return routes

    monkeypatch.setattr(rpc, "_getroutes", greedy)
    flow.net.disconnect(flow.lnode, flow.rnode)
    res = payer.payer.pay(offer, 30_000, None, 0)
    payer.payer.tick(int(time.time()) + 2)
    flow.net.connect(flow.lnode, flow.rnode)  # the recipient wakes and releases
    flow.lsp.lsp.wait_flushes()
    wait(lambda: payer.payer.core.records.get(res["id"]).state == "failed")
    row = payer.payer.core.records.get(res["id"])
    assert "over the cap of 5300 msat" in row.reason, row.reason
    assert flow.pnode.sendpays == {}
    # askrene was given the cap less the blinded path's fee, and the CLTV room.
    [params] = asked
    assert params["maxfee_msat"] < 5300 and params["maxdelay"] == 2016 - 1


def test_xpay_is_given_the_caps(net, monkeypatch):
    flow, payer = net
    offer = flow.offer(description="tea", amount_msat=12_000).to_string()
    rpc = flow.pnode.rpc
    seen = []
    real = rpc._xpay
    monkeypatch.setattr(rpc, "_xpay", lambda params: (seen.append(params), real(params))[1])
    assert payer.payer.pay(offer, None, None, 2)["status"] == "complete"
    assert seen[0]["maxfee"] == 5000 + 120 and seen[0]["maxdelay"] == 2016


def test_restart_resends_held_htlc_available(net, tmp_path):
    """The held_htlc_available sent before a restart may be lost: on start it
    goes once more, and the one release pays once."""
    flow, payer = net
    offer = flow.offer(description="coffee").to_string()
    flow.net.disconnect(flow.lnode, flow.rnode)
    res = payer.payer.pay(offer, 30_000, None, 0)
    queued = flow.lsp.store.mailbox_totals(flow.rnode.id)[0]
    payer.payer.tick(int(time.time()) + 2)
    assert flow.lsp.store.mailbox_totals(flow.rnode.id)[0] == queued + 1
    payer.store.close()
    flow.pnode.listeners.pop()  # the stopped plugin's (attached last)
    again = attach_payer(flow, tmp_path, payer_invoice_grace=1)  # same database: a restart
    again.payer.resume()
    assert flow.lsp.store.mailbox_totals(flow.rnode.id)[0] == queued + 2
    flow.net.connect(flow.lnode, flow.rnode)
    flow.lsp.lsp.wait_flushes()
    wait(lambda: again.payer.core.records.get(res["id"]).state == "complete")
    assert len(flow.r.recipient.core.records.payments()) == 1
    assert len(flow.pnode.sendpays) == 1
    # The recipient answered both; the second release was dropped, not paid.
    wait(lambda: again.store.counters().get("dropped_unexpected_release") == 1)


def test_a_part_lightningd_lost_in_a_crash_fails_the_payment(net, tmp_path, monkeypatch):
    """lightningd recorded the xpay part, then was killed before committing its
    HTLC: after the restart the part stays pending in listsendpays with no HTLC
    anywhere (CLN v26.06, found by the chaos run). While an HTLC of the payment
    is in a channel we wait; once none is, the payment fails instead of staying
    pending for ever."""
    flow, payer = net
    offer = flow.offer(description="tea", amount_msat=12_000).to_string()
    rpc = flow.pnode.rpc
    recorded = threading.Event()

    def killed(params: dict) -> dict:
        ph = Invoice.from_string(params["invstring"]).invoice_payment_hash.hex()
        flow.pnode.sendpays[ph] = {"payment_hash": ph, "status": "pending", "partid": 1, "groupid": 1}
        recorded.set()
        threading.Event().wait()  # lightningd is gone: xpay never answers
        raise AssertionError("unreachable")

    monkeypatch.setattr(rpc, "_xpay", killed)
    res = payer.payer.pay(offer, None, None, 0)
    wait(recorded.is_set)
    ph = next(iter(flow.pnode.sendpays))
    payer.store.close()
    flow.pnode.listeners.pop()
    htlc = {"payment_hash": ph, "direction": "out"}
    channel = rpc._channel
    monkeypatch.setattr(rpc, "_channel", lambda peer, scid: {**channel(peer, scid), "htlcs": [htlc]})
    again = attach_payer(flow, tmp_path, payer_invoice_grace=1)  # same database: the restart
    again.payer.resume()
    time.sleep(2 * (ORPHAN_LOOKS + 1) * TICK)  # looks that see the HTLC: still paying
    assert again.payer.core.records.get(res["id"]).state == "paying"
    monkeypatch.setattr(rpc, "_channel", channel)  # no HTLC of it left anywhere
    wait(lambda: again.payer.core.records.get(res["id"]).state == "failed")
    assert "lost" in again.payer.core.records.get(res["id"]).reason


def test_a_failed_tick_does_not_stop_the_ticker(net, monkeypatch):
    """A store or RPC error in one pass is logged and the next pass runs:
    without the ticker no request is re-sent and no payment times out."""
    _, payer = net
    calls = []
    real = payer.payer.core.tick

    def flaky(now):
        calls.append(now)
        if len(calls) == 1:
            raise RuntimeError("store unavailable")
        return real(now)

    monkeypatch.setattr(payer.payer.core, "tick", flaky)
    payer.payer.start()
    try:
        wait(lambda: len(calls) >= 2)
    finally:
        payer.payer._stop.set()
