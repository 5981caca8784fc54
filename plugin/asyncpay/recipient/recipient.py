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

Several servers (at most ``MAX_SERVERS``, told apart by their paths'
introduction nodes) give one offer no single point of failure: each is
asked for offer paths, the offer carries every server's paths (built once
all answered, or after ``SERVERS_WAIT`` seconds with those that did), the
one static invoice goes to each server, with payment and held-HTLC paths
through each LSP we have a channel with, and the slot is ready once one
server confirmed it.

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
from .records import PENDING, READY, REQUESTED, IssuedOffer, OfferRow, OfferServer, RecipientRecords, offer_id_of

log = logging.getLogger("asyncpay.recipient")

# Context kinds of the paths the recipient mints (owner: the slot, as text).
OFFER_PATHS = "recipient:offer_paths"  # reply path of offer_paths_request
PERSISTED = "recipient:persisted"  # reply path of serve_static_invoice
INVREQ = "recipient:invreq"  # forward_invoice_request_path [LSP -> us -> V]
HELD = "recipient:held"  # held_htlc_available_paths [LSP -> us -> V]
PAYMENT = "recipient:payment"  # our hop of a payment path (read in htlc_accepted)
KINDS = (OFFER_PATHS, PERSISTED, INVREQ, HELD)

REPLY_TTL = 24 * 3600  # a server that answers a day late is not answered
MAX_SERVERS = 3  # static invoice servers one wallet registers with (LDK: one)
SERVERS_WAIT = 10  # seconds an offer waits for the slowest server's paths before it is built without them
INVOICE_RELATIVE_EXPIRY = 7200  # BOLT 12's default for invoices


