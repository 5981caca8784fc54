"""Static invoice server (design §3 steps 1-6; LDK ``offers/flow.rs``
``handle_offer_paths_request`` / ``handle_serve_static_invoice`` and the
server side of ``OffersMessageHandler`` for static invoices).

Everything arrives at the endpoint V over a path we minted; the path's
context says who may do what:

* RECIPIENT path + ``offer_paths_request{slot}`` -> ``offer_paths`` (an
  offer path for (recipient, slot)) with reply path P_serve;
* SERVE path + ``serve_static_invoice`` -> validate, persist under
  (recipient, slot), ``static_invoice_persisted``;
* OFFER path + ``invoice_request`` -> the stored static invoice (TLV 70) to
  the payer, and the request forwarded to the recipient with the payer's
  reply path.

A recipient can only ever touch the slot named by the context it was given.

Nothing the payer's answer does not depend on delays it (issue 15): the
static invoice is the first action ``answer`` returns; the copy forwarded to
the recipient is a ``Later``, built once the answer is handed to lightningd;
counters and served marks go to ``Bookkeeping`` (written off the path); the
stored invoice's offer records are decoded once per stored invoice.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from ..actions import InjectOnion, Later, expand
from ..blinded_path import BlindedPath
from ..bookkeeping import Bookkeeping
from ..endpoint import Delivered, Dropped, Endpoint, Resolver
from ..offers import BITCOIN_CHAIN, InvoiceRequest, StaticInvoice, ldk_offer_id
from ..offers.offer import offer_records
from ..onion_message import OnionMessage, OnionMessagePayload
from ..onion_message.async_payments import OfferPaths, StaticInvoicePersisted
from ..ratelimit import TokenBuckets
from ..store import Store
from ..wire import WireError
from .config import LspConfig

# Context kinds of the paths the server mints.
RECIPIENT = "recipient"  # P_req: recipient -> server (offer_paths_request)
SERVE = "serve"  # P_serve: serve_static_invoice for (recipient, slot)
OFFER = "offer"  # offer paths: payers' invoice_request for (recipient, slot)
KINDS = (RECIPIENT, SERVE, OFFER)

# Offer records of stored invoices kept decoded (one entry per recipient slot
# served lately; a stranger can only name slots that have an invoice).
OFFER_CACHE_SIZE = 1024  # at most ~16 MiB: invoices of up to asyncpay-max-invoice-bytes and their records

log = logging.getLogger("asyncpay.lsp.server")


class StaticInvoiceServer:
    def __init__(
        self,
        store: Store,
        endpoint: Endpoint,
        config: LspConfig,
        resolve_intro: Resolver,
        chain: bytes = BITCOIN_CHAIN,
        books: Bookkeeping | None = None,
    ) -> None:
        self.store, self.endpoint, self.config = store, endpoint, config
        self.books = books if books is not None else Bookkeeping(store)
        # (recipient, slot) -> (stored invoice, its offer records)
        self._offers: OrderedDict[tuple[str, int], tuple[bytes, list]] = OrderedDict()
        self.resolve_intro, self.chain = resolve_intro, chain
        self.persist_limits = TokenBuckets(config.persist_burst, config.persist_rate)
        self.serve_limits = TokenBuckets(config.serve_burst, config.serve_rate)
        self.serve_source_limits = TokenBuckets(config.serve_source_burst, config.serve_source_rate)

    # -- operator side -------------------------------------------------------

    def recipient_paths(self, recipient_id: str, count: int, ttl: int, now: int) -> list[BlindedPath]:
        """Paths a recipient uses to reach us (LDK: ``blinded_paths_for_async_recipient``)."""
        if not recipient_id:
            raise ValueError("recipient_id must not be empty")
        if not 1 <= count <= 16:
            raise ValueError("count must be between 1 and 16")
        if ttl <= 0:
            raise ValueError("expiry must be positive")
        with self.store.tx():
            self.store.touch_recipient(recipient_id, now)
            return [self.endpoint.mint_path(RECIPIENT, recipient_id, None, now + ttl, now) for _ in range(count)]

    # -- messages --------------------------------------------------------------

    def handle(self, msg: OnionMessage, now: int) -> list[InjectOnion]:
        """A message CLN could not forward to V; never raises for bad input."""
        try:
            delivered = self.endpoint.open(msg, now)
            return self.dispatch(delivered, now)
        except Dropped as e:
            self.books.bump(f"dropped_{e.reason}")
            log.debug("dropped message for V: %s", e)
            return []

    def dispatch(self, d: Delivered, now: int) -> list[InjectOnion]:
        """``answer`` with every onion built now (tests, tools)."""
        return expand(self.answer(d, now))

    def answer(self, d: Delivered, now: int) -> list[InjectOnion | Later]:
        """What to send for a message that reached V, the answer first and
        what nobody waits for as a ``Later`` (raises Dropped to ignore it)."""
        try:
            kind = d.payload.content_kind()
        except WireError as e:
            raise Dropped("bad_payload", str(e)) from None
        if d.kind == RECIPIENT and kind == "offer_paths_request":
            return self._offer_paths_request(d, now)
        if d.kind == SERVE and kind == "serve_static_invoice":
            return self._serve_static_invoice(d, now)
        if d.kind == OFFER and kind == "invoice_request":
            return self._invoice_request(d, now)
        raise Dropped("unexpected_message", f"{kind} on a {d.kind} path")

    def _offer_paths_request(self, d: Delivered, now: int) -> list[InjectOnion]:
        slot = d.payload.offer_paths_request.invoice_slot
        rid = d.recipient_id
        if slot >= self.config.max_slots_per_recipient:
            raise Dropped("slot_out_of_range", f"{rid} slot {slot}")
        if d.payload.reply_path is None:
            raise Dropped("no_reply_path")
        # Each request mints stored contexts: it costs like a persist.
        if not self.persist_limits.allow(rid, now):
            raise Dropped("rate_limited_persist", rid)
        expires_at = now + self.config.offer_paths_ttl
        offer_id, serve_id = self.endpoint.rng(32), self.endpoint.rng(32)
        with self.store.tx():
            self.store.touch_recipient(rid, now)
            offer_path = self.endpoint.mint_path(OFFER, rid, slot, expires_at, now, path_id=offer_id)
            serve_path = self.endpoint.mint_path(SERVE, rid, slot, expires_at, now, path_id=serve_id)
            self.store.add_issued_offer_path(offer_path.encode(), rid, slot, expires_at, offer_id, serve_id)
            # Bounded state: only the newest sets survive, and the set the
            # stored invoice uses, whatever its age.
            self.store.prune_issued_offer_paths(rid, slot, self.config.max_offer_paths_per_slot,
                                                self._paths_in_use(rid, slot))
            self.store.bump("offer_paths_sent")
        reply = OnionMessagePayload(
            offer_paths=OfferPaths(paths=[offer_path], paths_absolute_expiry=expires_at),
            reply_path=serve_path,
        )
        log.debug("offer paths for %s slot %d", rid, slot)
        return [self._send(d.payload.reply_path, reply, "offer_paths")]

    def _paths_in_use(self, rid: str, slot: int) -> list[bytes]:
        row = self.store.invoice(rid, slot)
        if row is None:
            return []
        try:
            return [p.encode() for p in StaticInvoice.decode(row[0]).offer_paths or []]
        except WireError:
            return []

    def _serve_static_invoice(self, d: Delivered, now: int) -> list[InjectOnion]:
        rid, slot = d.recipient_id, d.invoice_slot
        assert slot is not None
        msg = d.payload.serve_static_invoice
        if not self.persist_limits.allow(rid, now):
            raise Dropped("rate_limited_persist", rid)
        if len(msg.invoice) > self.config.max_invoice_bytes:
            raise Dropped("invoice_too_large", f"{len(msg.invoice)} bytes")
        try:
            inv = StaticInvoice.decode(msg.invoice)
            inv.validate(now, self.chain)
        except WireError as e:
            raise Dropped("invalid_invoice", str(e)) from None
        ours = 0
        for path in inv.offer_paths:
            owner = self.store.offer_path_owner(path.encode())
            if owner is None and path.introduction.node_id not in (None, self.endpoint.node_id):
                continue  # another server's path: a wallet may register one offer with several servers
            if owner is None or (owner[0], owner[1]) != (rid, slot):
                raise Dropped("foreign_offer_path", f"{rid} slot {slot}")
            ours += 1
        if not ours:
            raise Dropped("foreign_offer_path", f"{rid} slot {slot}: none of its offer paths is ours")
        with self.store.tx():
            self.store.put_invoice(
                rid, slot, msg.invoice, msg.forward_invoice_request_path.encode(),
                ldk_offer_id(inv.to_records()), inv.invoice_created_at, inv.expires_at(), now,
            )
            self.store.bump("invoices_stored")
        log.debug("stored static invoice for %s slot %d", rid, slot)
        if d.payload.reply_path is None:
            return []
        reply = OnionMessagePayload(static_invoice_persisted=StaticInvoicePersisted())
        return [self._send(d.payload.reply_path, reply, "static_invoice_persisted")]

    def _invoice_request(self, d: Delivered, now: int) -> list[InjectOnion]:
        rid, slot = d.recipient_id, d.invoice_slot
        assert slot is not None
        if d.payload.reply_path is None:
            raise Dropped("no_reply_path")
        row = self.store.invoice(rid, slot)
        if row is None:
            raise Dropped("no_invoice", f"{rid} slot {slot}")
        invoice, forward_path, expires_at = row
        if now >= expires_at:
            raise Dropped("invoice_expired", f"{rid} slot {slot}")
        try:
            req = InvoiceRequest.decode(d.payload.invoice_request)
        except WireError as e:
            raise Dropped("invalid_invoice_request", str(e)) from None
        if not req.signature_ok():
            raise Dropped("invalid_invoice_request", "bad signature")
        # The request must be for the offer this invoice answers.
        if offer_records(req.to_records()) != self._offer_records(rid, slot, invoice):
            raise Dropped("offer_mismatch", f"{rid} slot {slot}")
        # Rate limits only once the request is verified: garbage costs no
        # token. The source's own share first, so that one source alone
        # cannot use up the recipient's budget.
        if d.source is not None and not self.serve_source_limits.allow(f"{d.source}/{rid}", now):
            raise Dropped("rate_limited_serve_source", f"{d.source} for {rid}")
        if not self.serve_limits.allow(rid, now):
            raise Dropped("rate_limited_serve", rid)
        self.books.served(rid, slot)
        self.books.bump("invoices_served")
        answer = self._send(d.payload.reply_path, OnionMessagePayload(static_invoice=invoice), "static_invoice")
        # Forward to the recipient so that, if it is online, it can answer
        # with a fresh BOLT 12 invoice (LDK: forward_invoice_request_path).
        # Never kept for a sleeping recipient (cln/lsp.py MAILBOX_PURPOSES):
        # the payer has the static invoice, and we do not control how many
        # requests strangers send (LDK stopped buffering them as a DoS fix,
        # lightningdevkit/rust-lightning#4114).
        # Built after the answer is sent: the payer does not wait for it.
        fwd = OnionMessagePayload(invoice_request=d.payload.invoice_request, reply_path=d.payload.reply_path)

        def forward() -> list[InjectOnion]:
            try:
                return [self._send(BlindedPath.decode(forward_path), fwd, "forward_invoice_request")]
            except WireError as e:  # checked when stored: not expected
                reason, detail = "bad_forward_path", str(e)
            except Dropped as e:
                reason, detail = e.reason, str(e)
            self.books.bump(f"dropped_{reason}")
            log.debug("not forwarding invoice_request for %s: %s", rid, detail)
            return []

        return [answer, Later(forward)]

    def _offer_records(self, rid: str, slot: int, invoice: bytes) -> list:
        """The offer records of the invoice stored for (rid, slot), decoded
        once per stored invoice (a replaced invoice is a different value)."""
        key = (rid, slot)
        hit = self._offers.get(key)
        if hit is not None and hit[0] == invoice:
            self._offers.move_to_end(key)
            return hit[1]
        records = offer_records(StaticInvoice.decode(invoice).to_records())
        self._offers[key] = (invoice, records)
        while len(self._offers) > OFFER_CACHE_SIZE:
            self._offers.popitem(last=False)
        return records

    def _send(self, dest: BlindedPath, payload: OnionMessagePayload, purpose: str) -> InjectOnion:
        return self.endpoint.send(dest, payload, purpose, self.resolve_intro)
