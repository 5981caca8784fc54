"""The payer's checks without a daemon (issue 7): offers it refuses, and
hostile replies, each ending in a clean failure or ignored with a counter."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from asyncpay.blinded_path import (
    BlindedHop,
    BlindedPath,
    BlindedPayInfo,
    BlindedPaymentPath,
    EncryptedData,
    IntroductionNode,
)
from asyncpay.crypto import pubkey_of
from asyncpay.endpoint import Delivered, Dropped
from asyncpay.offers import CHAINS, Invoice, InvoiceRequest, Offer, StaticInvoice
from asyncpay.onion_message import OnionMessagePayload, ReleaseHeldHtlc, build_path
from asyncpay.payer import Payer, PayerConfig, PayError, PayInvoice, PayStatic
from asyncpay.payer.budget import Budget, OverBudget, check_route, check_sent, screen
from asyncpay.payer.payer import RELEASE, REPLY, invreq_records
from asyncpay.payer.records import MIGRATIONS, PayerRecords
from asyncpay.payment.route import RouteHop, to_introduction
from asyncpay.store import Store
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


# -- budget, features, resends (review items 1, 8, 12; CLTV cap; held resend) --

CHEAP = BlindedPayInfo(1000, 1000, 288, 1, 999_000_000)


def pay_path(info: BlindedPayInfo) -> BlindedPaymentPath:
    hops = tuple(BlindedHop(pubkey_of(os.urandom(32)), os.urandom(40)) for _ in range(2))
    return BlindedPaymentPath(BlindedPath(IntroductionNode(node_id=pubkey_of(bytes([9]) * 32)),
                                          pubkey_of(os.urandom(32)), hops), info)


def static_with(offer: Offer, infos: list[BlindedPayInfo], features: bytes | None = None,
                created_at: int = NOW) -> StaticInvoice:
    """A static invoice signed by the issuer with one payment path per payinfo."""
    held = build_path(os.urandom(32), [(pubkey_of(bytes([9]) * 32), EncryptedData(next_node_id=pubkey_of(ISSUER))),
                                       (pubkey_of(os.urandom(32)), EncryptedData(path_id=os.urandom(32)))])
    return StaticInvoice.build(offer, [pay_path(i) for i in infos], [held], created_at, ISSUER, features=features)


def test_static_payment_over_fee_cap_is_skipped(payer):
    """The review's case: 30,000 msat, cap 5,000 + 1% = 5,300 msat, a blinded
    path charging 2,000,003 msat. Before the fix 2,030,003 msat went out; now
    the payment fails before held_htlc_available, with the reason."""
    offer = an_offer(offer_amount=None)
    row = requesting(payer, offer, 30_000)
    expensive = BlindedPayInfo(2_000_000, 100, 40, 1, 10**10)
    assert deliver(payer, row, REPLY, static_invoice=static_with(offer, [expensive]).encode()) == []
    got = payer.records.get(row.id)
    assert got.state == "failed" and got.payment_preimage is None
    assert "blinded path fee 2000003 msat is over the cap of 5300 msat" in got.reason
    assert payer.store.counters()["payer_paths_over_budget"] == 1


def test_only_paths_within_the_caps_are_tried(payer):
    offer = an_offer(offer_amount=None)
    row = requesting(payer, offer, 30_000)
    static = static_with(offer, [BlindedPayInfo(2_000_000, 100, 40, 1, 10**10), CHEAP,
                                 BlindedPayInfo(0, 0, 3000, 1, 10**10)])
    deliver(payer, row, REPLY, static_invoice=static.encode())
    [pay] = deliver(payer, row, RELEASE, release_held_htlc=ReleaseHeldHtlc())
    assert [p.payinfo for p in pay.paths] == [CHEAP]
    assert pay.budget == Budget(5300, 2016, 0)
    assert [s.split(":")[0] for s in pay.skipped] == ["path 0", "path 2"]
    assert "over the cap of 2016" in pay.skipped[1]


def route_to(path: BlindedPaymentPath, amount: int, height: int, budget: Budget, fee=0, delta=0) -> list[RouteHop]:
    """askrene's route of one channel to the introduction node, with a fee
    and CLTV delta of its own on top (askrene may ignore its limits)."""
    a, c = to_introduction(path, amount, budget.final_cltv(height))
    return [RouteHop(1, bytes(33), a + fee, c + delta), RouteHop(2, bytes(33), a, c)]


def test_askrene_route_over_the_fee_cap_is_refused():
    budget, path, height = Budget(5300, 2016), pay_path(CHEAP), 800_000
    blinded_fee = 1000 + 30  # CHEAP on 30,000 msat
    ok = check_route(path, 30_000, budget, route_to(path, 30_000, height, budget, fee=5300 - blinded_fee), height)
    assert ok.fee_msat == 5300 and ok.sent_msat == 35_300
    with pytest.raises(OverBudget, match="5301 msat .* over the cap of 5300"):
        check_route(path, 30_000, budget, route_to(path, 30_000, height, budget, fee=5301 - blinded_fee), height)
    # A route that does not deliver what the path needs, or grows along its hops.
    short = route_to(path, 30_000, height, budget)
    with pytest.raises(OverBudget, match="does not deliver"):
        check_route(path, 30_000, budget, [dataclasses.replace(short[-1], amount_msat=30_000)], height)
    with pytest.raises(OverBudget, match="grows"):
        check_route(path, 30_000, budget, [short[1], dataclasses.replace(short[0], amount_msat=10**9)], height)


def test_built_onion_over_the_cap_is_not_injected():
    """The last guard before injectpaymentonion: what we inject minus the amount."""
    budget = Budget(5300, 2016)
    assert check_sent(35_300, 800_000 + 2016, 30_000, budget, 800_000).fee_msat == 5300
    with pytest.raises(OverBudget, match="fee 2000003"):
        check_sent(2_030_003, 800_100, 30_000, budget, 800_000)
    with pytest.raises(OverBudget, match="2017 blocks"):
        check_sent(30_000, 800_000 + 2017, 30_000, budget, 800_000)


def test_static_path_over_cltv_cap_is_skipped(payer):
    """asyncpay-payer-max-cltv (2016, xpay's maxdelay): the next block plus
    the path's 2016 blocks is one too many; nothing is sent."""
    offer = an_offer()
    row = requesting(payer, offer)
    assert deliver(payer, row, REPLY, static_invoice=static_with(offer, [BlindedPayInfo(0, 0, 2016, 1, 10**10)])
                   .encode()) == []
    got = payer.records.get(row.id)
    assert got.state == "failed" and "blinded path needs 2017 blocks, over the cap of 2016" in got.reason


def test_cltv_cap_counts_the_tip_the_path_and_the_hold():
    budget = Budget(10**9, 2016, hold_blocks=1008)
    screen(pay_path(BlindedPayInfo(0, 0, 1007, 1, 10**10)), 1000, budget)  # 1 + 1008 + 1007 = 2016
    with pytest.raises(OverBudget, match="2017 blocks"):
        screen(pay_path(BlindedPayInfo(0, 0, 1008, 1, 10**10)), 1000, budget)
    limits = screen(pay_path(BlindedPayInfo(0, 0, 7, 1, 10**10)), 1000, budget)
    assert limits.maxdelay == 2016 - 1 - 1008 and limits.final_cltv == 7


def test_static_invoice_with_unknown_required_feature_is_refused(payer):
    """BOLT 12: MUST reject an invoice whose invoice_features has unknown even bits."""
    offer = an_offer()
    row = requesting(payer, offer)
    with pytest.raises(Dropped, match="unknown required feature 20") as e:
        deliver(payer, row, REPLY, static_invoice=static_with(offer, [CHEAP], features=bytes([0x10, 0, 0])).encode())
    assert e.value.reason == "invalid_static_invoice"
    assert payer.records.get(row.id).state == "requesting"
    # Odd (optional) bits, and basic_mpp required (16), are fine.
    row = requesting(payer, offer)
    held = deliver(payer, row, REPLY, static_invoice=static_with(offer, [CHEAP], features=bytes([0x21, 0, 0]))
                   .encode())
    assert held and payer.records.get(row.id).state == "awaiting_release"


def test_static_invoice_path_with_unknown_payinfo_feature_is_not_used(payer):
    """BOLT 12: MUST NOT use a path whose payinfo features have unknown even bits."""
    offer = an_offer()
    row = requesting(payer, offer)
    odd = dataclasses.replace(CHEAP, features=b"\x02")
    static = static_with(offer, [dataclasses.replace(CHEAP, features=b"\x01"), odd])
    deliver(payer, row, REPLY, static_invoice=static.encode())
    [pay] = deliver(payer, row, RELEASE, release_held_htlc=ReleaseHeldHtlc())
    assert [p.payinfo for p in pay.paths] == [odd]
    assert "path 0: payinfo requires unknown feature 0" in pay.skipped


def test_static_invoice_with_no_usable_path_is_refused(payer):
    """BOLT 12: reject the invoice when unknown payinfo features leave no path."""
    offer = an_offer()
    row = requesting(payer, offer)
    bad = dataclasses.replace(CHEAP, features=b"\x04")
    with pytest.raises(Dropped, match="no payment path") as e:
        deliver(payer, row, REPLY, static_invoice=static_with(offer, [bad, bad]).encode())
    assert e.value.reason == "invalid_static_invoice" and payer.records.get(row.id).state == "requesting"


def test_invoice_with_no_usable_path_is_refused(payer):
    row = requesting(payer)
    inv = invoice_for(row.invreq, ISSUER, 1000)
    inv.invoice_blindedpay = [dataclasses.replace(i, features=b"\x01") for i in inv.invoice_blindedpay]
    inv.sign(ISSUER)
    with pytest.raises(Dropped, match="no payment path"):
        deliver(payer, row, REPLY, invoice=inv.encode())


def test_invoice_payment_carries_the_caps_to_xpay(payer):
    row = requesting(payer)
    [pay] = deliver(payer, row, REPLY, invoice=invoice_for(row.invreq, ISSUER, 1000,
                                                           invoice_features=bytes([0x01, 0, 0])).encode())
    assert (pay.max_fee_msat, pay.max_delay) == (5000 + 10, 2016)  # basic_mpp required is known


def test_held_htlc_available_is_resent_with_backoff(payer):
    """One lost held_htlc_available must not leave the payment waiting: it
    goes again at 30 s, 60 s, 120 s … up to an hour between sends."""
    offer = an_offer()
    row = requesting(payer, offer)
    assert len(deliver(payer, row, REPLY, static_invoice=static_with(offer, [CHEAP]).encode())) == 1
    sends, t = [], NOW
    for _ in range(10):
        t = payer.records.get(row.id).next_at
        assert payer.tick(t - 1) == ([], [])
        actions, failed = payer.tick(t)
        assert [a.purpose for a in actions] == ["held_htlc_available"] and failed == []
        sends.append(t)
    gaps = [b - a for a, b in zip([NOW, *sends], sends)]
    assert gaps == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert payer.store.counters()["payer_held_resent"] == 10


def test_restart_resends_held_htlc_available_once(payer, tmp_path):
    offer = an_offer()
    row = requesting(payer, offer)
    deliver(payer, row, REPLY, static_invoice=static_with(offer, [CHEAP]).encode())
    restarted = Payer(payer.store, payer.endpoint, payer.config, payer.key_base, payer.resolve_intro)
    [again] = restarted.resume_holds(NOW + 1)
    assert again.purpose == "held_htlc_available"
    assert restarted.resume_holds(NOW + 1) != [] and restarted.records.get(row.id).held_sends == 3


def test_release_after_a_resend_pays_once(payer):
    """Two releases (one per held_htlc_available sent) pay once: the second
    is unexpected_release."""
    offer = an_offer()
    row = requesting(payer, offer)
    deliver(payer, row, REPLY, static_invoice=static_with(offer, [CHEAP]).encode())
    payer.tick(payer.records.get(row.id).next_at)
    [pay] = deliver(payer, row, RELEASE, release_held_htlc=ReleaseHeldHtlc())
    assert isinstance(pay, PayStatic)
    with pytest.raises(Dropped, match="unexpected_release"):
        deliver(payer, row, RELEASE, release_held_htlc=ReleaseHeldHtlc())
    assert payer.tick(NOW + 10**6)[0] == []  # and no more resends once paying


def test_wait_for_the_release_is_bounded(payer):
    """A static invoice valid for years does not keep us resending for years:
    the payment fails after asyncpay-payer-release-timeout (LDK's week)."""
    offer = an_offer()
    row = requesting(payer, offer)
    inv = StaticInvoice.build(offer, [pay_path(CHEAP)], static_with(offer, [CHEAP]).invoice_held_htlc_available_paths,
                              NOW, ISSUER, relative_expiry=10 * 365 * 86400)
    deliver(payer, row, REPLY, static_invoice=inv.encode())
    assert payer.records.get(row.id).expires_at == NOW + 604_800
    actions, [failed] = payer.tick(NOW + 604_800)
    assert actions == [] and failed.id == row.id and "did not release" in failed.reason


def test_payer_config_refuses_a_cltv_cap_the_hold_cannot_fit():
    PayerConfig(payer_lsp="02" + "11" * 32).validate()
    with pytest.raises(ValueError, match="max-cltv"):
        PayerConfig(payer_lsp="02" + "11" * 32, payer_max_cltv=1009).validate()
    with pytest.raises(ValueError, match="held-resend"):
        PayerConfig(payer_held_resend_min=10, payer_held_resend_max=5).validate()


def test_rows_written_before_the_resend_column_are_kept(tmp_path):
    """Schema v2 adds held_sends; a payment stored by v1 is read back whole."""
    store = Store(str(tmp_path / "old.sqlite3"))
    store.migrate_component("payer", MIGRATIONS[:1])
    store.conn.execute("INSERT INTO payer_payments (id, state, bolt12, offer, amount_msat, nonce, invreq, attempts, "
                       "next_at, expires_at, created_at, updated_at) VALUES ('p', 'awaiting_release', 'lno1', ?, "
                       "5, ?, ?, 1, 10, 20, 1, 2)", (b"\x00", b"\x01", b"\x02"))  # (no x'' literal: portable SQL)
    row = PayerRecords(store).get("p")
    assert (row.state, row.amount_msat, row.expires_at, row.held_sends) == ("awaiting_release", 5, 20, 0)
