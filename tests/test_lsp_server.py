"""The static invoice server and mailbox on their own (no network): every
path of the state machines, hostile input included."""

from __future__ import annotations

import os

import pytest

from asyncpay.blinded_path import EncryptedData
from asyncpay.crypto import pubkey_of
from asyncpay.lsp import Endpoint, LspConfig, Mailbox, StaticInvoiceServer
from asyncpay.offers import StaticInvoice
from asyncpay.onion_message import (
    Forward,
    OnionMessage,
    OnionMessagePayload,
    Receive,
    build_path,
    peel_onion_message,
)
from asyncpay.onion_message.async_payments import OfferPathsRequest
from asyncpay.store import Store
from wallet import Wallet

NOW = 1_800_000_000
LSP_SECRET = bytes([0x41]) * 32
LSP_ID = pubkey_of(LSP_SECRET)
PEER_SECRET = bytes([0x42]) * 32
PEER_ID = pubkey_of(PEER_SECRET)


class Lsp:
    def __init__(self, tmp_path, **limits) -> None:
        self.store = Store(str(tmp_path / "lsp.sqlite3"))
        self.config = LspConfig(**limits)
        self.endpoint = Endpoint(self.store, LSP_ID, bytes([0x43]) * 32, os.urandom)
        self.server = StaticInvoiceServer(self.store, self.endpoint, self.config, lambda intro: None)

    def to_v(self, wallet: Wallet, dest, payload: OnionMessagePayload) -> OnionMessage:
        """The onion CLN reports for V once the wallet's message crossed our node."""
        pk, pkt = wallet.onion_to(dest, payload)
        msg = OnionMessage(pk, pkt)
        for secret in (PEER_SECRET, LSP_SECRET):  # the wallet's node, then ours
            out = peel_onion_message(secret, msg)
            assert isinstance(out, Forward)
            msg = out.message
        assert out.next_node_id == self.endpoint.public_key
        return msg

    def deliver(self, wallet: Wallet, dest, payload, now=NOW):
        return self.server.handle(self.to_v(wallet, dest, payload), now)

    def dropped(self, reason: str) -> int:
        return self.store.counters().get(f"dropped_{reason}", 0)

    def open_reply(self, wallet: Wallet, action) -> OnionMessagePayload:
        """Follow an InjectOnion through our node and the wallet's node to the wallet."""
        msg = OnionMessage(action.path_key, action.packet)
        for secret in (LSP_SECRET, PEER_SECRET, wallet.secret):
            out = peel_onion_message(secret, msg)
            if isinstance(out, Receive):
                return out.payload
            msg = out.message
        raise AssertionError("reply never reached the wallet")

    def handshake(self, wallet: Wallet, recipient_id: str, slot: int = 0):
        p_req = self.server.recipient_paths(recipient_id, 1, 3600, NOW)[0]
        req = OnionMessagePayload(offer_paths_request=OfferPathsRequest(invoice_slot=slot),
                                  reply_path=wallet.reply_path())
        [action] = self.deliver(wallet, p_req, req)
        reply = self.open_reply(wallet, action)
        return reply.offer_paths.paths, reply.reply_path

    def serve(self, wallet: Wallet, p_serve, invoice: StaticInvoice, now=NOW):
        from asyncpay.onion_message import ServeStaticInvoice

        payload = OnionMessagePayload(
            serve_static_invoice=ServeStaticInvoice(invoice=invoice.encode(),
                                                    forward_invoice_request_path=wallet.reply_path()),
            reply_path=wallet.reply_path())
        return self.deliver(wallet, p_serve, payload, now)


@pytest.fixture
def lsp(tmp_path):
    return Lsp(tmp_path)


@pytest.fixture
def alice():
    return Wallet(PEER_ID)


def persisted(lsp: Lsp, wallet: Wallet, slot: int = 0, recipient: str = "alice"):
    paths, p_serve = lsp.handshake(wallet, recipient, slot)
    offer = wallet.make_offer(paths)
    inv = wallet.make_static_invoice(offer, NOW, LSP_ID)
    [ack] = lsp.serve(wallet, p_serve, inv)
    assert lsp.open_reply(wallet, ack).static_invoice_persisted is not None
    return offer, inv, p_serve


