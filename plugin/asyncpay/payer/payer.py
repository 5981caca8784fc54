"""The payer (design §3 steps 5-10; LDK ``offers/flow.rs`` ``pay_for_offer``,
``ln/outbound_payment.rs`` static-invoice payments).

Sans-IO: it takes an offer, the messages that reached our endpoint V, the
outcome of payments the adapter made, and the time; it returns actions:
onions to inject, a BOLT 12 invoice to pay with CLN's ``xpay``, or a
static-invoice payment to build and inject.

1. ``start``: an ``invoice_request`` with a derived payer key over the
   offer's paths (or straight to its issuer), with a reply path
   ``[our node -> V]`` whose context names the payment; resent over the
   next path when no answer comes (``tick``).
2. An ``invoice`` (TLV 66) is checked against our request (BOLT 12
   "Requirements for Invoices", reader side) and paid (``PayInvoice``).
3. A ``static_invoice`` (TLV 70) is checked (signature, issuer binding,
   offer byte-equal, expiry, chain); after a short grace for a normal
   invoice from an online recipient, ``held_htlc_available`` goes over its
   held paths with a reply path naming the payment.
   ``held_htlc_available`` is sent again with backoff (and once after a
   restart) until the release comes or ``payer_release_timeout`` passes:
   one lost message must not leave the payment waiting for nothing.
4. On ``release_held_htlc`` over that path: a fresh preimage, persisted,
   then ``PayStatic`` (the keysend preimage and our ``invoice_request`` in
   the final payload), once: a replayed release is dropped.

Every payment carries its ``Budget`` (``budget.py``): a static invoice's
paths over the fee or CLTV cap, or with unknown required payinfo features,
are skipped before anything is sent, and the adapter checks askrene's
route and the built onion against the same budget.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import payment_log
from ..actions import InjectOnion
from ..blinded_path import BlindedPaymentPath, EncryptedData
from ..crypto import CryptoError, pubkey_of
from ..endpoint import Delivered, Dropped, Endpoint, Resolver
from ..offers import BITCOIN_CHAIN, Invoice, InvoiceRequest, Offer, StaticInvoice
from ..offers.fields import unknown_even_feature
from ..offers.offer import offer_records
from ..onion_message import OnionMessagePayload, build_path
from ..payment.hold_request import HoldRequest
from ..store import Store
from ..wire import WireError
from .budget import Budget, OverBudget, fee_cap, screen
from .config import PayerConfig
from .records import (
    AWAITING_RELEASE,
    COMPLETE,
    FAILED,
    HELD_AT_LSP,
    OPEN,
    PAYING,
    REQUESTING,
    STATIC,
    PayerRecords,
    PaymentRow,
)

log = logging.getLogger("asyncpay.payer")

REPLY = "payer:reply"  # reply path of our invoice_request (owner: payment id)
REQUEST_PATHS = 3  # offer paths one invoice_request goes over at once
RELEASE = "payer:release"  # reply path of held_htlc_available (owner: payment id)
KINDS = (REPLY, RELEASE)

MAX_HELD_PATHS = 3  # held_htlc_available goes over at most this many of the invoice's paths
# Invoice feature bits we support when required: basic_mpp (BOLT 9, 16/17),
# xpay splits and our single part carries total_amount_msat.
KNOWN_INVOICE_FEATURES = (16,)
REQUEST_TTL = 24 * 3600  # our reply paths die a day after the request


class PayError(Exception):
    """An offer or amount we cannot pay, with a one-line reason."""


@dataclass(frozen=True)
class PayInvoice:
    """Pay this BOLT 12 invoice with CLN's own payment engine (xpay)."""

    payment_id: str
    invoice: str  # lni…
    max_fee_msat: int  # xpay's maxfee
    max_delay: int  # xpay's maxdelay


@dataclass(frozen=True)
class PayStatic:
    """Build a payment onion to one of these paths and inject it. With
    ``hold`` the route must start at ``lsp``, whose hop payload carries the
    hold request: the LSP holds the HTLC until the recipient releases it."""

    payment_id: str
    paths: tuple[BlindedPaymentPath, ...]  # only those within the budget, by payinfo alone
    amount_msat: int
    payment_hash: bytes
    preimage: bytes
    invoice_request: bytes
    budget: Budget
    lsp: bytes | None = None
    hold: HoldRequest | None = None
    skipped: tuple[str, ...] = ()  # why the invoice's other paths are not tried


