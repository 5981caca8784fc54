"""Multi-node flows in-process: the real adapter (asyncpay.cln.node.Node)
over the emulated CLN of tests/emulated_cln.py, with a wallet helper playing
recipient and payer."""

from __future__ import annotations

import os
import time

import pytest

from asyncpay.blinded_path import EncryptedData
from asyncpay.cln.node import Node
from asyncpay.lsp import LspConfig
from asyncpay.offers import StaticInvoice
from asyncpay.onion_message import (
    Forward,
    OnionMessage,
    OnionMessagePayload,
    build_onion_message,
    build_path,
    peel_onion_message,
)
from emulated_cln import Network
from wallet import Wallet


class Inbox:
    """What a wallet's node reports for the wallet's endpoint key."""

    def __init__(self, node, wallet: Wallet) -> None:
        self.items: list[bytes] = []
        self.wallet = wallet
        node.listeners.append(self)

    def __call__(self, topic: str, params: dict) -> None:
        p = params.get("onionmessage_forward_fail", {})
        if topic == "onionmessage_forward_fail" and p.get("next_node_id") == self.wallet.endpoint.hex():
            self.items.append(bytes.fromhex(p["outgoing"]))

    def take(self) -> OnionMessagePayload:
        assert self.items, "nothing arrived"
        return self.wallet.open(self.items.pop(0))


def attach(node, tmp_path, **limits) -> Node:
    logs: list[str] = []
    n = Node(node.rpc, lambda msg, level="info": logs.append(f"{level}: {msg}"),
             str(tmp_path / f"{node.name}.sqlite3"), LspConfig(**limits))
    n.logs = logs

    def listener(topic: str, params: dict) -> None:
        if topic == "onionmessage_forward_fail":
            n.on_forward_fail(params["onionmessage_forward_fail"])
            n.lsp.writer.drain()  # the intake commit is asynchronous (group commit)
        elif topic == "connect":
            n.on_connect(params["connect"]["id"])
        elif topic == "disconnect":
            n.channels_changed()

    node.listeners.append(listener)
    return n


def lsp_network(tmp_path, flush_interval_ms: int = 300):
    """payer node -- LSP (running asyncpay) -- recipient node."""
    net = Network()
    lsp = net.node(bytes([0x21]) * 32, "lsp")
    rnode = net.node(bytes([0x22]) * 32, "recipient")
    pnode = net.node(bytes([0x23]) * 32, "payer")
    net.connect(lsp, rnode)
    net.connect(lsp, pnode)
    asyncpay = attach(lsp, tmp_path, mailbox_flush_interval_ms=flush_interval_ms)
    return net, lsp, rnode, pnode, asyncpay


@pytest.fixture
def net(tmp_path):
    return lsp_network(tmp_path)


def handshake(lsp, rnode, asyncpay, slot=0):
    """Recipient: offer_paths_request -> offer_paths -> serve_static_invoice -> persisted."""
    wallet = Wallet(rnode.node_id)
    inbox = Inbox(rnode, wallet)
    now = int(time.time())
    p_req = asyncpay.lsp.server.recipient_paths(rnode.id, 1, 3600, now)[0]
    rnode.rpc.call("injectonionmessage", dict(zip(("path_key", "message"), (x.hex() for x in
                                                  wallet.offer_paths_request(p_req, slot)))))
    reply = inbox.take()
    assert reply.offer_paths is not None and reply.reply_path is not None
    offer = wallet.make_offer(reply.offer_paths.paths)
    invoice = wallet.make_static_invoice(offer, now, lsp.node_id)
    pk, pkt = wallet.serve_static_invoice(reply.reply_path, invoice)
    rnode.rpc.call("injectonionmessage", {"path_key": pk.hex(), "message": pkt.hex()})
    assert inbox.take().static_invoice_persisted is not None
    return wallet, inbox, offer, invoice