def test_recipient_paths_end_at_v(lsp):
    [p] = lsp.server.recipient_paths("alice", 1, 3600, NOW)
    assert p.introduction.node_id == LSP_ID and len(p.hops) == 2
    # Both hops' encrypted data have the same length (padding).
    assert len(p.hops[0].encrypted_data) == len(p.hops[1].encrypted_data)
    with pytest.raises(ValueError):
        lsp.server.recipient_paths("alice", 0, 3600, NOW)
    with pytest.raises(ValueError):
        lsp.server.recipient_paths("", 1, 3600, NOW)


def test_full_exchange(lsp, alice):
    offer, inv, _ = persisted(lsp, alice)
    assert [r["invoice"] for r in lsp.store.list_invoices("alice")] == [inv.encode()]
    payer = Wallet(PEER_ID)
    req, _ = payer.invoice_request(offer)
    actions = lsp.deliver(payer, offer.offer_paths[0],
                          OnionMessagePayload(invoice_request=req.encode(), reply_path=payer.reply_path()))
    assert [a.purpose for a in actions] == ["static_invoice", "forward_invoice_request"]
    assert lsp.open_reply(payer, actions[0]).static_invoice == inv.encode()
    fwd = lsp.open_reply(alice, actions[1])
    assert fwd.invoice_request == req.encode() and fwd.reply_path is not None


def test_replacing_a_slot(lsp, alice):
    offer, first, p_serve = persisted(lsp, alice)
    second = alice.make_static_invoice(offer, NOW + 10, LSP_ID)
    lsp.serve(alice, p_serve, second, now=NOW + 10)
    rows = lsp.store.list_invoices("alice")
    assert [r["invoice"] for r in rows] == [second.encode()]


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 50, os.urandom(1366)])
def test_garbage_for_v(lsp, garbage):
    assert lsp.server.handle(OnionMessage(pubkey_of(os.urandom(32)), garbage), NOW) == []
    assert lsp.dropped("undecodable") == 1


def test_unknown_path_id(lsp, alice):
    forged = build_path(os.urandom(32), [(LSP_ID, EncryptedData(next_node_id=lsp.endpoint.public_key)),
                                         (lsp.endpoint.public_key, EncryptedData(path_id=os.urandom(32)))])
    req = OnionMessagePayload(offer_paths_request=OfferPathsRequest(invoice_slot=0), reply_path=alice.reply_path())
    assert lsp.deliver(alice, forged, req) == []
    assert lsp.dropped("unknown_path_id") == 1


def test_expired_path_id(lsp, alice):
    [p] = lsp.server.recipient_paths("alice", 1, 60, NOW)
    req = OnionMessagePayload(offer_paths_request=OfferPathsRequest(invoice_slot=0), reply_path=alice.reply_path())
    assert lsp.deliver(alice, p, req, now=NOW + 60) == []
    assert lsp.dropped("expired_path_id") == 1


def test_slot_out_of_range_and_missing_reply_path(lsp, alice):
    [p] = lsp.server.recipient_paths("alice", 1, 3600, NOW)
    big = OnionMessagePayload(offer_paths_request=OfferPathsRequest(invoice_slot=lsp.config.max_slots_per_recipient),
                              reply_path=alice.reply_path())
    assert lsp.deliver(alice, p, big) == []
    assert lsp.deliver(alice, p, OnionMessagePayload(offer_paths_request=OfferPathsRequest(invoice_slot=0))) == []
    assert (lsp.dropped("slot_out_of_range"), lsp.dropped("no_reply_path")) == (1, 1)


def test_wrong_message_for_the_path(lsp, alice):
    offer, inv, _ = persisted(lsp, alice)
    [p_req] = lsp.server.recipient_paths("alice", 1, 3600, NOW)
    req, _ = Wallet(PEER_ID).invoice_request(offer)
    payload = OnionMessagePayload(invoice_request=req.encode(), reply_path=alice.reply_path())
    assert lsp.deliver(alice, p_req, payload) == []
    assert lsp.dropped("unexpected_message") == 1


