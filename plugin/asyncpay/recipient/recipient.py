"""The often-offline recipient (design §3 steps 1-4, 6, 9; LDK
``offers/flow.rs``: ``set_paths_to_static_invoice_server``,
``get_async_receive_offer``, ``handle_offer_paths``,
``handle_static_invoice_persisted``, ``handle_held_htlc_available``).

Sans-IO: it takes decoded messages that reached our endpoint V, the store,
the time and a snapshot of our LSP channel, and returns onions to inject.
Per invoice slot:

1. ``request_offer``: ``offer_paths_request{slot}`` over a server path, with
   a reply path ``[our node -> V]`` (context ``recipient:offer_paths``);
2. ``offer_paths``: an offer whose ``offer_paths`` are the server's paths and
   whose issuer key is derived (HMAC of a stored nonce under a base secret
   from ``makesecret``), a static invoice signed by it, and
   ``serve_static_invoice`` over the server's reply path;
3. ``static_invoice_persisted``: the slot is ready.

Then: a ``held_htlc_available`` on one of our held paths is answered with
``release_held_htlc``; an ``invoice_request`` the server forwards while we
are online is answered with a BOLT 12 invoice whose preimage we keep.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..actions import InjectOnion
from ..blinded_path import BlindedPath, BlindedPaymentPath
from ..bookkeeping import Bookkeeping
from ..crypto import CryptoError, pubkey_of
from ..endpoint import Delivered, Dropped, Endpoint, Resolver
from ..offers import BITCOIN_CHAIN, Invoice, InvoiceRequest, Offer, StaticInvoice
from ..offers.offer import offer_records
from ..onion_message import OfferPathsRequest, OnionMessagePayload, ReleaseHeldHtlc, ServeStaticInvoice
from ..store import Store
from ..wire import Reader, WireError
from .channel import LspChannel, payment_path
from .config import RecipientConfig
from .records import PENDING, READY, REQUESTED, IssuedOffer, OfferRow, RecipientRecords, offer_id_of

log = logging.getLogger("asyncpay.recipient")

# Context kinds of the paths the recipient mints (owner: the slot, as text).
OFFER_PATHS = "recipient:offer_paths"  # reply path of offer_paths_request
PERSISTED = "recipient:persisted"  # reply path of serve_static_invoice
INVREQ = "recipient:invreq"  # forward_invoice_request_path [LSP -> us -> V]
HELD = "recipient:held"  # held_htlc_available_paths [LSP -> us -> V]
PAYMENT = "recipient:payment"  # our hop of a payment path (read in htlc_accepted)
KINDS = (OFFER_PATHS, PERSISTED, INVREQ, HELD)

REPLY_TTL = 24 * 3600  # a server that answers a day late is not answered
INVOICE_RELATIVE_EXPIRY = 7200  # BOLT 12's default for invoices


@dataclass(frozen=True)
class Snapshot:
    """What the adapter read from lightningd for this call."""

    channel: LspChannel | None
    height: int


def offer_key(base: bytes, nonce: bytes) -> bytes:
    """The offer's signing key: never stored, re-derived from its nonce."""
    return hmac.new(base, b"asyncpay offer key" + nonce, hashlib.sha256).digest()