def test_handshake_persist_and_serve_while_recipient_offline(net):
    net_, lsp, rnode, pnode, asyncpay = net
    wallet, rinbox, offer, invoice = handshake(lsp, rnode, asyncpay)
    stored = asyncpay.store.list_invoices(rnode.id)
    assert [(r["invoice_slot"], r["invoice"]) for r in stored] == [(0, invoice.encode())]

    net_.disconnect(lsp, rnode)  # the recipient goes to sleep
    payer = Wallet(pnode.node_id)
    pinbox = Inbox(pnode, payer)
    req, (pk, pkt) = payer.invoice_request(offer)
    pnode.rpc.call("injectonionmessage", {"path_key": pk.hex(), "message": pkt.hex()})
    got = pinbox.take()
    assert got.static_invoice == invoice.encode()
    StaticInvoice.decode(got.static_invoice).validate(int(time.time()))
    # The forwarded invoice_request is not kept for the sleeping recipient:
    # the payer has the static invoice (lightningdevkit/rust-lightning#4114).
    assert asyncpay.store.mailbox_totals(rnode.id) == (0, 0)
    assert not rinbox.items
    c = asyncpay.store.counters()
    assert (c["invoices_stored"], c["invoices_served"], c["mailbox_not_queued_forward_invoice_request"]) == (1, 1, 1)
    # Online, the recipient gets the forwarded request with the payer's reply
    # path, so that it can answer with a fresh invoice.
    net_.connect(lsp, rnode)
    req, (pk, pkt) = payer.invoice_request(offer)
    pnode.rpc.call("injectonionmessage", {"path_key": pk.hex(), "message": pkt.hex()})
    assert pinbox.take().static_invoice == invoice.encode()
    fwd = rinbox.take()
    assert fwd.invoice_request == req.encode()
    assert fwd.reply_path is not None


def test_final_hop_even_type_is_dropped_by_cln(net):
    """Why V exists: a CLN final hop never sees an async message."""
    net_, lsp, rnode, pnode, _ = net
    path = build_path(os.urandom(32), [(rnode.node_id, EncryptedData(path_id=os.urandom(32)))])
    msg = build_onion_message(os.urandom(32), path, OnionMessagePayload(static_invoice=b"\x00" * 10))
    rnode.handle_onion(lsp.id, msg.path_key, msg.packet)  # as if the LSP delivered it
    assert rnode.dropped == {"parse": 1} and rnode.hook_deliveries == []
    odd = build_onion_message(os.urandom(32), path, OnionMessagePayload(unknown={71: b"x"}))
    rnode.handle_onion(pnode.id, odd.path_key, odd.packet)
    assert len(rnode.hook_deliveries) == 1


def queue_for(lsp, rnode, pnode, wallet: Wallet, n: int) -> None:
    """n messages from the payer's node to the wallet behind ``rnode``, which
    is offline: the LSP cannot forward them and queues them."""
    sender = Wallet(pnode.node_id)
    for i in range(n):
        dest = build_path(os.urandom(32), [
            (lsp.node_id, EncryptedData(next_node_id=rnode.node_id)),
            (rnode.node_id, EncryptedData(next_node_id=wallet.endpoint)),
            (wallet.endpoint, EncryptedData(path_id=os.urandom(32))),
        ])
        pk, pkt = sender.onion_to(dest, OnionMessagePayload(unknown={71: bytes([i])}))
        pnode.rpc.call("injectonionmessage", {"path_key": pk.hex(), "message": pkt.hex()})
        lsp.buckets.clear()  # the test sends faster than connectd allows; the LSP's intake is not under test


def test_scid_named_next_hop_is_queued_for_its_peer(net):
    """LDK names private-channel hops by scid; CLN then reports only the scid."""
    net_, lsp, rnode, pnode, asyncpay = net
    wallet = Wallet(rnode.node_id)
    inbox = Inbox(rnode, wallet)
    net_.disconnect(lsp, rnode)
    dest = build_path(os.urandom(32), [
        (lsp.node_id, EncryptedData(short_channel_id=lsp.channels[rnode.id])),
        (rnode.node_id, EncryptedData(next_node_id=wallet.endpoint)),
        (wallet.endpoint, EncryptedData(path_id=os.urandom(32))),
    ])
    pk, pkt = Wallet(pnode.node_id).onion_to(dest, OnionMessagePayload(unknown={71: b"by scid"}))
    pnode.rpc.call("injectonionmessage", {"path_key": pk.hex(), "message": pkt.hex()})
    assert asyncpay.store.mailbox_totals(rnode.id)[0] == 1
    net_.connect(lsp, rnode)
    asyncpay.lsp.wait_flushes()
    assert inbox.take().unknown == {71: b"by scid"}


