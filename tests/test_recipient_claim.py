"""Hostile input to the recipient role (issue 6): every HTLC and message that
is ours but wrong ends in a clean failure and a counter, never an
exception; what is not ours is left to lightningd."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time

import pytest

from asyncpay.crypto import pubkey_of
from asyncpay.endpoint import Dropped
from asyncpay.offers import InvoiceRequest, Offer, StaticInvoice
from asyncpay.onion_message import HeldHtlcAvailable, OnionMessagePayload, ReleaseHeldHtlc
from asyncpay.recipient import Fail, Resolve, Wait
from test_recipient_flow import Flow


@pytest.fixture
def ready(tmp_path):
    """A recipient with a ready offer, asleep while a payer fetched its
    static invoice, then awake again; and the decisions its claimer made."""
    flow = Flow(tmp_path, recipient_mpp_timeout=30)
    flow.setserver()
    offer = flow.offer(description="hostile", amount_msat=10_000)
    flow.net.disconnect(flow.lnode, flow.rnode)
    req, onion = flow.payer.invoice_request(offer)
    flow.send(onion)
    static = StaticInvoice.decode(flow.inbox.take().static_invoice)
    flow.net.connect(flow.lnode, flow.rnode)
    flow.lsp.lsp.wait_flushes()
    flow.inbox.items.clear()  # the online invoice for the forwarded request
    seen = []
    claimer = flow.r.recipient.claimer
    decide = claimer.decide
    claimer.decide = lambda htlc, height, now: seen.append(htlc) or decide(htlc, height, now)
    return flow, offer, req, static, seen


def counters(flow) -> dict:
    return flow.r.store.counters()


def assert_failed(result, flow, reason):
    assert result.answer["result"] == "fail", result.answer
    assert result.answer["failure_message"].startswith("400f")  # incorrect_or_unknown_payment_details
    assert counters(flow)[f"claim_failed_{reason}"] == 1
    assert not flow.r.recipient.core.records.payments()


def other_request(offer: Offer, payer_secret: bytes | None = None, amount: int | None = None) -> InvoiceRequest:
    secret = payer_secret or os.urandom(32)
    req = InvoiceRequest.from_records(offer.to_records() + [(0, os.urandom(16)), (88, pubkey_of(secret))],
                                      check=False)
    req.invreq_amount = amount
    req.sign(secret)
    return req


def fresh(htlc, key, **kw):
    """Another payment over the same path: a new keysend preimage and payment hash."""
    preimage = os.urandom(32)
    payload = dataclasses.replace(htlc.payload, keysend_preimage=preimage)
    return dataclasses.replace(htlc, key=key, payment_hash=hashlib.sha256(preimage).digest(), payload=payload, **kw)


def test_static_payment_is_claimed(ready):
    flow, offer, req, static, _ = ready
    result, preimage = flow.pay_static(static, req.encode(), 10_000)
    assert result.answer == {"result": "resolve", "payment_key": preimage.hex()}


def test_wrong_preimage(ready):
    flow, offer, req, static, _ = ready
    result, _ = flow.pay_static(static, req.encode(), 10_000, payment_hash=os.urandom(32))
    assert_failed(result, flow, "wrong_preimage")


def test_missing_invoice_request(ready):
    flow, offer, req, static, _ = ready
    result, _ = flow.pay_static(static, b"", 10_000)
    assert_failed(result, flow, "invalid_invoice_request")


def test_garbage_invoice_request(ready):
    flow, offer, req, static, _ = ready
    result, _ = flow.pay_static(static, b"\xff" * 40, 10_000)
    assert_failed(result, flow, "invalid_invoice_request")


def test_request_for_another_offer(ready):
    flow, offer, req, static, _ = ready
    foreign = dataclasses.replace(offer, offer_description="someone else's")
    result, _ = flow.pay_static(static, other_request(foreign).encode(), 10_000)
    assert_failed(result, flow, "offer_mismatch")


def test_bad_signature(ready):
    flow, offer, req, static, _ = ready
    forged = other_request(offer)
    forged.signature = bytes(64)
    result, _ = flow.pay_static(static, forged.encode(), 10_000)
    assert_failed(result, flow, "invalid_invoice_request")


def test_amount_too_low(ready):
    flow, offer, req, static, _ = ready
    result, _ = flow.pay_static(static, req.encode(), 9_999)
    assert_failed(result, flow, "amount_too_low")


def test_request_amount_below_offer(ready):
    flow, offer, req, static, _ = ready
    result, _ = flow.pay_static(static, other_request(offer, amount=5_000).encode(), 10_000)
    assert_failed(result, flow, "invalid_invoice_request")


def test_replayed_htlc_is_resolved_again_and_recorded_once(ready):
    flow, offer, req, static, seen = ready
    result, preimage = flow.pay_static(static, req.encode(), 10_000)
    assert result.answer["result"] == "resolve"
    # lightningd replays the same HTLC after a restart: same verdict, one record.
    [(key, verdict)] = flow.r.recipient.claimer.decide(seen[0], flow.net.height, int(time.time()))
    assert verdict == Resolve(preimage) and key == seen[0].key
    assert len(flow.r.recipient.core.records.payments()) == 1
    assert counters(flow)["claim_replayed"] == 1


def test_expired_context(ready):
    flow, offer, req, static, seen = ready
    flow.pay_static(static, req.encode(), 10_000)
    htlc = fresh(seen[0], ("1x1x1", 99))
    far = int(time.time()) + 400 * 86400
    [(_, verdict)] = flow.r.recipient.claimer.decide(htlc, flow.net.height, far)
    assert isinstance(verdict, Fail) and verdict.reason == "expired_path_id"
    assert counters(flow)["claim_failed_expired_path_id"] == 1


def test_unknown_context_is_not_ours(ready):
    flow, offer, req, static, seen = ready
    flow.pay_static(static, req.encode(), 10_000)
    data = dataclasses.replace(seen[0].data, path_id=os.urandom(32))
    htlc = fresh(seen[0], ("x", 3), data=data)
    assert not flow.r.recipient.claimer.is_ours(data, htlc.payment_hash, int(time.time()))
    # Nor is a payment already received, over a path that is not the one it was paid over.
    assert not flow.r.recipient.claimer.is_ours(data, seen[0].payment_hash, int(time.time()))
    [(_, verdict)] = flow.r.recipient.claimer.decide(htlc, flow.net.height, int(time.time()))
    assert isinstance(verdict, Fail) and counters(flow)["claim_failed_unknown_path_id"] == 1


def test_cltv_too_soon_and_too_far(ready):
    flow, offer, req, static, seen = ready
    flow.pay_static(static, req.encode(), 10_000)
    h = seen[0]
    now = int(time.time())
    [(_, soon)] = flow.r.recipient.claimer.decide(fresh(h, ("x", 1)), h.cltv_expiry, now)
    [(_, far)] = flow.r.recipient.claimer.decide(fresh(h, ("x", 2), cltv_expiry=10**8), flow.net.height, now)
    assert (soon.reason, far.reason) == ("cltv_too_soon", "cltv_too_far")


def test_multi_part_payment_waits_for_the_total(ready):
    flow, offer, req, static, seen = ready
    preimage = os.urandom(32)
    payment_hash = hashlib.sha256(preimage).digest()
    parts = [flow.pay(static.invoice_paths, static.invoice_blindedpay, amt, payment_hash, total_msat=10_000,
                      keysend_preimage=preimage, invoice_request=req.encode()) for amt in (4_000, 6_000)]
    assert parts[0].answer == parts[1].answer == {"result": "resolve", "payment_key": preimage.hex()}
    [pay] = flow.r.recipient.core.records.payments()
    assert pay["amount_msat"] >= 10_000


def test_multi_part_payment_times_out(ready):
    flow, offer, req, static, seen = ready
    preimage = os.urandom(32)
    payment_hash = hashlib.sha256(preimage).digest()
    part = flow.pay(static.invoice_paths, static.invoice_blindedpay, 4_000, payment_hash, total_msat=10_000,
                    keysend_preimage=preimage, invoice_request=req.encode())
    assert part.answer is None  # held, waiting for the rest
    assert isinstance(flow.r.recipient.claimer.decide(
        dataclasses.replace(seen[0], key=("y", 1)), flow.net.height, int(time.time()))[0][1], Wait)
    flow.r.recipient.on_block(flow.net.height, int(time.time()) + 31)
    assert part.answer["result"] == "fail" and part.answer["failure_message"].startswith("400f")
    assert counters(flow)["claim_failed_mpp_timeout"] == 1
    assert not flow.r.recipient.core.records.payments()


def test_held_htlc_available_on_a_path_not_ours_is_dropped(ready):
    flow, offer, req, static, _ = ready
    before = counters(flow).get("recipient_releases", 0)
    # A path that looks like ours (it ends at our endpoint) but was never minted.
    fake = flow.r.endpoint.mint_path("recipient:held", "0", 0, int(time.time()) + 60, int(time.time()),
                                   via=(flow.lnode.node_id,))
    flow.r.store.conn.execute("DELETE FROM path_contexts WHERE kind = 'recipient:held' AND expires_at < ?",
                              (int(time.time()) + 120,))
    held = OnionMessagePayload(held_htlc_available=HeldHtlcAvailable(), reply_path=flow.payer.reply_path())
    flow.send(flow.payer.onion_to(fake, held))
    assert not flow.inbox.items and counters(flow).get("recipient_releases", 0) == before
    assert counters(flow)["dropped_unknown_path_id"] >= 1


def test_messages_on_the_wrong_path_are_dropped(ready):
    flow, offer, req, static, _ = ready
    core = flow.r.recipient.core
    persisted = core.endpoint.mint_path("recipient:persisted", "0", 0, int(time.time()) + 60, int(time.time()),
                                        via=(flow.lnode.node_id,))
    msg = OnionMessagePayload(release_held_htlc=ReleaseHeldHtlc(), reply_path=flow.payer.reply_path())
    flow.send(flow.payer.onion_to(persisted, msg))
    assert counters(flow)["dropped_unexpected_message"] == 1
    # And the core says why, without raising anything but Dropped.
    with pytest.raises(Dropped, match="unknown_slot"):
        core._slot_row(type("D", (), {"slot": 7})())
