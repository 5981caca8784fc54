"""The payer role in-process (issue 7): payer (asyncpay) -- LSP (asyncpay) --
recipient (asyncpay) on the emulated CLN of tests/emulated_cln.py."""

from __future__ import annotations

import hashlib
import time

import pytest

from asyncpay.cln.node import Node
from asyncpay.lsp import LspConfig
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