Action = InjectOnion | PayInvoice | PayStatic


def invreq_records(records):
    """The records an invoice copies from its request (BOLT 12: types 0-159
    and the experimental 1000000000-2999999999)."""
    return [r for r in records if r[0] < 160 or 1_000_000_000 <= r[0] < 3_000_000_000]


def parse_offer(text: str, now: int, chain: bytes) -> Offer:
    """An offer we can pay, or PayError saying why not."""
    try:
        offer = Offer.from_string(text.strip())
        offer.check()
    except (WireError, CryptoError, ValueError) as e:
        raise PayError(f"malformed offer: {e}") from None
    if offer.offer_currency is not None:
        raise PayError(f"offer is in {offer.offer_currency}, not bitcoin: not supported")
    if offer.offer_expired(now):
        raise PayError(f"offer expired at {offer.offer_absolute_expiry}")
    if not offer.offer_supports_chain(chain):
        raise PayError("offer is for another chain")
    return offer


def required_unknown(features: bytes | None, known: tuple[int, ...] = ()) -> int | None:
    """The lowest unknown even (required) feature bit, ``known`` ones aside."""
    if not features:
        return None
    n = int.from_bytes(features, "big")
    for bit in known:
        n &= ~(1 << bit)
    return unknown_even_feature(n.to_bytes(len(features), "big"))


def usable_paths(paths: list[BlindedPaymentPath]) -> list[BlindedPaymentPath]:
    """BOLT 12 (reader): MUST NOT use a path whose payinfo features carry an
    unknown even bit (no blinded-path feature is defined yet)."""
    return [p for p in paths if unknown_even_feature(p.payinfo.features) is None]


def payer_key(base: bytes, nonce: bytes) -> bytes:
    """Our payer key for one request: never stored, re-derived from its nonce."""
    return hmac.new(base, b"asyncpay payer key" + nonce, hashlib.sha256).digest()