class Recipient:
    def __init__(self, store: Store, endpoint: Endpoint, config: RecipientConfig, key_base: bytes,
                 resolve_intro: Resolver, chain: bytes = BITCOIN_CHAIN, books: Bookkeeping | None = None) -> None:
        self.store, self.endpoint, self.config, self.chain = store, endpoint, config, chain
        self.books = books if books is not None else Bookkeeping(store)  # counters off the release's path
        self.records = RecipientRecords(store)
        self.key_base, self.resolve_intro = key_base, resolve_intro
        self.rng: Callable[[int], bytes] = endpoint.rng

    # -- the server ------------------------------------------------------------

    def set_server(self, paths: list[BlindedPath], now: int) -> None:
        if not paths:
            raise ValueError("at least one server path is needed")
        self.records.set_server(b"".join(p.encode() for p in paths), now)

    def server_paths(self) -> list[BlindedPath]:
        blob = self.records.server()
        if not blob:
            return []
        r, out = Reader(blob), []
        while not r.at_end():
            out.append(BlindedPath.read(r))
        return out

    def lsp_id(self) -> bytes | None:
        paths = self.server_paths()
        return self.resolve_intro(paths[0].introduction) if paths else None

    # -- offers ----------------------------------------------------------------

    def request_offer(self, slot: int, description: str | None, amount_msat: int | None,
                      now: int) -> list[InjectOnion]:
        """Start (or keep) the offer of ``slot``; nothing is sent when the slot
        already has a usable offer with the same description and amount."""
        row = self.records.offer(slot)
        if (row is not None and row.offer is not None and row.description == description
                and row.amount_msat == amount_msat and not self._paths_stale(row, now)):
            return []
        row = OfferRow(slot=slot, state=REQUESTED, description=description, amount_msat=amount_msat,
                       nonce=self.rng(16), created_at=now, updated_at=now)
        with self.store.tx():
            self.records.put_offer(row)
            return [self._offer_paths_request(slot, now)]

    def _offer_paths_request(self, slot: int, now: int) -> InjectOnion:
        paths = self.server_paths()
        if not paths:
            raise Dropped("no_server", "asyncpay-setserver first")
        reply = self.endpoint.mint_path(OFFER_PATHS, str(slot), slot, now + REPLY_TTL, now)
        payload = OnionMessagePayload(offer_paths_request=OfferPathsRequest(invoice_slot=slot), reply_path=reply)
        # Spread requests over the server's paths (a broken one does not block us).
        dest = paths[slot % len(paths)]
        return self.endpoint.send(dest, payload, "offer_paths_request", self.resolve_intro)

    def _paths_stale(self, row: OfferRow, now: int) -> bool:
        return row.paths_expires_at is not None and row.paths_expires_at - now < self.config.recipient_refresh_margin

    def refresh(self, now: int, snap: Snapshot, force: bool = False, reconnected: bool = False) -> list[InjectOnion]:
        """Keep every slot fresh without the user: new offer paths before they
        expire, a re-served invoice before it expires, on start (``force``),
        and after reconnecting to the LSP or when the channel changed
        (``reconnected``, ``changed``: both the LSP's doing, so at most once
        per ``recipient_reserve_interval``)."""
        actions: list[InjectOnion] = []
        # An unpaid invoice's preimage is kept a day past the invoice's expiry.
        self.records.prune_expected(now - INVOICE_RELATIVE_EXPIRY - 86400)
        self.records.prune_offers(now)
        for row in self.records.offers():
            try:
                if row.state == REQUESTED or self._paths_stale(row, now):
                    actions.append(self._offer_paths_request(row.slot, now))
                    continue
                margin = self.config.recipient_refresh_margin
                stale = row.invoice_expires_at is None or row.invoice_expires_at - now < margin
                changed = snap.channel is not None and snap.channel.fingerprint() != row.channel
                # A confirmed invoice served moments ago is not sent again on a reconnect or
                # a channel change: the next check after recipient_reserve_interval does it.
                recent = row.state == READY and now - row.updated_at < self.config.recipient_reserve_interval
                if force or stale or ((reconnected or changed) and not recent):
                    actions.append(self._serve(row, now, snap))
            except Dropped as e:
                self.store.bump(f"dropped_{e.reason}")
                log.info("cannot refresh slot %d: %s", row.slot, e)
        return actions

    # -- messages --------------------------------------------------------------

    def handle(self, d: Delivered, now: int, snap: Snapshot) -> list[InjectOnion]:
        """A message for V over one of our paths (raises Dropped to ignore it)."""
        try:
            kind = d.payload.content_kind()
        except WireError as e:
            raise Dropped("bad_payload", str(e)) from None
        if d.kind == OFFER_PATHS and kind == "offer_paths":
            return self._offer_paths(d, now, snap)
        if d.kind == PERSISTED and kind == "static_invoice_persisted":
            return self._persisted(d, now)
        if d.kind == HELD and kind == "held_htlc_available":
            return self._release(d)
        if d.kind == INVREQ and kind == "invoice_request":
            return self._invoice_request(d, now, snap)
        raise Dropped("unexpected_message", f"{kind} on a {d.kind} path")

    def _slot_row(self, d: Delivered) -> OfferRow:
        row = self.records.offer(d.slot) if d.slot is not None else None
        if row is None:
            raise Dropped("unknown_slot", str(d.slot))
        return row

    def _offer_paths(self, d: Delivered, now: int, snap: Snapshot) -> list[InjectOnion]:
        row = self._slot_row(d)
        msg = d.payload.offer_paths
        if not msg.paths or d.payload.reply_path is None:
            raise Dropped("bad_offer_paths", "no paths or no reply path")
        expiry = msg.paths_absolute_expiry
        if expiry is not None and expiry <= now:
            raise Dropped("bad_offer_paths", "paths already expired")
        key = offer_key(self.key_base, row.nonce)
        if row.offer is None or self._paths_stale(row, now):
            offer = Offer(offer_chains=None if self.chain == BITCOIN_CHAIN else [self.chain],
                          offer_amount=row.amount_msat, offer_description=row.description,
                          offer_absolute_expiry=expiry, offer_paths=list(msg.paths),
                          offer_issuer_id=pubkey_of(key))
            try:
                offer.check()
            except WireError as e:
                raise Dropped("bad_offer_paths", str(e)) from None
            row.offer, row.bolt12, row.paths_expires_at = offer.encode(), offer.to_string(), expiry
            # Kept past the slot's next offer: payers may hold its static invoice for days.
            self.records.issue_offer(row.slot, row.offer, row.bolt12, row.nonce, now)
        row.serve_path = d.payload.reply_path.encode()
        return [self._serve(row, now, snap)]

    def _serve(self, row: OfferRow, now: int, snap: Snapshot) -> InjectOnion:
        """Build a fresh static invoice for the slot's offer and send it to the server."""
        if row.offer is None or row.serve_path is None:
            raise Dropped("no_offer", f"slot {row.slot}")
        if snap.channel is None:
            raise Dropped("no_lsp_channel", "no channel from the server's node")
        lsp = snap.channel.lsp_id
        expires_at = now + self.config.recipient_invoice_ttl
        with self.store.tx():
            offer_id = self._issued(row, now)
            invoice = self._static_invoice(row, now, snap, expires_at, offer_id)
            # Its owner names the offer: a request for it is answered after the slot moved on.
            fwd = self.endpoint.mint_path(INVREQ, offer_id.hex(), row.slot, expires_at, now, via=(lsp,))
            payload = OnionMessagePayload(
                serve_static_invoice=ServeStaticInvoice(invoice=invoice.encode(), forward_invoice_request_path=fwd),
                reply_path=self.endpoint.mint_path(PERSISTED, str(row.slot), row.slot, now + REPLY_TTL, now),
            )
            action = self.endpoint.send(BlindedPath.decode(row.serve_path), payload, "serve_static_invoice",
                                        self.resolve_intro)
            row.invoice, row.invoice_expires_at = invoice.encode(), invoice.expires_at()
            self.records.offer_valid_until(offer_id, max(invoice.expires_at(), expires_at))
            row.channel = snap.channel.fingerprint()
            row.state = READY if row.state == READY else PENDING
            row.updated_at = now
            self.records.put_offer(row)
        return action

    def _issued(self, row: OfferRow, now: int) -> bytes:
        """The id of the slot's offer in the issued offers (recorded if it predates them)."""
        assert row.offer is not None
        offer_id = offer_id_of(row.offer)
        if self.records.issued_offer(offer_id) is None:
            self.records.issue_offer(row.slot, row.offer, row.bolt12, row.nonce, now)
        return offer_id

    def _static_invoice(self, row: OfferRow, now: int, snap: Snapshot, expires_at: int,
                        offer_id: bytes) -> StaticInvoice:
        assert snap.channel is not None and row.offer is not None
        held = self.endpoint.mint_path(HELD, offer_id.hex(), row.slot,
                                       now + self.config.recipient_held_paths_ttl, now, via=(snap.channel.lsp_id,))
        return StaticInvoice.build(
            Offer.decode(row.offer), self.payment_paths(row.slot, offer_id, now, snap, expires_at), [held], now,
            offer_key(self.key_base, row.nonce), relative_expiry=self.config.recipient_invoice_ttl,
        )

    def payment_paths(self, slot: int, offer_id: bytes, now: int, snap: Snapshot,
                      expires_at: int) -> list[BlindedPaymentPath]:
        """One path over our LSP channel, its path_id keying a payment context whose
        owner is the offer it pays (not the slot, whose offer may be replaced)."""
        assert snap.channel is not None
        path_id = self.rng(32)
        # The context outlives the invoice by a day: an HTLC may arrive late.
        self.store.add_context(path_id, PAYMENT, offer_id.hex(), slot, expires_at + 86400, now)
        max_cltv = snap.height + self.config.recipient_max_cltv_blocks
        return [payment_path(self.rng, self.endpoint.node_id, snap.channel, path_id, max_cltv,
                             self.config.recipient_final_cltv_delta)]

    def _persisted(self, d: Delivered, now: int) -> list[InjectOnion]:
        row = self._slot_row(d)
        if row.invoice is None:
            raise Dropped("unexpected_message", "persisted before anything was served")
        row.state, row.persisted_at, row.updated_at = READY, now, now
        self.records.put_offer(row)
        self.store.bump("recipient_invoices_persisted")
        log.debug("static invoice for slot %d persisted by the server", row.slot)
        return []

    def _release(self, d: Delivered) -> list[InjectOnion]:
        """Answer a payer (or its LSP) that holds an HTLC for us (design §3 step 9).
        A duplicate gets another release: the holder ignores the second."""
        if d.payload.reply_path is None:
            raise Dropped("no_reply_path", "held_htlc_available")
        payload = OnionMessagePayload(release_held_htlc=ReleaseHeldHtlc())
        action = self.endpoint.send(d.payload.reply_path, payload, "release_held_htlc", self.resolve_intro)
        self.books.bump("recipient_releases")
        return [action]

    def _request_offer(self, d: Delivered) -> IssuedOffer:
        """The offer a forwarded request may be for: the one its path was minted for
        (possibly replaced in the slot since), or (older paths) the slot's current one."""
        if len(d.owner) == 64:
            issued = self.records.issued_offer(bytes.fromhex(d.owner))
            if issued is None:
                raise Dropped("unknown_offer", f"slot {d.slot}")
            return issued
        row = self._slot_row(d)
        if row.offer is None:
            raise Dropped("no_offer", f"slot {row.slot}")
        return IssuedOffer(offer_id_of(row.offer), row.slot, row.offer, row.bolt12, row.nonce, 0, 0)

    def _invoice_request(self, d: Delivered, now: int, snap: Snapshot) -> list[InjectOnion]:
        """We are online and the server forwarded a payer's request: answer
        with a BOLT 12 invoice whose preimage we keep (design §8). A payer
        cannot make us keep more than ``recipient_max_expected_invoices``."""
        row = self._request_offer(d)
        if d.payload.reply_path is None:
            raise Dropped("no_reply_path", "invoice_request")
        if snap.channel is None:
            raise Dropped("no_offer", f"slot {row.slot}")
        if self.records.expected_count() >= self.config.recipient_max_expected_invoices:
            raise Dropped("too_many_invoices", "unpaid invoices at the limit; the payer has the static invoice")
        req = check_invoice_request(d.payload.invoice_request, row.offer, self.chain)
        amount = required_amount(req)
        if amount is None:
            raise Dropped("invalid_invoice_request", "no amount")
        preimage = self.rng(32)
        payment_hash = hashlib.sha256(preimage).digest()
        expires_at = now + INVOICE_RELATIVE_EXPIRY
        with self.store.tx():
            paths = self.payment_paths(row.slot, row.offer_id, now, snap, expires_at)
            inv = Invoice.from_records([r for r in req.to_records() if r[0] != 240], check=False)
            inv.invoice_paths = [p.path for p in paths]
            inv.invoice_blindedpay = [p.payinfo for p in paths]
            inv.invoice_created_at = now
            inv.invoice_payment_hash = payment_hash
            inv.invoice_amount = amount
            inv.invoice_node_id = req.offer_issuer_id
            inv.sign(offer_key(self.key_base, row.nonce))
            inv.check()
            # The preimage is on disk before anyone can pay.
            self.records.expect_payment(payment_hash, preimage, row.slot, amount, now, row.offer_id)
            self.records.offer_valid_until(row.offer_id, expires_at)
            self.store.bump("recipient_invoices_sent")
        payload = OnionMessagePayload(invoice=inv.encode())
        return [self.endpoint.send(d.payload.reply_path, payload, "invoice", self.resolve_intro)]


