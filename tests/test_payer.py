"""The payer's checks without a daemon (issue 7): offers it refuses, and
hostile replies, each ending in a clean failure or ignored with a counter."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from asyncpay.blinded_path import EncryptedData
from asyncpay.crypto import pubkey_of
from asyncpay.endpoint import Delivered, Dropped
from asyncpay.offers import CHAINS, Invoice, InvoiceRequest, Offer, StaticInvoice
from asyncpay.onion_message import OnionMessagePayload, ReleaseHeldHtlc, build_path
from asyncpay.payer import PayError, PayInvoice, PayStatic
from asyncpay.payer.payer import RELEASE, REPLY, invreq_records
from test_payer_flow import attach_payer
from test_recipient_flow import Flow
from wallet import Wallet

NOW = int(time.time())


@pytest.fixture
def payer(tmp_path):
    flow = Flow(tmp_path)
    node = attach_payer(flow, tmp_path, payer_invoice_grace=0)
    return node.payer.core


# A path to the issuer's LSP, as an async offer has.
OFFER_PATH = build_path(bytes([5]) * 32, [(pubkey_of(bytes([6]) * 32), EncryptedData(next_node_id=pubkey_of(
    bytes([7]) * 32))), (pubkey_of(bytes([7]) * 32), EncryptedData(path_id=bytes(32)))])


def an_offer(**kw) -> Offer:
    fields = {"offer_description": "x", "offer_amount": 1000, "offer_issuer_id": pubkey_of(bytes([7]) * 32),
              "offer_paths": [OFFER_PATH], **kw}
    return Offer(**fields)


def requesting(payer, offer: Offer | None = None, amount=None):
    row, actions = payer.start((offer or an_offer()).to_string(), amount, None, NOW)
    return row


@pytest.mark.parametrize("text,amount,reason", [
    ("lno1qqqq", None, "malformed offer"),
    ("not an offer at all", None, "malformed offer"),
    (an_offer(offer_absolute_expiry=NOW - 1).to_string(), None, "offer expired"),
    (an_offer(offer_currency="USD").to_string(), None, "not bitcoin"),
    (an_offer(offer_chains=[CHAINS["regtest"]]).to_string(), None, "another chain"),
    (an_offer(offer_amount=None).to_string(), None, "amount_msat is required"),
    (an_offer().to_string(), 999, "below the offer"),
    (an_offer(offer_quantity_max=5).to_string(), None, "quantity"),
])
def test_offers_we_refuse(payer, text, amount, reason):
    with pytest.raises(PayError, match=reason):
        payer.check(text, amount, NOW)
    assert payer.records.all() == []


def test_each_request_is_fresh_and_signed_with_a_derived_key(payer):
    a, b = requesting(payer), requesting(payer)
    ra, rb = InvoiceRequest.decode(a.invreq), InvoiceRequest.decode(b.invreq)
    assert ra.signature_ok() and rb.signature_ok()
    assert ra.invreq_payer_id != rb.invreq_payer_id and ra.invreq_metadata != rb.invreq_metadata
    # No raw key stored: the row holds the nonce only.
    assert not any(isinstance(v, bytes) and len(v) == 32 and pubkey_of(v) == ra.invreq_payer_id
                   for v in vars(a).values())


def invoice_for(req_bytes: bytes, secret: bytes, amount: int, **kw) -> Invoice:
    req = InvoiceRequest.decode(req_bytes)
    inv = Invoice.from_records([r for r in req.to_records() if r[0] != 240], check=False)
    wallet = Wallet(pubkey_of(secret))
    wallet.issuer_secret = secret
    static = wallet.make_static_invoice(an_offer(offer_issuer_id=pubkey_of(secret)), NOW, pubkey_of(secret))
    inv.invoice_paths, inv.invoice_blindedpay = static.invoice_paths, static.invoice_blindedpay
    inv.invoice_created_at, inv.invoice_payment_hash, inv.invoice_amount = NOW, os.urandom(32), amount
    inv.invoice_node_id = pubkey_of(secret)
    for k, v in kw.items():
        setattr(inv, k, v)
    inv.sign(secret)
    return inv


def deliver(payer, row, kind, **payload) -> list:
    return payer.handle(Delivered(kind, row.id, None, OnionMessagePayload(**payload), os.urandom(32)), NOW)


ISSUER = bytes([7]) * 32


def test_a_good_invoice_is_paid_with_xpay(payer):
    row = requesting(payer)
    inv = invoice_for(row.invreq, ISSUER, 1000)
    [action] = deliver(payer, row, REPLY, invoice=inv.encode())
    assert isinstance(action, PayInvoice) and action.invoice == inv.to_string()
    assert payer.records.get(row.id).state == "paying"


@pytest.mark.parametrize("mutate,reason", [
    (lambda req: invoice_for(_other_request(), ISSUER, 1000), "invoice_mismatch"),
    (lambda req: invoice_for(req, bytes([8]) * 32, 1000), "wrong_signer"),
    (lambda req: invoice_for(req, ISSUER, 999), "invalid_invoice"),
    (lambda req: invoice_for(req, ISSUER, 1000, invoice_created_at=NOW - 10_000), "invalid_invoice"),
])
def test_hostile_invoices_are_dropped(payer, mutate, reason):
    row = requesting(payer)
    with pytest.raises(Dropped) as e:
        deliver(payer, row, REPLY, invoice=mutate(row.invreq).encode())
    assert e.value.reason == reason
    assert payer.records.get(row.id).state == "requesting"


def _other_request() -> bytes:
    secret = os.urandom(32)
    req = InvoiceRequest.from_records(an_offer().to_records() + [(0, os.urandom(16)), (88, pubkey_of(secret))],
                                      check=False)
    req.sign(secret)
    return req.encode()


def test_bad_signature_and_garbage(payer):
    row = requesting(payer)
    inv = invoice_for(row.invreq, ISSUER, 1000)
    inv.signature = bytes(64)
    for raw in (inv.encode(), b"\x00\x01garbage"):
        with pytest.raises(Dropped, match="invalid_invoice"):
            deliver(payer, row, REPLY, invoice=raw)


def static_for(offer: Offer, secret: bytes, created_at: int = NOW) -> StaticInvoice:
    wallet = Wallet(pubkey_of(secret))
    wallet.issuer_secret = secret
    return wallet.make_static_invoice(offer, created_at, pubkey_of(bytes([9]) * 32))


def resigned(inv: StaticInvoice, secret: bytes) -> StaticInvoice:
    inv.invoice_node_id = pubkey_of(secret)
    inv.sign(secret)
    return inv


def test_static_invoice_then_release_then_payment(payer):
    offer = an_offer()
    row = requesting(payer, offer)
    held = deliver(payer, row, REPLY, static_invoice=static_for(offer, ISSUER).encode())
    assert [a.purpose for a in held] == ["held_htlc_available"]
    [pay] = deliver(payer, row, RELEASE, release_held_htlc=ReleaseHeldHtlc())
    assert isinstance(pay, PayStatic) and pay.invoice_request == row.invreq
    assert payer.records.get(row.id).payment_preimage == pay.preimage  # on disk first
    # A replayed release does nothing more.
    with pytest.raises(Dropped, match="unexpected_release"):
        deliver(payer, row, RELEASE, release_held_htlc=ReleaseHeldHtlc())


@pytest.mark.parametrize("make,reason", [
    (lambda offer: static_for(dataclasses.replace(offer, offer_description="other"), ISSUER),
     "static_invoice_mismatch"),
    (lambda offer: resigned(static_for(offer, ISSUER), bytes([8]) * 32), "invalid_static_invoice"),
    (lambda offer: static_for(offer, ISSUER, created_at=NOW - 30 * 86400), "invalid_static_invoice"),
])
def test_hostile_static_invoices(payer, make, reason):
    offer = an_offer()
    row = requesting(payer, offer)
    with pytest.raises(Dropped) as e:
        deliver(payer, row, REPLY, static_invoice=make(offer).encode())
    assert e.value.reason == reason
    assert payer.records.get(row.id).state == "requesting"


def test_release_for_a_payment_not_waiting_is_ignored(payer):
    row = requesting(payer)
    with pytest.raises(Dropped, match="unexpected_release"):
        deliver(payer, row, RELEASE, release_held_htlc=ReleaseHeldHtlc())
    with pytest.raises(Dropped, match="unknown_payment"):
        payer.handle(Delivered(RELEASE, "feed", None, OnionMessagePayload(release_held_htlc=ReleaseHeldHtlc()),
                               os.urandom(32)), NOW)


def test_invoice_records_compared_are_the_requests():
    row_types = [t for t, _ in invreq_records([(0, b""), (159, b""), (160, b""), (240, b""),
                                               (1_000_000_001, b""), (3_000_000_001, b"")])]
    assert row_types == [0, 159, 1_000_000_001]
