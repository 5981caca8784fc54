"""The recipient role in-process (issue 6): two asyncpay nodes, the LSP and
the recipient, on the emulated CLN of tests/emulated_cln.py, and a payer
played by the test with the project's own codecs and onion code.

handshake -> offer -> a payer's invoice_request answered with our static
invoice -> held_htlc_available and release -> a payment onion claimed."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from asyncpay.blinded_path import BlindedPaymentPath
from asyncpay.cln.node import Node
from asyncpay.lsp import LspConfig
from asyncpay.offers import Invoice, Offer, StaticInvoice
from asyncpay.onion_message import HeldHtlcAvailable, OnionMessagePayload
from asyncpay.payment.route import RouteHop, blinded_payment_onion, to_introduction
from asyncpay.recipient import RecipientConfig
from emulated_cln import Network
from test_lsp_flow import Inbox
from wallet import Wallet


def attach(node, tmp_path, **recipient) -> Node:
    logs: list[str] = []
    notes: list[tuple[str, dict]] = []
    n = Node(node.rpc, lambda msg, level="info": logs.append(f"{level}: {msg}"),
             str(tmp_path / f"{node.name}.sqlite3"), LspConfig(), RecipientConfig(**recipient),
             notify=lambda topic, params: notes.append((topic, params)))
    n.logs, n.notes = logs, notes

    def listener(topic: str, params: dict) -> None:
        if topic == "onionmessage_forward_fail":
            n.on_forward_fail(params["onionmessage_forward_fail"])
            n.lsp.writer.drain()
        elif topic == "connect":
            n.on_connect(params["connect"]["id"])
        elif topic == "disconnect":  # as cln/plugin.py
            n.channels_changed()

    node.listeners.append(listener)
    node.htlc_hooks.append(n.on_htlc_accepted)
    return n


class Flow:
    """payer node -- LSP (asyncpay) -- recipient node (asyncpay)."""

    def __init__(self, tmp_path, **recipient) -> None:
        self.net = net = Network()
        self.lnode = net.node(bytes([0x31]) * 32, "lsp")
        self.rnode = net.node(bytes([0x32]) * 32, "recipient")
        self.pnode = net.node(bytes([0x33]) * 32, "payer")
        net.connect(self.lnode, self.rnode)
        net.connect(self.lnode, self.pnode)
        self.lsp = attach(self.lnode, tmp_path)
        self.r = attach(self.rnode, tmp_path, **recipient)
        self.payer = Wallet(self.pnode.node_id)
        self.inbox = Inbox(self.pnode, self.payer)

    def setserver(self) -> None:
        paths = self.lsp.lsp.server.recipient_paths(self.rnode.id, 1, 3600, int(time.time()))
        self.r.recipient.core.set_server(paths, int(time.time()))

    def offer(self, **kw) -> Offer:
        row = self.r.recipient.offer(kw.get("slot", 0), kw.get("description", "coffee"), kw.get("amount_msat"), 1)
        assert row.state == "ready", row
        return Offer.from_string(row.bolt12)

    def send(self, onion: tuple[bytes, bytes]) -> None:
        self.pnode.rpc.call("injectonionmessage", {"path_key": onion[0].hex(), "message": onion[1].hex()})

    def pay(self, paths: list, blindedpay: list, amount: int, payment_hash: bytes, **final):
        """Pay over the first blinded path, from the payer through its channel
        to the LSP (the introduction node); ``final`` goes in the last hop."""
        path = BlindedPaymentPath(paths[0], blindedpay[0])
        a, c = to_introduction(path, amount, self.net.height)
        route = [RouteHop(self.pnode.channels[self.lnode.id], self.lnode.node_id, a, c)]
        built = blinded_payment_onion(os.urandom(32), self.pnode.node_id, route, path, amount, self.net.height,
                                      payment_hash, **final)
        return self.net.pay(self.pnode, built.onion, payment_hash, built.amount_msat, built.cltv_expiry)

    def pay_static(self, static: StaticInvoice, req_bytes: bytes, amount: int, preimage: bytes | None = None,
                   payment_hash: bytes | None = None):
        preimage = preimage or os.urandom(32)
        payment_hash = payment_hash or hashlib.sha256(preimage).digest()
        return self.pay(static.invoice_paths, static.invoice_blindedpay, amount, payment_hash,
                        keysend_preimage=preimage, invoice_request=req_bytes), preimage


@pytest.fixture
def flow(tmp_path):
    return Flow(tmp_path)


def test_async_receive_end_to_end(flow):
    flow.setserver()
    offer = flow.offer()
    assert offer.offer_paths and offer.offer_issuer_id is not None
    # The LSP holds our static invoice for slot 0.
    [stored] = flow.lsp.store.list_invoices(flow.rnode.id)
    static = StaticInvoice.decode(stored["invoice"])
    assert static.offer().encode() == offer.encode()

    # The recipient sleeps: a payer asks, the LSP answers with the static invoice.
    flow.net.disconnect(flow.lnode, flow.rnode)
    req, onion = flow.payer.invoice_request(offer, amount=50_000)
    flow.send(onion)
    got = flow.inbox.take()
    assert got.static_invoice == static.encode()

    # The payer announces its held HTLC; the message waits in the LSP's
    # mailbox; the recipient wakes and releases it.
    held = OnionMessagePayload(held_htlc_available=HeldHtlcAvailable(), reply_path=flow.payer.reply_path())
    flow.send(flow.payer.onion_to(static.invoice_held_htlc_available_paths[0], held))
    assert not flow.inbox.items
    flow.net.connect(flow.lnode, flow.rnode)
    flow.lsp.lsp.wait_flushes()
    replies = [flow.inbox.take() for _ in range(len(flow.inbox.items))]
    assert [r.release_held_htlc is not None for r in replies].count(True) == 1
    # The forwarded invoice_request was not kept for the sleeping recipient
    # (the payer has the static invoice): no BOLT 12 invoice comes on wake.
    assert not [r for r in replies if r.invoice]

    result, preimage = flow.pay_static(static, req.encode(), 50_000)
    assert result.answer == {"result": "resolve", "payment_key": preimage.hex()}
    [pay] = flow.r.recipient.core.records.payments()
    assert pay["kind"] == "static" and pay["payment_preimage"] == preimage.hex() and pay["amount_msat"] >= 50_000
    assert pay["bolt12"] == offer.to_string()
    topic, note = flow.r.notes[-1]
    assert topic == "asyncpay_payment_received" and note["payment_hash"] == pay["payment_hash"]


def test_online_invoice_is_claimed(flow):
    flow.setserver()
    offer = flow.offer(description="tea", amount_msat=20_000)
    req, onion = flow.payer.invoice_request(offer)
    flow.send(onion)
    replies = [flow.inbox.take() for _ in range(2)]
    [inv] = [Invoice.decode(r.invoice) for r in replies if r.invoice]
    assert inv.invoice_amount == 20_000 and inv.signature_ok()
    result = flow.pay(inv.invoice_paths, inv.invoice_blindedpay, 20_000, inv.invoice_payment_hash)
    assert result.answer["result"] == "resolve"
    assert hashlib.sha256(bytes.fromhex(result.answer["payment_key"])).digest() == inv.invoice_payment_hash
    [pay] = flow.r.recipient.core.records.payments()
    assert pay["kind"] == "invoice"


def test_wrong_preimage_fails_with_incorrect_payment_details(flow):
    flow.setserver()
    offer = flow.offer()
    flow.net.disconnect(flow.lnode, flow.rnode)
    req, onion = flow.payer.invoice_request(offer, amount=10_000)
    flow.send(onion)
    static = StaticInvoice.decode(flow.inbox.take().static_invoice)
    flow.net.connect(flow.lnode, flow.rnode)
    flow.lsp.lsp.wait_flushes()
    # The keysend preimage does not hash to the payment hash.
    result, _ = flow.pay_static(static, req.encode(), 10_000, payment_hash=bytes(32))
    assert result.answer["result"] == "fail"
    assert result.answer["failure_message"].startswith("400f")
    assert flow.r.store.counters()["claim_failed_wrong_preimage"] == 1
    assert not flow.r.recipient.core.records.payments()


def test_a_payment_not_ours_is_left_to_lightningd(flow):
    """An HTLC with no blinded data of ours: the role answers continue."""
    answers = []
    flow.r.on_htlc_accepted({"onion": {"payload": "0a0201020404000000ff"}, "htlc": {}}, answers.append)
    assert answers == [{"result": "continue"}]