def test_bad_signature_is_not_stored(lsp, alice):
    paths, p_serve = lsp.handshake(alice, "alice")
    inv = alice.make_static_invoice(alice.make_offer(paths), NOW, LSP_ID)
    inv.signature = bytes(64)
    assert lsp.serve(alice, p_serve, inv) == []
    assert lsp.dropped("invalid_invoice") == 1 and lsp.store.list_invoices() == []


def test_expired_invoice_is_not_stored(lsp, alice):
    paths, p_serve = lsp.handshake(alice, "alice")
    inv = alice.make_static_invoice(alice.make_offer(paths), NOW - 30 * 24 * 3600, LSP_ID)
    assert lsp.serve(alice, p_serve, inv) == []
    assert lsp.dropped("invalid_invoice") == 1


def test_recipient_cannot_write_another_recipients_slot(lsp, alice):
    alice_paths, _ = lsp.handshake(alice, "alice", 0)
    bob = Wallet(PEER_ID)
    _, bob_serve = lsp.handshake(bob, "bob", 0)
    # Bob serves an invoice for an offer built on Alice's offer paths.
    inv = bob.make_static_invoice(bob.make_offer(alice_paths), NOW, LSP_ID)
    assert lsp.serve(bob, bob_serve, inv) == []
    assert lsp.dropped("foreign_offer_path") == 1
    assert lsp.store.list_invoices() == []


def test_recipient_cannot_cross_its_own_slots(lsp, alice):
    slot1_paths, _ = lsp.handshake(alice, "alice", 1)
    _, slot0_serve = lsp.handshake(alice, "alice", 0)
    inv = alice.make_static_invoice(alice.make_offer(slot1_paths), NOW, LSP_ID)
    assert lsp.serve(alice, slot0_serve, inv) == []
    assert lsp.dropped("foreign_offer_path") == 1


def test_invoice_size_limit(tmp_path, alice):
    lsp = Lsp(tmp_path, max_invoice_bytes=500)
    paths, p_serve = lsp.handshake(alice, "alice")
    inv = alice.make_static_invoice(alice.make_offer(paths), NOW, LSP_ID)
    assert lsp.serve(alice, p_serve, inv) == []
    assert lsp.dropped("invoice_too_large") == 1


def test_persist_rate_limit(tmp_path, alice):
    lsp = Lsp(tmp_path, persist_burst=3, persist_rate=0.001)
    [p] = lsp.server.recipient_paths("alice", 1, 3600, NOW)
    req = OnionMessagePayload(offer_paths_request=OfferPathsRequest(invoice_slot=0), reply_path=alice.reply_path())
    results = [lsp.deliver(alice, p, req) for _ in range(5)]
    assert [len(r) for r in results] == [1, 1, 1, 0, 0]
    assert lsp.dropped("rate_limited_persist") == 2
    # Another recipient is not affected.
    [q] = lsp.server.recipient_paths("bob", 1, 3600, NOW)
    assert len(lsp.deliver(alice, q, req)) == 1


def test_serve_rate_limit(tmp_path, alice):
    lsp = Lsp(tmp_path, serve_burst=2, serve_rate=0.001)
    offer, _, _ = persisted(lsp, alice)
    payer = Wallet(PEER_ID)
    req, _ = payer.invoice_request(offer)
    payload = OnionMessagePayload(invoice_request=req.encode(), reply_path=payer.reply_path())
    assert [len(lsp.deliver(payer, offer.offer_paths[0], payload)) for _ in range(4)] == [2, 2, 0, 0]
    assert lsp.dropped("rate_limited_serve") == 2