def check_invoice_request(raw: bytes | None, offer: bytes, chain: bytes) -> InvoiceRequest:
    """The request parses, its signature verifies, it is for ``offer`` (offer
    records byte-equal) and for our chain (BOLT 12 "Requirements for Invoice
    Requests": a missing ``invreq_chain`` means bitcoin)."""
    if not raw:
        raise Dropped("invalid_invoice_request", "missing")
    try:
        req = InvoiceRequest.decode(raw)
    except (WireError, CryptoError) as e:
        raise Dropped("invalid_invoice_request", str(e)) from None
    if not req.signature_ok():
        raise Dropped("invalid_invoice_request", "bad signature")
    if offer_records(req.to_records()) != offer_records(Offer.decode(offer).to_records()):
        raise Dropped("offer_mismatch", "request is for another offer")
    if (req.invreq_chain or BITCOIN_CHAIN) != chain:
        raise Dropped("wrong_chain", "request is for another chain")
    return req


def required_amount(req: InvoiceRequest) -> int | None:
    """What the payer must pay: its own amount, or the offer's times the quantity."""
    if req.invreq_amount is not None:
        if req.offer_amount is not None and req.invreq_amount < req.offer_amount * (req.invreq_quantity or 1):
            return None
        return req.invreq_amount
    if req.offer_amount is None:
        return None
    return req.offer_amount * (req.invreq_quantity or 1)