@dataclass(frozen=True)
class Snapshot:
    """What the adapter read from lightningd for this call."""

    channel: LspChannel | None
    height: int
    channels: tuple[LspChannel, ...] = ()  # to every server's node we have a channel with

    def lsp_channels(self) -> tuple[LspChannel, ...]:
        return self.channels or ((self.channel,) if self.channel is not None else ())

    def fingerprint(self) -> str:
        """Changes when a channel to an LSP opens, closes, or changes what a payer must know."""
        return "|".join(sorted(c.fingerprint() for c in self.lsp_channels()))


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

    def set_server(self, paths: list[BlindedPath], now: int) -> list[bytes]:
        """Use these paths' servers (told apart by introduction node): a
        server's new paths replace its earlier ones only. Returns every
        server in use; raises ValueError past ``MAX_SERVERS``."""
        if not paths:
            raise ValueError("at least one server path is needed")
        new: dict[bytes, list[BlindedPath]] = {}
        for p in paths:
            intro = self.resolve_intro(p.introduction)
            if intro is None:
                raise ValueError(f"cannot tell which node {p.introduction.describe()} is")
            new.setdefault(intro, []).append(p)
        merged = {k: v for k, v in self.servers().items() if k not in new} | new
        if len(merged) > MAX_SERVERS:
            raise ValueError(f"at most {MAX_SERVERS} static invoice servers (this would make {len(merged)})")
        self.records.set_server(b"".join(p.encode() for ps in merged.values() for p in ps), now)
        return list(merged)

    def servers(self) -> dict[bytes, list[BlindedPath]]:
        """Server node id -> its paths, in the order they were set."""
        out: dict[bytes, list[BlindedPath]] = {}
        for p in self.server_paths():
            out.setdefault(self.resolve_intro(p.introduction) or b"", []).append(p)
        return out

    def server_paths(self) -> list[BlindedPath]:
        return split_paths(self.records.server() or b"")

    def lsp_id(self) -> bytes | None:
        """The first server's node (the one of an offer made before several were possible)."""
        paths = self.server_paths()
        return self.resolve_intro(paths[0].introduction) if paths else None

    def lsp_ids(self) -> list[bytes]:
        return [k for k in self.servers() if k]

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
            self.records.drop_offer_servers(slot, ())
            return self._offer_paths_requests(slot, now, new_round=True)

    def _offer_paths_requests(self, slot: int, now: int, new_round: bool = False) -> list[InjectOnion]:
        """``offer_paths_request`` to each server: all of them when a round
        starts, else those that have not answered this round. A server we
        cannot reach does not keep the others from being asked."""
        servers = self.servers()
        if not servers:
            raise Dropped("no_server", "asyncpay-setserver first")
        self.records.drop_offer_servers(slot, ("", *(k.hex() for k in servers)))
        actions, reasons = [], []
        for server, paths in servers.items():
            srow = self.records.offer_server(slot, server.hex()) or OfferServer(slot, server.hex())
            if not new_round and srow.requested_at is not None and srow.answered():
                continue
            if new_round or srow.requested_at is None:
                srow.requested_at = now
                self.records.put_offer_server(srow)
            reply = self.endpoint.mint_path(OFFER_PATHS, owner_of(slot, server), slot, now + REPLY_TTL, now)
            payload = OnionMessagePayload(offer_paths_request=OfferPathsRequest(invoice_slot=slot), reply_path=reply)
            # Spread requests over the server's paths (a broken one does not block us).
            try:
                actions.append(self.endpoint.send(paths[slot % len(paths)], payload, "offer_paths_request",
                                                  self.resolve_intro))
            except Dropped as e:
                reasons.append(e)
        if reasons and not actions:
            raise reasons[0]
        return actions

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
                    # Stale paths: a new round, once (its requests went out after they went stale).
                    new_round = self._paths_stale(row, now) and self._round_at(row) <= \
                        (row.paths_expires_at or 0) - self.config.recipient_refresh_margin
                    if not new_round and self._can_build(row, now):
                        actions += self._build_and_serve(row, now, snap)
                    else:
                        actions += self._offer_paths_requests(row.slot, now, new_round)
                    continue
                margin = self.config.recipient_refresh_margin
                stale = row.invoice_expires_at is None or row.invoice_expires_at - now < margin
                changed = bool(snap.lsp_channels()) and snap.fingerprint() != row.channel
                # A channel to a server opened or closed: the served invoice has a path that
                # no longer works, or lacks one that does. Re-served at once (opening and
                # closing channels costs a transaction; a fee change waits for the interval).
                regrouped = bool(snap.lsp_channels()) and channel_set(snap.fingerprint()) != channel_set(row.channel)
                # A confirmed invoice served moments ago is not sent again on a reconnect or
                # a channel change: the next check after recipient_reserve_interval does it.
                recent = row.state == READY and now - row.updated_at < self.config.recipient_reserve_interval
                if force or stale or regrouped or ((reconnected or changed) and not recent):
                    actions += self._serve(row, now, snap)
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
        # One commit for the offer and its invoice (each commit is an fsync: issue 24).
        with self.store.tx():
            return self._offer_and_invoice(row, d, expiry, now, snap)

    def _offer_and_invoice(self, row: OfferRow, d: Delivered, expiry: int | None, now: int,
                           snap: Snapshot) -> list[InjectOnion]:
        msg = d.payload.offer_paths
        server = server_of(d.owner)
        srow = self.records.offer_server(row.slot, server) or OfferServer(row.slot, server, requested_at=now)
        srow.paths, srow.paths_expires_at = b"".join(p.encode() for p in msg.paths), expiry
        srow.serve_path, srow.answered_at = d.payload.reply_path.encode(), now
        self.records.put_offer_server(srow)
        if row.offer is None or self._paths_stale(row, now):
            if not self._can_build(row, now):
                return []  # another server's paths are still to come
            return self._build_and_serve(row, now, snap)
        return self._serve(row, now, snap, only=server)

    def _answered(self, row: OfferRow) -> list[OfferServer]:
        return [s for s in self.records.servers_of(row.slot) if s.answered()]

    def _round_at(self, row: OfferRow) -> int:
        """When this round of offer_paths_request started."""
        return min((s.requested_at for s in self.records.servers_of(row.slot) if s.requested_at is not None),
                   default=row.created_at)

    def _can_build(self, row: OfferRow, now: int) -> bool:
        """Every server answered this round, or the slowest had SERVERS_WAIT seconds."""
        answered = {s.server for s in self._answered(row)}
        if not answered:
            return False
        waited = now - self._round_at(row) >= SERVERS_WAIT
        return waited or {k.hex() for k in self.servers()} <= answered

    def _build_and_serve(self, row: OfferRow, now: int, snap: Snapshot) -> list[InjectOnion]:
        """One offer over every answering server's paths, then its invoice to each."""
        answered = self._answered(row)
        paths = [p for s in answered for p in split_paths(s.paths or b"")]
        expiries = [s.paths_expires_at for s in answered if s.paths_expires_at is not None]
        key = offer_key(self.key_base, row.nonce)
        offer = Offer(offer_chains=None if self.chain == BITCOIN_CHAIN else [self.chain],
                      offer_amount=row.amount_msat, offer_description=row.description,
                      offer_absolute_expiry=min(expiries) if expiries else None, offer_paths=paths,
                      offer_issuer_id=pubkey_of(key))
        try:
            offer.check()
        except WireError as e:
            raise Dropped("bad_offer_paths", str(e)) from None
        row.offer, row.bolt12 = offer.encode(), offer.to_string()
        row.paths_expires_at = min(expiries) if expiries else None
        # Kept past the slot's next offer: payers may hold its static invoice for days.
        self.records.issue_offer(row.slot, row.offer, row.bolt12, row.nonce, now)
        return self._serve(row, now, snap)

    def _serve(self, row: OfferRow, now: int, snap: Snapshot, only: str | None = None) -> list[InjectOnion]:
        """Build a fresh static invoice for the slot's offer and send it to
        each server whose paths the offer carries (or only to ``only``)."""
        if row.offer is None:
            raise Dropped("no_offer", f"slot {row.slot}")
        in_offer = {p.encode() for p in Offer.decode(row.offer).offer_paths or []}
        targets = [s for s in self.records.servers_of(row.slot) if s.serve_path and (only is None or s.server == only)
                   and (s.paths is None or any(p.encode() in in_offer for p in split_paths(s.paths)))]
        if not targets:
            raise Dropped("no_offer", f"slot {row.slot}: no server carries its paths")
        if not snap.lsp_channels():
            raise Dropped("no_lsp_channel", "no channel from a server's node")
        expires_at = now + self.config.recipient_invoice_ttl
        actions, reasons = [], []
        with self.store.tx():
            offer_id = self._issued(row, now)
            invoice = self._static_invoice(row, now, snap, expires_at, offer_id)
            encoded = invoice.encode()  # once: every server's onion and the row carry the same bytes
            for target in targets:
                server = bytes.fromhex(target.server) if target.server else self.lsp_id()
                try:
                    actions.append(self._serve_to(row, target, server, encoded, expires_at, offer_id, now))
                except Dropped as e:
                    reasons.append(e)
            if not actions:
                raise reasons[0]
            row.invoice, row.invoice_expires_at = encoded, invoice.expires_at()
            self.records.offer_valid_until(offer_id, max(invoice.expires_at(), expires_at))
            row.channel = snap.fingerprint()
            row.state = READY if row.state == READY else PENDING
            row.updated_at = now
            self.records.put_offer(row)
        return actions

    def _serve_to(self, row: OfferRow, target: OfferServer, server: bytes | None, invoice: bytes,
                  expires_at: int, offer_id: bytes, now: int) -> InjectOnion:
        assert target.serve_path is not None
        # Its owner names the offer: a request for it is answered after the slot moved on.
        fwd = self.endpoint.mint_path(INVREQ, offer_id.hex(), row.slot, expires_at, now,
                                      via=(server,) if server else ())
        payload = OnionMessagePayload(
            serve_static_invoice=ServeStaticInvoice(invoice=invoice, forward_invoice_request_path=fwd),
            reply_path=self.endpoint.mint_path(PERSISTED, owner_of(row.slot, server), row.slot, now + REPLY_TTL,
                                               now),
        )
        return self.endpoint.send(BlindedPath.decode(target.serve_path), payload, "serve_static_invoice",
                                  self.resolve_intro)

    def _issued(self, row: OfferRow, now: int) -> bytes:
        """The id of the slot's offer in the issued offers (recorded if it predates them)."""
        assert row.offer is not None
        offer_id = offer_id_of(row.offer)
        if self.records.issued_offer(offer_id) is None:
            self.records.issue_offer(row.slot, row.offer, row.bolt12, row.nonce, now)
        return offer_id

    def _static_invoice(self, row: OfferRow, now: int, snap: Snapshot, expires_at: int,
                        offer_id: bytes) -> StaticInvoice:
        assert row.offer is not None
        # A held_htlc_available path through each LSP: it reaches us through whichever is up.
        held = [self.endpoint.mint_path(HELD, offer_id.hex(), row.slot, now + self.config.recipient_held_paths_ttl,
                                        now, via=(ch.lsp_id,)) for ch in snap.lsp_channels()]
        return StaticInvoice.build(
            Offer.decode(row.offer), self.payment_paths(row.slot, offer_id, now, snap, expires_at), held, now,
            offer_key(self.key_base, row.nonce), relative_expiry=self.config.recipient_invoice_ttl,
        )

    def payment_paths(self, slot: int, offer_id: bytes, now: int, snap: Snapshot,
                      expires_at: int) -> list[BlindedPaymentPath]:
        """One path over each LSP channel, its path_id keying a payment context whose
        owner is the offer it pays (not the slot, whose offer may be replaced)."""
        max_cltv = snap.height + self.config.recipient_max_cltv_blocks
        out = []
        for channel in snap.lsp_channels():
            path_id = self.rng(32)
            # The context outlives the invoice by a day: an HTLC may arrive late.
            self.store.add_context(path_id, PAYMENT, offer_id.hex(), slot, expires_at + 86400, now)
            out.append(payment_path(self.rng, self.endpoint.node_id, channel, path_id, max_cltv,
                                    self.config.recipient_final_cltv_delta))
        return out

    def _persisted(self, d: Delivered, now: int) -> list[InjectOnion]:
        row = self._slot_row(d)
        if row.invoice is None:
            raise Dropped("unexpected_message", "persisted before anything was served")
        srow = self.records.offer_server(row.slot, server_of(d.owner))
        if srow is not None:
            srow.persisted_at = now
            self.records.put_offer_server(srow)
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
        if not snap.lsp_channels():
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


def channel_set(fingerprint: str | None) -> set[str]:
    """The (LSP, channel) pairs of a ``Snapshot.fingerprint``, without the fees."""
    return {":".join(x.split(":")[:2]) for x in (fingerprint or "").split("|") if x}


def owner_of(slot: int, server: bytes | None) -> str:
    """The owner of a path a server answers over: the slot and the server."""
    return f"{slot}@{server.hex()}" if server else str(slot)


def server_of(owner: str) -> str:
    """The server named by ``owner_of`` ('' for paths minted with one server)."""
    return owner.partition("@")[2]


def split_paths(blob: bytes) -> list[BlindedPath]:
    r, out = Reader(blob), []
    while not r.at_end():
        out.append(BlindedPath.read(r))
    return out


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