def test_invoice_request_checks(lsp, alice):
    offer, _, _ = persisted(lsp, alice)
    payer = Wallet(PEER_ID)
    path = offer.offer_paths[0]
    # For another offer (different description) than the stored invoice's.
    other = alice.make_offer(offer.offer_paths)
    other.offer_description = "something else"
    req, _ = payer.invoice_request(other)
    assert lsp.deliver(payer, path, OnionMessagePayload(invoice_request=req.encode(),
                                                        reply_path=payer.reply_path())) == []
    # A bad signature.
    req, _ = payer.invoice_request(offer)
    req.signature = bytes(64)
    assert lsp.deliver(payer, path, OnionMessagePayload(invoice_request=req.encode(),
                                                        reply_path=payer.reply_path())) == []
    # Garbage where the request should be.
    assert lsp.deliver(payer, path, OnionMessagePayload(invoice_request=b"\x00\x01",
                                                        reply_path=payer.reply_path())) == []
    assert (lsp.dropped("offer_mismatch"), lsp.dropped("invalid_invoice_request")) == (1, 2)
    # No invoice stored for the slot any more.
    assert lsp.store.delete_invoice("alice", 0)
    req, _ = payer.invoice_request(offer)
    assert lsp.deliver(payer, path, OnionMessagePayload(invoice_request=req.encode(),
                                                        reply_path=payer.reply_path())) == []
    assert lsp.dropped("no_invoice") == 1


def test_two_messages_in_one_payload(lsp, alice):
    [p] = lsp.server.recipient_paths("alice", 1, 3600, NOW)
    payload = OnionMessagePayload(offer_paths_request=OfferPathsRequest(invoice_slot=0), invoice_request=b"x",
                                  reply_path=alice.reply_path())
    assert lsp.deliver(alice, p, payload) == []
    assert lsp.dropped("bad_payload") == 1


# --- mailbox ---------------------------------------------------------------

def _mailbox(tmp_path, **limits) -> Mailbox:
    return Mailbox(Store(str(tmp_path / "mb.sqlite3")), LspConfig(**limits))


def test_mailbox_limits(tmp_path):
    mb = _mailbox(tmp_path, mailbox_max_messages_per_peer=3, mailbox_max_bytes_per_peer=10_000,
                  mailbox_max_messages=5, mailbox_intake_burst=1000)
    key = pubkey_of(os.urandom(32))
    reasons = [mb.intake("p1", "s", key, os.urandom(100), NOW) for _ in range(4)]
    assert reasons == [None, None, None, "peer_messages"]
    assert mb.intake("p2", "s", key, os.urandom(20_000), NOW) == "peer_bytes"
    assert [mb.intake("p2", "s", key, os.urandom(100), NOW) for _ in range(3)] == [None, None, "full"]
    assert mb.store.mailbox_totals() == (5, 500)
    c = mb.store.counters()
    assert (c["mailbox_buffered"], c["mailbox_dropped_peer_messages"], c["mailbox_dropped_full"]) == (5, 1, 1)


def test_mailbox_source_rate_limit(tmp_path):
    mb = _mailbox(tmp_path, mailbox_intake_burst=3, mailbox_intake_rate=0.001)
    key = pubkey_of(os.urandom(32))
    got = [mb.intake("p1", "flooder", key, os.urandom(50), NOW) for _ in range(5)]
    assert got == [None, None, None, "rate_limited", "rate_limited"]
    assert mb.intake("p1", "someone-else", key, os.urandom(50), NOW) is None


def test_mailbox_duplicates_and_ttl(tmp_path):
    mb = _mailbox(tmp_path, mailbox_ttl=100)
    key, onion = pubkey_of(os.urandom(32)), os.urandom(80)
    assert mb.intake("p1", None, key, onion, NOW) is None
    assert mb.intake("p1", None, key, onion, NOW) is None
    assert mb.store.mailbox_totals() == (1, 80)
    assert mb.store.counters()["mailbox_duplicate"] == 1
    mb.intake("p1", None, key, os.urandom(80), NOW + 50)
    assert mb.expire(NOW + 120) == 1
    assert mb.store.mailbox_totals() == (1, 80)
    assert mb.store.counters()["mailbox_expired"] == 1
    # The in-memory totals follow the table.
    assert mb.total == [1, 80] and mb.per_peer == {"p1": [1, 80]}


def test_mailbox_qualifying_peers(tmp_path, lsp):
    mb = Mailbox(lsp.store, lsp.config)
    assert mb.qualifies("stranger", has_channel=True)
    assert not mb.qualifies("stranger", has_channel=False)
    lsp.server.recipient_paths(PEER_ID.hex(), 1, 3600, NOW)
    assert mb.qualifies(PEER_ID.hex(), has_channel=False)


