"""What strangers can put in a sleeping wallet's mailbox through the LSP
adapter, when a flush starts, and what a stranger's reply path costs the
hook thread (issues 10, 11 and the route_to audit), over the emulated CLN."""

from __future__ import annotations

import os
import threading
import time

from asyncpay.blinded_path import EncryptedData
from asyncpay.cln.lsp import IntakeWriter
from asyncpay.onion_message import OnionMessage, OnionMessagePayload, build_path, peel_onion_message
from test_lsp_flow import Inbox, handshake, net, queue_for  # noqa: F401  (the fixture)
from wallet import Wallet


def sleeping_wallet(net_, lsp, seed: int):
    """A wallet node with a channel to the LSP, now asleep."""
    node = net_.node(bytes([seed]) * 32, f"wallet{seed}")
    net_.connect(lsp, node)
    net_.disconnect(lsp, node)
    return node


def send(pnode, lsp, wallet: Wallet, dest, payload) -> None:
    pk, pkt = wallet.onion_to(dest, payload)
    pnode.rpc.call("injectonionmessage", {"path_key": pk.hex(), "message": pkt.hex()})
    lsp.buckets.clear()  # the test sends faster than connectd allows


def test_a_reply_path_naming_a_sleeping_wallet_does_not_fill_its_mailbox(net):  # noqa: F811
    """(b): a stranger asks for A's static invoice with a reply path that
    starts at the LSP and names sleeping wallet B next."""
    net_, lsp, rnode, pnode, asyncpay = net
    _, _, offer, _ = handshake(lsp, rnode, asyncpay)
    b = sleeping_wallet(net_, lsp, 0x31)
    stranger = Wallet(pnode.node_id)
    reply = build_path(os.urandom(32), [(lsp.node_id, EncryptedData(next_node_id=b.node_id)),
                                        (b.node_id, EncryptedData(path_id=os.urandom(32)))])
    sent = 5
    for _ in range(sent):
        req, _ = stranger.invoice_request(offer)
        send(pnode, lsp, stranger, offer.offer_paths[0], OnionMessagePayload(invoice_request=req.encode(),
                                                                             reply_path=reply))
    assert asyncpay.store.mailbox_totals(b.id) == (0, 0)
    c = asyncpay.store.counters()
    assert c["invoices_served"] == sent and c["mailbox_not_queued_static_invoice"] == sent


def test_offer_paths_wait_only_for_the_recipient_itself(net):  # noqa: F811
    """offer_paths is kept for the sleeping recipient that asked, counted
    against the peer that handed us the request; a reply path naming another
    sleeping wallet gets nothing queued."""
    net_, lsp, rnode, pnode, asyncpay = net
    b = sleeping_wallet(net_, lsp, 0x32)
    wallet = Wallet(rnode.node_id)
    p_req = asyncpay.lsp.server.recipient_paths(rnode.id, 1, 3600, int(time.time()))[0]
    # To the recipient itself, which fell asleep after asking.
    pk, pkt = wallet.offer_paths_request(p_req, 0)
    out = peel_onion_message(rnode.secret, OnionMessage(pk, pkt))
    net_.disconnect(lsp, rnode)
    lsp.handle_onion(rnode.id, out.message.path_key, out.message.packet)
    [row] = asyncpay.lsp.mailbox.pending(rnode.id)
    assert row.source == rnode.id  # our reply counts against its cause
    # The same request with a reply path through sleeping B: not kept.
    net_.connect(lsp, rnode)
    asyncpay.lsp.wait_flushes()
    reply = build_path(os.urandom(32), [(lsp.node_id, EncryptedData(next_node_id=b.node_id)),
                                        (b.node_id, EncryptedData(path_id=os.urandom(32)))])
    from asyncpay.onion_message.async_payments import OfferPathsRequest
    send(rnode, lsp, wallet, p_req, OnionMessagePayload(offer_paths_request=OfferPathsRequest(invoice_slot=1),
                                                        reply_path=reply))
    assert asyncpay.store.mailbox_totals(b.id) == (0, 0)
    assert asyncpay.store.counters()["mailbox_not_queued_offer_paths"] == 1


def test_message_committed_after_the_peer_connected_is_flushed(net):  # noqa: F811
    """Issue 11: the peer connects while its message is on the way to disk;
    on_connect finds nothing committed, so the commit itself must flush."""
    net_, lsp, rnode, pnode, asyncpay = net
    wallet = Wallet(rnode.node_id)
    inbox = Inbox(rnode, wallet)
    role = asyncpay.lsp
    gate = threading.Event()
    real_commit = role.commit_intake
    role.commit_intake = lambda items: (gate.wait(10), real_commit(items))
    role.writer.drain = lambda: None  # the test's listener would wait for the held commit
    net_.disconnect(lsp, rnode)
    queue_for(lsp, rnode, pnode, wallet, 1)
    assert asyncpay.store.mailbox_totals(rnode.id) == (0, 0)  # not committed yet
    net_.connect(lsp, rnode)  # on_connect: nothing on disk, no flush
    assert not role.flushing
    gate.set()
    IntakeWriter.drain(role.writer)
    role.wait_flushes()
    assert inbox.take().unknown == {71: bytes([0])}
    assert asyncpay.store.mailbox_totals(rnode.id) == (0, 0)