def test_flush_is_paced_under_the_peer_rate_limit(net):
    net_, lsp, rnode, pnode, asyncpay = net
    wallet = Wallet(rnode.node_id)
    inbox = Inbox(rnode, wallet)
    net_.disconnect(lsp, rnode)
    n = 8
    queue_for(lsp, rnode, pnode, wallet, n)
    assert asyncpay.store.mailbox_totals(rnode.id)[0] == n
    t0 = time.monotonic()
    net_.connect(lsp, rnode)
    asyncpay.lsp.wait_flushes()
    elapsed = time.monotonic() - t0
    assert [inbox.take().unknown[71] for _ in range(n)] == [bytes([i]) for i in range(n)]  # oldest first
    assert rnode.dropped.get("ratelimited", 0) == 0
    assert elapsed >= (n - 1) * 0.3 * 0.9
    assert asyncpay.store.mailbox_totals(rnode.id) == (0, 0)


def test_unpaced_flush_would_lose_messages(tmp_path):
    """The same flush at 10 ms spacing overruns connectd's bucket: the reason for pacing."""
    net_, lsp, rnode, pnode, asyncpay = lsp_network(tmp_path, flush_interval_ms=10)
    wallet = Wallet(rnode.node_id)
    inbox = Inbox(rnode, wallet)
    net_.disconnect(lsp, rnode)
    queue_for(lsp, rnode, pnode, wallet, 8)
    net_.connect(lsp, rnode)
    asyncpay.lsp.wait_flushes()
    assert rnode.dropped.get("ratelimited", 0) > 0
    assert len(inbox.items) < 8


def test_failed_flush_keeps_the_message(net):
    net_, lsp, rnode, pnode, asyncpay = net
    wallet = Wallet(rnode.node_id)
    net_.disconnect(lsp, rnode)
    queue_for(lsp, rnode, pnode, wallet, 2)
    # The peer is still offline: re-injection fails and nothing is lost.
    assert asyncpay.lsp.start_flush(rnode.id)
    asyncpay.lsp.wait_flushes()
    assert asyncpay.store.mailbox_totals(rnode.id)[0] == 2
    assert asyncpay.store.counters()["mailbox_flush_failed"] == 1
    assert [r.attempts for r in asyncpay.lsp.mailbox.pending(rnode.id)] == [1, 0]


def test_reply_to_offline_peer_goes_to_mailbox(net):
    """Our own reply whose next hop is an offline peer waits in the mailbox."""
    net_, lsp, rnode, pnode, asyncpay = net
    wallet = Wallet(rnode.node_id)
    inbox = Inbox(rnode, wallet)
    p_req = asyncpay.lsp.server.recipient_paths(rnode.id, 1, 3600, int(time.time()))[0]
    pk, pkt = wallet.offer_paths_request(p_req, 3)
    # The recipient's node hands the request to the LSP, then drops off
    # before the LSP replies.
    out = peel_onion_message(rnode.secret, OnionMessage(pk, pkt))
    assert isinstance(out, Forward)
    net_.disconnect(lsp, rnode)
    lsp.handle_onion(rnode.id, out.message.path_key, out.message.packet)
    assert asyncpay.store.mailbox_totals(rnode.id)[0] == 1
    net_.connect(lsp, rnode)
    asyncpay.lsp.wait_flushes()
    assert inbox.take().offer_paths is not None


def test_mail_survives_a_restart(net, tmp_path):
    net_, lsp, rnode, pnode, asyncpay = net
    wallet = Wallet(rnode.node_id)
    inbox = Inbox(rnode, wallet)
    net_.disconnect(lsp, rnode)
    queue_for(lsp, rnode, pnode, wallet, 3)
    asyncpay.store.close()
    lsp.listeners.clear()
    again = attach(lsp, tmp_path, mailbox_flush_interval_ms=300)
    assert again.endpoint.public_key == asyncpay.endpoint.public_key  # V is derived, not stored
    assert again.store.mailbox_totals(rnode.id)[0] == 3
    net_.connect(lsp, rnode)
    again.lsp.wait_flushes()
    assert len(inbox.items) == 3
