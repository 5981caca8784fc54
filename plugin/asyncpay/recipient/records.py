"""The recipient's tables: the server it uses, one offer per slot, every
offer it issued, the multi-part payments being collected, and what it was
paid. Own migrations (``Store.migrate_component("recipient")``).

What a stranger can make us store, and what bounds it:

* ``recipient_claims`` / ``recipient_parts``: multi-part payments waiting for
  their other parts; at most ``recipient_max_pending_payments`` sets and
  ``recipient_max_pending_parts`` parts (a part beyond is failed before
  anything is stored); each set is deleted when it is claimed or failed
  (after ``recipient_mpp_timeout`` seconds at most, or at the claim margin).
* ``recipient_payments`` rows ``expected``: the preimages of BOLT 12 invoices
  we issued while online; at most ``recipient_max_expected_invoices``,
  deleted a day after the invoice expired. Rows ``received`` are the user's
  history and are kept: each one is a payment someone made to us.
* ``recipient_issued_offers``: one per offer we built (the user's requests
  and the server's offer paths), at most ``MAX_OFFERS_PER_SLOT`` per slot,
  deleted a day after the last static invoice for it expired.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..storage import SchemaEditor
from ..store import RowTable, Store


def _v1(db: SchemaEditor) -> None:
    db["recipient_server"].create({"id": int, "paths": bytes, "set_at": int}, pk="id")
    db["recipient_offers"].create(
        {"slot": int, "state": str, "description": str, "amount_msat": int, "nonce": bytes,
         "offer": bytes, "bolt12": str, "paths_expires_at": int, "serve_path": bytes,
         "invoice": bytes, "invoice_expires_at": int, "channel": str, "persisted_at": int,
         "created_at": int, "updated_at": int},
        pk="slot",
    )
    db["recipient_payments"].create(
        {"payment_hash": bytes, "payment_preimage": bytes, "amount_msat": int, "slot": int, "kind": str,
         "status": str, "received_at": int, "created_at": int},
        pk="payment_hash",
    )


def _v2(db: SchemaEditor) -> None:
    # Multi-part payments in flight survive a restart (lightningd replays every HTLC we did not answer).
    db["recipient_claims"].create(
        {"payment_hash": bytes, "path_id": bytes, "slot": int, "kind": str, "offer_id": bytes,
         "preimage": bytes, "total_msat": int, "deadline": int, "created_at": int},
        pk="payment_hash",
    )
    db["recipient_parts"].create(
        {"scid": str, "htlc_id": int, "payment_hash": bytes, "amount_msat": int, "cltv_expiry": int,
         "created_at": int},
        pk=("scid", "htlc_id"),
    )
    db["recipient_parts"].create_index(["payment_hash"])
    # Payments are keyed to the offer they were made for, not to the slot's current offer.
    db["recipient_issued_offers"].create(
        {"offer_id": bytes, "slot": int, "offer": bytes, "bolt12": str, "nonce": bytes, "expires_at": int,
         "created_at": int},
        pk="offer_id",
    )
    db["recipient_issued_offers"].create_index(["slot"])
    db["recipient_payments"].add_column("path_id", bytes)
    db["recipient_payments"].add_column("offer_id", bytes)
    for slot, offer, bolt12, nonce, exp, created in db.execute(
            "SELECT slot, offer, bolt12, nonce, invoice_expires_at, created_at FROM recipient_offers "
            "WHERE offer IS NOT NULL").fetchall():
        db.execute("INSERT INTO recipient_issued_offers (offer_id, slot, offer, bolt12, nonce, expires_at, "
                   "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                   (offer_id_of(offer), slot, offer, bolt12, nonce, (exp or created) + 86400, created))


def _v3(db: SchemaEditor) -> None:
    # One offer, several static invoice servers (at most MAX_SERVERS): each one's offer paths,
    # serve path and confirmation, per slot. A slot's earlier single server becomes server ''.
    db["recipient_offer_servers"].create(
        {"slot": int, "server": str, "paths": bytes, "paths_expires_at": int, "serve_path": bytes,
         "persisted_at": int, "requested_at": int, "answered_at": int},
        pk=("slot", "server"),
    )
    db.execute("INSERT INTO recipient_offer_servers (slot, server, paths, paths_expires_at, serve_path, "
               "persisted_at, requested_at, answered_at) SELECT slot, '', NULL, paths_expires_at, serve_path, "
               "persisted_at, created_at, updated_at FROM recipient_offers WHERE serve_path IS NOT NULL")


def _v4(db: SchemaEditor) -> None:
    # Timers and prunes find what is due through an index on its time (issue 24):
    # received payments and old offers grow, a pass must not read them all.
    db["recipient_payments"].create_index(["status", "created_at"])
    db["recipient_issued_offers"].create_index(["expires_at"])
    db["recipient_claims"].create_index(["deadline"])
    db["recipient_parts"].create_index(["cltv_expiry"])


MIGRATIONS = [_v1, _v2, _v3, _v4]
MAX_OFFERS_PER_SLOT = 16  # older offers of a slot (beyond the user's or the server's churn) are forgotten

# Offer states: paths asked for; invoice sent to the server; server confirmed it.
REQUESTED, PENDING, READY = "requested", "pending", "ready"


def offer_id_of(offer: bytes) -> bytes:
    return hashlib.sha256(offer).digest()


@dataclass
class IssuedOffer:
    offer_id: bytes
    slot: int
    offer: bytes
    bolt12: str | None
    nonce: bytes
    expires_at: int
    created_at: int


@dataclass
class Claim:
    """A multi-part payment whose parts are being collected: no preimage is out yet."""

    payment_hash: bytes
    path_id: bytes
    slot: int
    kind: str
    offer_id: bytes | None
    preimage: bytes
    total_msat: int
    deadline: int
    created_at: int


@dataclass(frozen=True)
class Part:
    scid: str
    htlc_id: int
    payment_hash: bytes
    amount_msat: int
    cltv_expiry: int
    created_at: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.scid, self.htlc_id)


@dataclass
class OfferRow:
    slot: int
    state: str
    description: str | None
    amount_msat: int | None
    nonce: bytes
    offer: bytes | None = None
    bolt12: str | None = None
    paths_expires_at: int | None = None
    serve_path: bytes | None = None
    invoice: bytes | None = None
    invoice_expires_at: int | None = None
    channel: str | None = None
    persisted_at: int | None = None
    created_at: int = 0
    updated_at: int = 0


@dataclass
class OfferServer:
    """One static invoice server's part in a slot's offer. ``server`` is its
    node id in hex ('' for the one server of an offer made before several
    were possible)."""

    slot: int
    server: str
    paths: bytes | None = None  # its offer paths (concatenated), from its last offer_paths
    paths_expires_at: int | None = None
    serve_path: bytes | None = None  # where serve_static_invoice goes
    persisted_at: int | None = None  # it confirmed our current static invoice
    requested_at: int | None = None  # this round's offer_paths_request went out
    answered_at: int | None = None  # its last offer_paths came

    def answered(self) -> bool:
        """Its paths came in answer to this round's request."""
        return self.paths is not None and (self.answered_at or 0) >= (self.requested_at or 0)