def far_payer(net_, lsp):
    """A payer two hops away: payer -- hub -- LSP, not the LSP's peer."""
    hub = net_.node(bytes([0x41]) * 32, "hub")
    far = net_.node(bytes([0x42]) * 32, "far")
    net_.connect(lsp, hub)
    net_.connect(hub, far)
    return hub, far


def ask_from_far(hub, far, lsp, offer) -> Inbox:
    """A payer that sends its invoice_request from the hub and wants the answer
    at the far node (CLN's fetchinvoice starts the reply path at the payer);
    the inbox where that answer arrives."""
    payer = Wallet(hub.node_id)
    reply = build_path(os.urandom(32), [(far.node_id, EncryptedData(next_node_id=payer.endpoint)),
                                        (payer.endpoint, EncryptedData(path_id=os.urandom(32)))])
    inbox = Inbox(far, payer)
    req, _ = payer.invoice_request(offer)
    send(hub, lsp, payer, offer.offer_paths[0], OnionMessagePayload(invoice_request=req.encode(), reply_path=reply))
    return inbox


def test_route_to_asks_gossip_once_per_target(net):  # noqa: F811
    net_, lsp, rnode, pnode, asyncpay = net
    hub, far = far_payer(net_, lsp)
    calls: list[str] = []
    real = lsp.rpc.call
    lsp.rpc.call = lambda method, params=None: (calls.append(method), real(method, params))[1]
    assert asyncpay.route_to(far.node_id) == [hub.node_id]
    first = list(calls)
    assert first.count("listpeers") == 1 and first.count("listchannels") >= 1
    for _ in range(50):  # a stranger naming the same far node again and again
        assert asyncpay.route_to(far.node_id) == [hub.node_id]
    assert calls == first
    assert asyncpay.route_to(rnode.node_id) == [] and calls == first  # a connected peer: cached too
    # A connect or disconnect drops the answers, not the graph.
    net_.disconnect(lsp, rnode)
    assert asyncpay.route_to(far.node_id) == [hub.node_id]
    assert calls[len(first):] == ["listpeers"]


def test_fresh_targets_are_walked_at_a_bounded_rate(net):  # noqa: F811
    """A stranger naming a new far node in every reply path: past the burst
    we send directly instead of asking gossip again."""
    from asyncpay.cln.node import ROUTE_WALK_BURST
    from asyncpay.crypto import pubkey_of

    net_, lsp, rnode, pnode, asyncpay = net
    calls: list[str] = []
    real = lsp.rpc.call
    lsp.rpc.call = lambda method, params=None: (calls.append(method), real(method, params))[1]
    for _ in range(ROUTE_WALK_BURST + 15):
        assert asyncpay.route_to(pubkey_of(os.urandom(32))) == []
    assert calls.count("listchannels") == ROUTE_WALK_BURST  # unknown nodes: one lookup each
    assert asyncpay.store.counters()["route_walks_limited"] == 15


def test_replies_through_gossip_hold_no_node_lock_while_asking(net):  # noqa: F811
    net_, lsp, rnode, pnode, asyncpay = net
    _, _, offer, invoice = handshake(lsp, rnode, asyncpay)
    hub, far = far_payer(net_, lsp)
    held: list[bool] = []
    real = lsp.rpc.call

    def call(method, params=None):
        if method in ("listchannels", "listpeers"):
            probe = threading.Thread(target=lambda: held.append(not _try_lock(asyncpay.lock)))
            probe.start()
            probe.join()
        return real(method, params)

    lsp.rpc.call = call
    inbox = ask_from_far(hub, far, lsp, offer)
    assert inbox.take().static_invoice == invoice.encode()
    assert held and not any(held)


def _try_lock(lock) -> bool:
    if lock.acquire(timeout=0.5):
        lock.release()
        return True
    return False


def test_messages_for_v_do_not_hold_up_htlc_accepted(net):  # noqa: F811
    """pyln runs hooks and notifications on one thread: a stranger's reply
    path whose gossip lookups are slow must not delay the next HTLC."""
    net_, lsp, rnode, pnode, asyncpay = net
    _, _, offer, invoice = handshake(lsp, rnode, asyncpay)
    hub, far = far_payer(net_, lsp)
    asyncpay.start_endpoint_worker()
    order: list[str] = []
    slow = threading.Event()
    real = lsp.rpc.call

    def call(method, params=None):
        if method == "listchannels":
            slow.wait(10)  # lightningd busy with a big graph
            order.append("listchannels")
        return real(method, params)

    lsp.rpc.call = call
    inbox = ask_from_far(hub, far, lsp, offer)
    # The notification handler has returned; the next hook call is answered at once.
    answers: list[dict] = []
    asyncpay.on_htlc_accepted({"onion": {"payload": "00", "short_channel_id": "1x1x1"}, "htlc": {}},
                              answers.append)
    order.append("htlc answered")
    slow.set()
    asyncpay.drain()
    assert answers == [{"result": "continue"}]
    assert order[0] == "htlc answered" and "listchannels" in order
    assert inbox.take().static_invoice == invoice.encode()
