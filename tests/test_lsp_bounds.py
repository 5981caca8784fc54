"""Bounded state under abuse (issue 9): what one recipient can make the
server store stays under a stated bound however often it asks, and the
paths it actually uses keep working."""

from __future__ import annotations

from asyncpay.endpoint import Delivered
from asyncpay.lsp.server import RECIPIENT
from asyncpay.onion_message import OnionMessagePayload
from asyncpay.onion_message.async_payments import OfferPathsRequest
from test_lsp_server import LSP_ID, NOW, PEER_ID, Lsp, persisted
from wallet import Wallet

REQUESTS = 10_000


def test_ten_thousand_offer_paths_requests_stay_bounded(tmp_path):
    lsp = Lsp(tmp_path)
    keep = lsp.config.max_offer_paths_per_slot
    alice = Wallet(PEER_ID)
    offer, inv, p_serve = persisted(lsp, alice)  # the set in use
    [p_req] = lsp.server.recipient_paths("alice", 1, 10**9, NOW)
    reply_path = alice.reply_path()
    request = OnionMessagePayload(offer_paths_request=OfferPathsRequest(invoice_slot=0), reply_path=reply_path)
    path_id = lsp.store.conn.execute(
        "SELECT path_id FROM path_contexts WHERE kind = ? ORDER BY rowid DESC LIMIT 1", (RECIPIENT,)).fetchone()[0]
    # The request as the endpoint delivers it (the onion layers are tested
    # elsewhere); one a second, so the rate limit lets every one through.
    issued = 0
    for i in range(REQUESTS):
        actions = lsp.server.dispatch(Delivered(RECIPIENT, "alice", None, request, path_id), NOW + i)
        issued += len(actions)
    assert issued == REQUESTS

    # The bound: per slot, `keep` newest sets plus the one the invoice uses;
    # each set is one issued-path row and two contexts.
    assert lsp.store.row_count("issued_offer_paths") <= keep + 1
    contexts = lsp.store.row_count("path_contexts")
    assert contexts <= 2 * (keep + 1) + 2  # + the two recipient paths minted by the operator
    assert lsp.store.counters()["offer_paths_sent"] == REQUESTS + 1

    # The paths in use still work: a payer gets the stored invoice over the
    # offer's path, and the recipient can re-serve over its serve path.
    later = NOW + REQUESTS
    payer = Wallet(PEER_ID)
    req, _ = payer.invoice_request(offer)
    actions = lsp.deliver(payer, offer.offer_paths[0],
                          OnionMessagePayload(invoice_request=req.encode(), reply_path=payer.reply_path()), later)
    assert lsp.open_reply(payer, actions[0]).static_invoice == inv.encode()
    fresh = alice.make_static_invoice(offer, later, LSP_ID)
    [ack] = lsp.serve(alice, p_serve, fresh, now=later)
    assert lsp.open_reply(alice, ack).static_invoice_persisted is not None


def test_pruned_paths_stop_working(tmp_path):
    """The other side of the bound: a set pushed out is really gone."""
    lsp = Lsp(tmp_path, max_offer_paths_per_slot=2)
    alice = Wallet(PEER_ID)
    first_paths, first_serve = lsp.handshake(alice, "alice")
    for _ in range(3):
        lsp.handshake(alice, "alice")
    offer = alice.make_offer(first_paths)
    inv = alice.make_static_invoice(offer, NOW, LSP_ID)
    assert lsp.serve(alice, first_serve, inv) == []
    assert lsp.dropped("unknown_path_id") == 1


def test_ten_thousand_stranger_messages_take_one_share_of_a_sleeping_wallets_mailbox(tmp_path):
    """Issues 6 and 10, measured: 10,000 messages from one stranger for a
    sleeping wallet, by every way in (opaque onions forwarded through us,
    forwarded invoice_requests, replies to a path naming the wallet) leave
    it at most one source's share; a payer's held_htlc_available still gets in.
    Before the fix the first 100 filled the wallet's whole quota for the TTL
    and the payer's message was dropped (mailbox_dropped_peer_messages)."""
    import os

    from asyncpay.actions import InjectOnion
    from asyncpay.crypto import pubkey_of
    from emulated_cln import Network
    from test_lsp_flow import attach

    net = Network()
    lsp, wallet_node, stranger, payer = (net.node(bytes([0x51 + i]) * 32, name)
                                         for i, name in enumerate(("lsp", "wallet", "stranger", "payer")))
    for peer in (wallet_node, stranger, payer):
        net.connect(lsp, peer)
    # The rate limit is not what bounds this: let every message through it.
    node = attach(lsp, tmp_path, mailbox_intake_burst=10**6)
    if node.store.kind == "sqlite":  # (tests/pg_cluster.py runs PostgreSQL stores without the WAL flush)
        node.store.conn.execute("PRAGMA synchronous=OFF")  # 10,000 fsyncs would test the disk, not the bound
    net.disconnect(lsp, wallet_node)
    w = wallet_node.id
    for i in range(REQUESTS):
        key, onion = pubkey_of(os.urandom(32)), os.urandom(1366)
        if i % 10 < 4:  # an onion for the wallet, forwarded through us
            node.on_forward_fail({"source": stranger.id, "next_node_id": w, "incoming": onion.hex(),
                                  "path_key": key.hex()})
        else:  # our own message the stranger caused: a forwarded request or a reply
            purpose = "forward_invoice_request" if i % 10 < 7 else "static_invoice"
            node.inject(InjectOnion(key, onion, wallet_node.node_id, purpose, cause=stranger.id))
    node.lsp.writer.drain()
    share = node.config.mailbox_max_messages_per_source_per_peer
    assert node.store.mailbox_totals(w)[0] == share == 10  # of the wallet's 100
    assert {r.source for r in node.lsp.mailbox.pending(w)} == {stranger.id}
    c = node.store.counters()
    assert c["mailbox_dropped_source_quota"] == REQUESTS * 4 // 10 - share
    assert c["mailbox_not_queued_forward_invoice_request"] == c["mailbox_not_queued_static_invoice"] == 3000
    # The payer's held_htlc_available for the wallet gets in.
    node.on_forward_fail({"source": payer.id, "next_node_id": w, "incoming": os.urandom(1366).hex(),
                          "path_key": pubkey_of(os.urandom(32)).hex()})
    node.lsp.writer.drain()
    assert {r.source for r in node.lsp.mailbox.pending(w)} == {stranger.id, payer.id}