def test_flush_schedule(tmp_path):
    from asyncpay.lsp import Flush
    from asyncpay.lsp.mailbox import Send, Wait

    mb = _mailbox(tmp_path, mailbox_flush_interval_ms=300)
    key = pubkey_of(os.urandom(32))
    for i in range(3):
        mb.intake("p1", None, key, bytes([i]) * 10, NOW)
    f = Flush(mb, "p1", now=0.0)
    step = f.poll(0.0)
    assert isinstance(step, Send) and step.row.onion == bytes([0]) * 10
    f.result(step.row, True, 0.0)
    assert f.poll(0.1) == Wait(pytest.approx(0.2))
    step = f.poll(0.3)
    with pytest.raises(ValueError):
        f.result(mb.pending("p1")[1], True, 0.3)
    f.result(step.row, False, 0.3)  # failure stops the flush, mail stays
    assert f.poll(10.0) is None
    assert mb.store.mailbox_totals("p1")[0] == 2


# --- serve rate limits (audit) and the onion HMAC ----------------------------

def _from(lsp: Lsp, wallet: Wallet, dest, payload, source: str | None, now=NOW):
    """As ``deliver``, with the peer that handed us the message known."""
    import dataclasses

    from asyncpay.lsp import Dropped

    d = lsp.endpoint.open(lsp.to_v(wallet, dest, payload), now)
    try:
        return lsp.server.dispatch(dataclasses.replace(d, source=source), now)
    except Dropped as e:  # counted as the router does
        lsp.store.bump(f"dropped_{e.reason}")
        return []


def test_rejected_invoice_requests_take_no_serve_token(tmp_path, alice):
    lsp = Lsp(tmp_path, serve_burst=2, serve_rate=0.001)
    offer, inv, _ = persisted(lsp, alice)
    payer = Wallet(PEER_ID)
    path = offer.offer_paths[0]
    for _ in range(10):  # garbage and forged requests before any valid one
        bad, _ = payer.invoice_request(offer)
        bad.signature = bytes(64)
        assert lsp.deliver(payer, path, OnionMessagePayload(invoice_request=bad.encode(),
                                                            reply_path=payer.reply_path())) == []
    req, _ = payer.invoice_request(offer)
    good = OnionMessagePayload(invoice_request=req.encode(), reply_path=payer.reply_path())
    assert [len(lsp.deliver(payer, path, good)) for _ in range(3)] == [2, 2, 0]
    assert (lsp.dropped("invalid_invoice_request"), lsp.dropped("rate_limited_serve")) == (10, 1)


def test_one_source_cannot_use_up_a_recipients_serve_budget(tmp_path, alice):
    lsp = Lsp(tmp_path, serve_burst=20, serve_rate=0.001, serve_source_burst=5, serve_source_rate=0.001)
    offer, _, _ = persisted(lsp, alice)
    payer = Wallet(PEER_ID)
    req, _ = payer.invoice_request(offer)
    good = OnionMessagePayload(invoice_request=req.encode(), reply_path=payer.reply_path())
    path = offer.offer_paths[0]
    got = [len(_from(lsp, payer, path, good, "stranger")) for _ in range(8)]
    assert got == [2] * 5 + [0] * 3
    assert lsp.dropped("rate_limited_serve_source") == 3
    # Another source still gets answers: the stranger took 5 of the recipient's 20.
    assert len(_from(lsp, payer, path, good, "payers-lsp")) == 2


def test_onion_hmac_is_compared_in_constant_time(monkeypatch):
    import hmac as std_hmac

    from asyncpay.crypto import sphinx

    calls = []
    real = std_hmac.compare_digest
    monkeypatch.setattr(sphinx.hmac, "compare_digest", lambda a, b: (calls.append(1), real(a, b))[1])
    pkt = sphinx.build_packet(os.urandom(32), [(PEER_ID, b"\x02\x01\x00")])
    assert sphinx.peel_packet(PEER_SECRET, pkt).is_final
    tampered = pkt[:-1] + bytes([pkt[-1] ^ 1])
    with pytest.raises(Exception, match="HMAC mismatch"):
        sphinx.peel_packet(PEER_SECRET, tampered)
    assert len(calls) == 2