class RecipientRecords:
    def __init__(self, store: Store) -> None:
        self.store = store
        store.migrate_component("recipient", MIGRATIONS)
        self.offer_rows = RowTable(store, "recipient_offers", OfferRow, "slot")
        self.put_offer, self.offer = self.offer_rows.put, self.offer_rows.get
        self.issued = RowTable(store, "recipient_issued_offers", IssuedOffer, "offer_id")
        self.claims = RowTable(store, "recipient_claims", Claim, "payment_hash")
        self.parts = RowTable(store, "recipient_parts", Part, "scid")  # keyed by (scid, htlc_id): see part()
        self.offer_servers = RowTable(store, "recipient_offer_servers", OfferServer, "slot")
        self.put_offer_server = self.offer_servers.put

    @property
    def conn(self):
        return self.store.conn

    # -- the server ----------------------------------------------------------

    def set_server(self, paths: bytes, now: int) -> None:
        self.conn.execute(
            "INSERT INTO recipient_server (id, paths, set_at) VALUES (1, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET paths = excluded.paths, set_at = excluded.set_at",
            (paths, now),
        )

    def server(self) -> bytes | None:
        row = self.conn.execute("SELECT paths FROM recipient_server WHERE id = 1").fetchone()
        return row[0] if row else None

    # -- offers ----------------------------------------------------------------

    def offers(self) -> list[OfferRow]:
        return self.offer_rows.where(order="slot")

    def servers_of(self, slot: int) -> list[OfferServer]:
        return self.offer_servers.where("slot = ?", (slot,), order="server")

    def offer_server(self, slot: int, server: str) -> OfferServer | None:
        [row] = self.offer_servers.where("slot = ? AND server = ?", (slot, server)) or [None]
        return row

    def drop_offer_servers(self, slot: int, keep: tuple[str, ...]) -> None:
        """Forget the slot's servers we no longer use."""
        marks = ", ".join("?" * len(keep)) or "''"
        self.conn.execute(f"DELETE FROM recipient_offer_servers WHERE slot = ? AND server NOT IN ({marks})",
                          (slot, *keep))

    # -- issued offers -----------------------------------------------------------

    def issue_offer(self, slot: int, offer: bytes, bolt12: str | None, nonce: bytes, now: int) -> bytes:
        """Remember an offer we built, so that payments for it stay claimable after the
        slot moves on to another offer; the slot keeps at most MAX_OFFERS_PER_SLOT."""
        oid = offer_id_of(offer)
        self.conn.execute("INSERT INTO recipient_issued_offers (offer_id, slot, offer, bolt12, nonce, expires_at, "
                          "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                          (oid, slot, offer, bolt12, nonce, now + 86400, now))
        self.conn.execute(
            "DELETE FROM recipient_issued_offers WHERE slot = ? AND offer_id NOT IN (SELECT offer_id FROM "
            "recipient_issued_offers WHERE slot = ? ORDER BY created_at DESC, rowid DESC LIMIT ?)",
            (slot, slot, MAX_OFFERS_PER_SLOT))
        return oid

    def offer_valid_until(self, offer_id: bytes, until: int) -> None:
        """A static invoice (or invoice) for the offer is valid until ``until``: keep it a day longer."""
        keep = until + 86400
        self.conn.execute("UPDATE recipient_issued_offers SET expires_at = ? WHERE offer_id = ? AND expires_at < ?",
                          (keep, offer_id, keep))

    def issued_offer(self, offer_id: bytes) -> IssuedOffer | None:
        return self.issued.get(offer_id)

    def prune_offers(self, now: int) -> int:
        """Forget offers no invoice of ours can be paid for any more (never a slot's current one)."""
        return self.conn.execute(
            "DELETE FROM recipient_issued_offers WHERE expires_at < ? AND offer NOT IN "
            "(SELECT offer FROM recipient_offers WHERE offer IS NOT NULL)", (now,)).rowcount

    # -- multi-part payments being collected -----------------------------------

    def claim(self, payment_hash: bytes) -> Claim | None:
        return self.claims.get(payment_hash)

    def part(self, key: tuple[str, int]) -> Part | None:
        [row] = self.parts.where("scid = ? AND htlc_id = ?", key) or [None]
        return row

    def parts_of(self, payment_hash: bytes) -> list[Part]:
        return self.parts.where("payment_hash = ?", (payment_hash,), order="created_at, scid, htlc_id")

    def due_claims(self, now: int, near: int) -> list[Claim]:
        """Sets whose wait is over (``deadline`` <= ``now``) or with a part whose
        ``cltv_expiry`` is at or below ``near``, through the deadline and
        cltv_expiry indexes: a timer pass reads what is due (issue 24)."""
        rows = self.claims.where("deadline <= ?", (now,))
        hashes = {h for (h,) in self.conn.execute(
            "SELECT payment_hash FROM recipient_parts WHERE cltv_expiry <= ?", (near,)).fetchall()}
        if hashes:
            rows += self.claims.where_in("payment_hash", tuple(hashes))
        unique = {c.payment_hash: c for c in rows}
        return sorted(unique.values(), key=lambda c: (c.created_at, c.payment_hash))

    def pending_counts(self) -> tuple[int, int]:
        """(sets, parts) waiting."""
        sets = self.conn.execute("SELECT COUNT(*) FROM recipient_claims").fetchone()[0]
        parts = self.conn.execute("SELECT COUNT(*) FROM recipient_parts").fetchone()[0]
        return sets, parts

    def drop_claim(self, payment_hash: bytes) -> None:
        self.conn.execute("DELETE FROM recipient_parts WHERE payment_hash = ?", (payment_hash,))
        self.conn.execute("DELETE FROM recipient_claims WHERE payment_hash = ?", (payment_hash,))

    # -- payments --------------------------------------------------------------

    def expect_payment(self, payment_hash: bytes, preimage: bytes, slot: int, amount_msat: int | None,
                       now: int, offer_id: bytes | None = None) -> None:
        """A BOLT 12 invoice we issued: its preimage, kept until it is paid."""
        self.conn.execute(
            "INSERT INTO recipient_payments (payment_hash, payment_preimage, amount_msat, slot, kind, "
            "status, received_at, created_at, offer_id) VALUES (?, ?, ?, ?, 'invoice', 'expected', NULL, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (payment_hash, preimage, amount_msat, slot, now, offer_id),
        )

    def expected_count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM recipient_payments WHERE status = 'expected'").fetchone()[0]

    def prune_expected(self, before: int) -> int:
        """Forget the preimages of invoices nobody paid (issued before ``before``):
        a payer's requests must not grow our store without bound."""
        return self.conn.execute(
            "DELETE FROM recipient_payments WHERE status = 'expected' AND created_at < ?", (before,)).rowcount

    def payment(self, payment_hash: bytes) -> dict | None:
        row = self.conn.execute(
            "SELECT payment_hash, payment_preimage, amount_msat, slot, kind, status, received_at, path_id, offer_id "
            "FROM recipient_payments WHERE payment_hash = ?", (payment_hash,)).fetchone()
        keys = ("payment_hash", "payment_preimage", "amount_msat", "slot", "kind", "status", "received_at",
                "path_id", "offer_id")
        return dict(zip(keys, row)) if row else None

    def received(self, payment_hash: bytes, preimage: bytes, amount_msat: int, slot: int, kind: str,
                 now: int, path_id: bytes | None = None, offer_id: bytes | None = None) -> bool:
        """Record a claimed payment: from here on its preimage is out, and every HTLC
        of it is resolved. False if it was already recorded (a replay)."""
        cur = self.conn.execute(
            "INSERT INTO recipient_payments (payment_hash, payment_preimage, amount_msat, slot, kind, status, "
            "received_at, created_at, path_id, offer_id) VALUES (?, ?, ?, ?, ?, 'received', ?, ?, ?, ?) "
            "ON CONFLICT(payment_hash) DO UPDATE SET status = 'received', amount_msat = excluded.amount_msat, "
            "received_at = excluded.received_at, path_id = excluded.path_id, "
            "offer_id = COALESCE(recipient_payments.offer_id, excluded.offer_id) "
            "WHERE recipient_payments.status != 'received'",
            (payment_hash, preimage, amount_msat, slot, kind, now, now, path_id, offer_id),
        )
        return cur.rowcount > 0

    def payments(self) -> list[dict]:
        rows = self.conn.execute(
            "SELECT p.payment_hash, p.payment_preimage, p.amount_msat, COALESCE(i.bolt12, o.bolt12), p.slot, p.kind, "
            "p.received_at FROM recipient_payments p LEFT JOIN recipient_offers o ON o.slot = p.slot "
            "LEFT JOIN recipient_issued_offers i ON i.offer_id = p.offer_id "
            "WHERE p.status = 'received' ORDER BY p.received_at, p.payment_hash").fetchall()
        return [
            {"payment_hash": r[0].hex(), "payment_preimage": r[1].hex(), "amount_msat": r[2], "bolt12": r[3],
             "slot": r[4], "kind": r[5], "received_at": r[6]}
            for r in rows
        ]