class Payer:
    def __init__(self, store: Store, endpoint: Endpoint, config: PayerConfig, key_base: bytes,
                 resolve_intro: Resolver, chain: bytes = BITCOIN_CHAIN) -> None:
        self.store, self.endpoint, self.config, self.chain = store, endpoint, config, chain
        self.records = PayerRecords(store)
        self.key_base, self.resolve_intro = key_base, resolve_intro
        self.rng: Callable[[int], bytes] = endpoint.rng

    # -- starting a payment ----------------------------------------------------

    def check(self, offer_text: str, amount_msat: int | None, now: int | None = None) -> tuple[Offer, int]:
        """The offer and the amount we would pay, or PayError."""
        offer = parse_offer(offer_text, int(time.time()) if now is None else now, self.chain)
        if offer.offer_quantity_max is not None:
            raise PayError("offers with a quantity are not supported")
        if offer.offer_amount is None:
            if amount_msat is None:
                raise PayError("offer has no amount: amount_msat is required")
            return offer, amount_msat
        if amount_msat is not None and amount_msat < offer.offer_amount:
            raise PayError(f"amount_msat is below the offer's {offer.offer_amount}")
        return offer, amount_msat or offer.offer_amount

    def start(self, offer_text: str, amount_msat: int | None, payer_note: str | None,
              now: int) -> tuple[PaymentRow, list[Action]]:
        offer, amount = self.check(offer_text, amount_msat, now)
        nonce = self.rng(16)
        key = payer_key(self.key_base, nonce)
        req = InvoiceRequest.from_records(offer.to_records(), check=False)
        req.invreq_metadata = nonce
        req.invreq_chain = None if self.chain == BITCOIN_CHAIN else self.chain
        req.invreq_amount = amount if (offer.offer_amount is None or amount != offer.offer_amount) else None
        req.invreq_payer_id = pubkey_of(key)
        req.invreq_payer_note = payer_note
        req.sign(key)
        row = PaymentRow(id=self.rng(16).hex(), state=REQUESTING, kind=None, bolt12=offer_text.strip(),
                         offer=offer.encode(), amount_msat=amount, nonce=nonce, invreq=req.encode(),
                         expires_at=now + REQUEST_TTL, created_at=now, updated_at=now)
        with self.store.tx():
            actions = self._request(row, offer, now)
        payment_log.changed(payment_log.PAYER, row.payment_hash, row.state, f"id {row.id}")
        return row, list(actions)

    def _request(self, row: PaymentRow, offer: Offer, now: int) -> list[InjectOnion]:
        """Send (or resend) the request over up to ``REQUEST_PATHS`` of the
        offer's paths at once, as LDK does (``offers/flow.rs``), starting at
        the next one: an offer registered with several servers is answered
        by whichever is up, the first valid answer wins (``_invoice``,
        ``_static_invoice``), and a path we cannot send over is not fatal
        while another is left."""
        if offer.offer_paths:
            n = len(offer.offer_paths)
            dests = [offer.offer_paths[(row.attempts + i) % n] for i in range(min(n, REQUEST_PATHS))]
        else:  # no paths: straight to the issuer, a one-hop blinded path to it
            assert offer.offer_issuer_id is not None
            dests = [build_path(self.rng(32), [(offer.offer_issuer_id, EncryptedData())])]
        reply = self.endpoint.mint_path(REPLY, row.id, None, row.expires_at, now, via=self._via())
        payload = OnionMessagePayload(invoice_request=row.invreq, reply_path=reply)
        row.attempts += 1
        row.next_at, row.updated_at = now + self.config.payer_request_retry, now
        self.records.put(row)
        actions, errors = [], []
        for dest in dests:
            try:
                actions.append(self.endpoint.send(dest, payload, "invoice_request", self.resolve_intro))
            except Dropped as e:
                errors.append(e)
        if not actions:
            raise errors[0]
        return actions

    def _via(self) -> tuple[bytes, ...]:
        """Our reply paths start at our LSP when we have one: a wallet behind
        an unannounced channel cannot be found in gossip."""
        return (bytes.fromhex(self.config.payer_lsp),) if self.config.payer_lsp else ()

    # -- time ------------------------------------------------------------------

    def tick(self, now: int) -> tuple[list[Action], list[PaymentRow]]:
        """Resend unanswered requests, hold after the grace, give up when
        it is over. Returns the actions and the payments that failed."""
        actions: list[Action] = []
        failed: list[PaymentRow] = []
        for row in self.records.due(now, (REQUESTING, STATIC, AWAITING_RELEASE), AWAITING_RELEASE):
            try:
                if row.state == REQUESTING and now >= row.next_at:
                    if row.attempts >= self.config.payer_request_attempts:
                        failed.append(self._fail(row, "no invoice came in answer to our invoice_request", now))
                    else:
                        actions += self._request(row, Offer.decode(row.offer), now)
                elif row.state == STATIC and now >= row.next_at:
                    actions += self._hand_to_lsp(row, now) if self.config.payer_lsp else self._hold(row, now)
                    if row.state == FAILED:  # no path within our limits, or none to send the hold over
                        failed.append(row)
                elif row.state == AWAITING_RELEASE and now >= row.expires_at:
                    failed.append(self._fail(row, "the recipient did not release the payment in time", now))
                elif row.state == AWAITING_RELEASE and now >= row.next_at:
                    actions += self._resend_held(row, now)
            except Dropped as e:
                self.store.bump(f"payer_dropped_{e.reason}")
                log.info("payment %s: %s", row.id, e)
        return actions, failed

    # -- messages ----------------------------------------------------------------

    def handle(self, d: Delivered, now: int) -> list[Action]:
        """A message for V over one of our paths (raises Dropped to ignore it)."""
        row = self.records.get(d.owner)
        if row is None:
            raise Dropped("unknown_payment", d.owner)
        try:
            kind = d.payload.content_kind()
        except WireError as e:
            raise Dropped("bad_payload", str(e)) from None
        if d.kind == REPLY and kind == "invoice":
            return self._invoice(row, d.payload.invoice, now)
        if d.kind == REPLY and kind == "static_invoice":
            return self._static_invoice(row, d.payload.static_invoice, now)
        if d.kind == REPLY and kind == "invoice_error":
            if row.state == REQUESTING:
                self._fail(row, "the recipient answered with an invoice_error", now)
            return []
        if d.kind == RELEASE and kind == "release_held_htlc":
            return self._release(row, now)
        raise Dropped("unexpected_message", f"{kind} on a {d.kind} path")

    def _invoice(self, row: PaymentRow, raw: bytes | None, now: int) -> list[Action]:
        # A normal invoice wins over a static one while we have not yet asked
        # for a release (the grace); after that the release decides, so that
        # one payment is never made twice.
        if row.state not in (REQUESTING, STATIC):
            raise Dropped("late_invoice", f"payment {row.id} is {row.state}")
        inv = self.check_invoice(row, raw, now)
        row.state, row.kind, row.invoice = PAYING, "invoice", inv.encode()
        row.payment_hash, row.updated_at = inv.invoice_payment_hash, now
        self.records.put(row)
        payment_log.changed(payment_log.PAYER, row.payment_hash, row.state, f"id {row.id}")
        return [self.invoice_action(row)]

    def check_invoice(self, row: PaymentRow, raw: bytes | None, now: int) -> Invoice:
        """BOLT 12 "Requirements for Invoices" (reader), against our request."""
        try:
            inv = Invoice.decode(raw or b"")
            inv.check()
        except (WireError, CryptoError) as e:
            raise Dropped("invalid_invoice", str(e)) from None
        req = InvoiceRequest.decode(row.invreq)
        if invreq_records(inv.to_records()) != invreq_records(req.to_records()):
            raise Dropped("invoice_mismatch", "not an answer to our invoice_request")
        if not inv.signature_ok():
            raise Dropped("invalid_invoice", "bad signature")
        self._check_issuer(Offer.decode(row.offer), inv.invoice_node_id)
        if inv.invoice_amount != row.amount_msat:
            raise Dropped("invalid_invoice", f"amount {inv.invoice_amount}, we asked for {row.amount_msat}")
        if now >= inv.expires_at():
            raise Dropped("invalid_invoice", "expired")
        bit = required_unknown(inv.invoice_features, KNOWN_INVOICE_FEATURES)
        if bit is not None:
            raise Dropped("invalid_invoice", f"unknown required feature {bit}")
        # xpay chooses among the paths; we can only refuse an invoice none of
        # whose paths may be used (whether xpay skips the others is its own).
        if not usable_paths(inv.payment_paths()):
            raise Dropped("invalid_invoice", "no payment path without unknown required payinfo features")
        return inv

    def budget(self, amount_msat: int, held: bool) -> Budget:
        """The payment's limits from our settings (``budget.py``)."""
        cfg = self.config
        return Budget(fee_cap(amount_msat, cfg.payer_max_fee_base_msat, cfg.payer_max_fee_ppm), cfg.payer_max_cltv,
                      cfg.payer_hold_blocks if held else 0)

    def invoice_action(self, row: PaymentRow) -> PayInvoice:
        budget = self.budget(row.amount_msat, held=False)
        return PayInvoice(row.id, Invoice.decode(row.invoice or b"").to_string(), budget.max_fee_msat,
                          budget.max_delay)

    @staticmethod
    def _check_issuer(offer: Offer, node_id: bytes | None) -> None:
        """The invoice's signer is the offer's issuer, or the final hop of one
        of its paths when the offer names no issuer (BOLT 12)."""
        if offer.offer_issuer_id is not None:
            ok = node_id == offer.offer_issuer_id
        else:
            ok = any(p.hops[-1].blinded_node_id == node_id for p in offer.offer_paths or [])
        if not ok:
            raise Dropped("wrong_signer", "invoice not signed by the offer's issuer")

    def _static_invoice(self, row: PaymentRow, raw: bytes | None, now: int) -> list[Action]:
        if row.state != REQUESTING:
            raise Dropped("late_invoice", f"payment {row.id} is {row.state}")
        inv = self.check_static_invoice(row, raw, now)
        row.state, row.kind, row.invoice = STATIC, "static", inv.encode()
        row.next_at = now + self.config.payer_invoice_grace
        row.expires_at, row.updated_at = inv.expires_at(), now
        self.records.put(row)
        payment_log.changed(payment_log.PAYER, row.payment_hash, row.state, f"id {row.id}")
        if self.config.payer_invoice_grace > 0:
            return []
        return self._hand_to_lsp(row, now) if self.config.payer_lsp else self._hold(row, now)

    def screen_paths(self, row: PaymentRow, inv: StaticInvoice
                     ) -> tuple[list[BlindedPaymentPath], list[str], Budget]:
        """The invoice's paths within our budget by their payinfo alone, and
        why each other one is skipped."""
        budget = self.budget(row.amount_msat, held=self.config.payer_lsp is not None)
        ok, skipped = [], []
        for i, path in enumerate(inv.payment_paths()):
            try:
                screen(path, row.amount_msat, budget)
                ok.append(path)
            except OverBudget as e:
                skipped.append(f"path {i}: {e}")
        return ok, skipped, budget

    def _affordable(self, row: PaymentRow, now: int) -> bool:
        """Fail the payment, before anything is sent, when no path of its
        static invoice is within our limits."""
        ok, skipped, _ = self.screen_paths(row, StaticInvoice.decode(row.invoice or b""))
        if not ok:
            self.store.bump("payer_paths_over_budget", len(skipped))
            self._fail(row, "no payment path within our limits: " + "; ".join(skipped), now)
        return bool(ok)

    def _hand_to_lsp(self, row: PaymentRow, now: int) -> list[Action]:
        """Often-offline sender: our LSP holds the HTLC and asks for the
        release itself, so we need not stay online (docs/architecture.md)."""
        if not self._affordable(row, now):
            return []
        preimage = self.rng(32)
        row.state, row.payment_preimage = PAYING, preimage
        row.payment_hash, row.updated_at = hashlib.sha256(preimage).digest(), now
        self.records.put(row)  # the preimage is on disk before any HTLC carries it
        payment_log.changed(payment_log.PAYER, row.payment_hash, row.state, f"id {row.id}")
        return [self.retry(row)]

    def check_static_invoice(self, row: PaymentRow, raw: bytes | None, now: int) -> StaticInvoice:
        try:
            inv = StaticInvoice.decode(raw or b"")
            inv.validate(now, self.chain)
        except (WireError, CryptoError) as e:
            raise Dropped("invalid_static_invoice", str(e)) from None
        offer = Offer.decode(row.offer)
        if offer_records(inv.to_records()) != offer_records(offer.to_records()):
            raise Dropped("static_invoice_mismatch", "static invoice for another offer")
        if not inv.payment_paths():
            raise Dropped("invalid_static_invoice", "no payment paths")
        # BOLT 12 (reader): MUST reject an invoice with unknown even
        # invoice_features, and one left with no usable path.
        bit = required_unknown(inv.invoice_features, KNOWN_INVOICE_FEATURES)
        if bit is not None:
            raise Dropped("invalid_static_invoice", f"unknown required feature {bit}")
        if not usable_paths(inv.payment_paths()):
            raise Dropped("invalid_static_invoice", "no payment path without unknown required payinfo features")
        return inv

    def _hold(self, row: PaymentRow, now: int) -> list[Action]:
        """Tell the recipient (through its LSP's mailbox) that our HTLC waits,
        unless no path could be paid within our limits anyway."""
        with self.store.tx():
            if not self._affordable(row, now):
                return []
            # The wait for the release is bounded by the invoice and by us.
            row.expires_at = min(row.expires_at, now + self.config.payer_release_timeout)
            onions = self._send_held(row, now)
            if not onions:
                self._fail(row, "no usable held_htlc_available path in the static invoice", now)
                return []
            row.state = AWAITING_RELEASE
            self.records.put(row)
            payment_log.changed(payment_log.PAYER, row.payment_hash, row.state, f"id {row.id}")
        return onions

    def _send_held(self, row: PaymentRow, now: int) -> list[Action]:
        """``held_htlc_available`` over the invoice's paths, and when to send
        it again: ``payer_held_resend_min`` doubling up to ``_max``."""
        inv = StaticInvoice.decode(row.invoice or b"")
        onions, unusable = self.endpoint.held_htlc_available(
            (inv.invoice_held_htlc_available_paths or [])[:MAX_HELD_PATHS], RELEASE, row.id, row.expires_at, now,
            self.resolve_intro, via=self._via())
        for reason in unusable:
            self.store.bump(f"payer_dropped_{reason}")
        cfg = self.config
        wait = min(cfg.payer_held_resend_min << min(row.held_sends, 32), cfg.payer_held_resend_max)
        row.held_sends += 1
        row.next_at, row.updated_at = now + wait, now
        self.records.put(row)
        return list(onions)

    def _resend_held(self, row: PaymentRow, now: int) -> list[Action]:
        """Again, when no release came: one lost message (ours, or the
        release) must not leave the payment waiting until it times out. A
        second release is dropped (``unexpected_release``), so resending
        never pays twice."""
        with self.store.tx():
            onions = self._send_held(row, now)
        self.store.bump("payer_held_resent")
        return onions

    def resume_holds(self, now: int) -> list[Action]:
        """After a restart: ``held_htlc_available`` once more for each payment
        still waiting for its release (the one sent before may be lost)."""
        actions: list[Action] = []
        for row in self.records.in_state(AWAITING_RELEASE):
            if now < row.expires_at:
                try:
                    actions += self._resend_held(row, now)
                except Dropped as e:
                    self.store.bump(f"payer_dropped_{e.reason}")
        return actions

    def _release(self, row: PaymentRow, now: int) -> list[Action]:
        if row.state != AWAITING_RELEASE:
            raise Dropped("unexpected_release", f"payment {row.id} is {row.state}")
        if now >= row.expires_at:
            raise Dropped("unexpected_release", f"payment {row.id} waited past its deadline")
        if not self._affordable(row, now):
            return []
        preimage = self.rng(32)
        row.state, row.payment_preimage = PAYING, preimage
        row.payment_hash, row.updated_at = hashlib.sha256(preimage).digest(), now
        self.records.put(row)  # the preimage is on disk before any HTLC carries it
        payment_log.changed(payment_log.PAYER, row.payment_hash, row.state, f"id {row.id}")
        return [self.retry(row)]

    def retry(self, row: PaymentRow) -> PayInvoice | PayStatic:
        """The payment of a ``paying`` row: made now, or again after a
        restart that found none of its HTLCs (same preimage: it is on disk)."""
        if row.kind == "invoice":
            return self.invoice_action(row)
        assert row.payment_hash is not None and row.payment_preimage is not None
        inv = StaticInvoice.decode(row.invoice or b"")
        paths, skipped, budget = self.screen_paths(row, inv)
        lsp = bytes.fromhex(self.config.payer_lsp) if self.config.payer_lsp else None
        hold = None
        if lsp is not None:
            # One path: a 3-hop path costs ~350 of the onion's 1300 bytes (docs/architecture.md).
            hold = HoldRequest(held_htlc_available_paths=list(inv.invoice_held_htlc_available_paths or [])[:1],
                               hold_until=inv.expires_at())
        return PayStatic(row.id, tuple(paths), row.amount_msat, row.payment_hash, row.payment_preimage, row.invreq,
                         budget, lsp, hold, tuple(skipped))

    def hold_confirmed(self, payment_hash: bytes, now: int) -> PaymentRow | None:
        """Our LSP says it holds the HTLC of this payment hash."""
        row = next((r for r in self.records.in_state(PAYING) if r.payment_hash == payment_hash), None)
        return self.held(row.id, now) if row is not None else None

    def held(self, payment_id: str, now: int) -> PaymentRow | None:
        """Our LSP holds the HTLC (it said so: ``hold_confirmed``)."""
        row = self.records.get(payment_id)
        if row is None or row.state != PAYING:
            return None
        row.state, row.updated_at = HELD_AT_LSP, now
        self.records.put(row)
        payment_log.changed(payment_log.PAYER, row.payment_hash, row.state, f"id {row.id}")
        return row

    # -- outcomes ------------------------------------------------------------------

    def paid(self, payment_id: str, preimage: bytes, now: int) -> PaymentRow | None:
        """The payment completed; None if it was already recorded."""
        row = self.records.get(payment_id)
        if row is None or row.state == COMPLETE:
            return None
        if hashlib.sha256(preimage).digest() != row.payment_hash:
            raise ValueError("preimage does not match the payment hash")
        row.state, row.payment_preimage, row.updated_at = COMPLETE, preimage, now
        self.records.put(row)
        self.store.bump("payer_payments_sent")
        payment_log.changed(payment_log.PAYER, row.payment_hash, row.state, f"id {row.id}")
        return row

    def pay_failed(self, payment_id: str, reason: str, now: int) -> PaymentRow | None:
        row = self.records.get(payment_id)
        if row is None or row.state not in OPEN:
            return None
        return self._fail(row, reason, now)

    def _fail(self, row: PaymentRow, reason: str, now: int) -> PaymentRow:
        row.state, row.reason, row.updated_at = FAILED, reason, now
        self.records.put(row)
        self.store.bump("payer_payments_failed")
        payment_log.changed(payment_log.PAYER, row.payment_hash, FAILED, f"id {row.id}: {reason}")
        return row

    def paying(self) -> list[PaymentRow]:
        """Payments whose HTLCs may be in flight (to look after on start)."""
        return self.records.in_state(PAYING, HELD_AT_LSP)

