"""Claiming a payment to us (design §3 step 10, §8; LDK
``ln/channelmanager.rs`` async receive and ``offers/flow.rs``
``verify_static_invoice_payment``; the margins of LDK
``ln/onion_payment.rs`` ``create_recv_pending_htlc_info`` and
``chain/channelmonitor.rs`` ``HTLC_FAIL_BACK_BUFFER``).

The adapter gives ``Claimer.decide`` one HTLC whose blinded final hop it
decrypted, and gets back verdicts. A payment is ours when our hop's
``path_id`` keys a ``recipient:payment`` context (its owner names the offer
the path was made for, so an offer the slot has since replaced is still
paid); then:

* static invoice (a keysend preimage, 5482373484, in the payload): the
  preimage hashes to ``payment_hash``, the ``invoice_request`` (77777)
  parses, its signature verifies, and its offer records equal that offer's;
* BOLT 12 invoice we issued: we hold the preimage for ``payment_hash``;
* both: the amount covers the request (or the offer), and the CLTV is within
  our ``payment_constraints`` and more than ``recipient_claim_margin_blocks``
  + 1 blocks away (BOLT 4: fail an HTLC whose expiry is unreasonably near).

The preimage decision is durable before any verdict carries it: a payment is
recorded ``received`` (with its preimage and path) in the transaction that
decides the claim, and from then on every HTLC of it, a replay after a
restart or a late part, is resolved at once, never failed (failing it would
give up money whose preimage is already out).

Multi-part payments: the parts are stored (``recipient_claims``,
``recipient_parts``) until they reach ``total_msat``, so a restart in the
middle loses nothing: lightningd replays every HTLC we did not answer. A set
fails together after ``recipient_mpp_timeout`` seconds, or as soon as one of
its parts comes within the claim margin (checked on every block, timer tick
and on completion), always before any preimage is out. Only the parts
lightningd has handed to this process and not had answered (``live``: the
adapter's open calls) count towards the total: a part stored by an earlier
process may have been failed by lightningd itself while we were away, and
lightningd hands every part it still holds again after a restart. The number of sets
and parts waiting is bounded; a part beyond is failed before anything is
stored. Whatever is ours but wrong fails with
``incorrect_or_unknown_payment_details``; a path we do not know is not ours
(CLN's own offers use blinded paths too).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from .. import payment_log
from ..blinded_path import EncryptedData
from ..endpoint import Dropped
from ..offers import BITCOIN_CHAIN
from ..payment import HopPayload
from ..store import Store
from .config import HTLC_FAIL_BACK_BUFFER, RecipientConfig
from .recipient import PAYMENT, check_invoice_request, required_amount
from .records import Claim, Part, RecipientRecords

log = logging.getLogger("asyncpay.recipient.claim")

HtlcKey = tuple[str, int]  # (incoming short_channel_id, htlc id): stable across replays

# BOLT 4: PERM|15, with htlc_msat (u64) and height (u32).
INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS = 0x400F


@dataclass(frozen=True)
class Htlc:
    key: HtlcKey
    payment_hash: bytes
    amount_msat: int
    cltv_expiry: int
    payload: HopPayload
    data: EncryptedData  # our hop's decrypted encrypted_recipient_data


@dataclass(frozen=True)
class Resolve:
    preimage: bytes
    # This verdict's claim recorded the payment (the one moment to announce it).
    recorded: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class Fail:
    reason: str
    failure_message: bytes


@dataclass(frozen=True)
class Wait:
    """Part of a multi-part payment: the verdict comes later, when its set
    times out (``deadline``, seconds) at the latest."""

    deadline: int = field(default=0, compare=False)


Verdict = Resolve | Fail | Wait


@dataclass(frozen=True)
class _Checked:
    slot: int
    kind: str
    preimage: bytes
    required_msat: int
    offer_id: bytes | None


def failure(amount_msat: int, height: int) -> bytes:
    return (INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS.to_bytes(2, "big") + amount_msat.to_bytes(8, "big")
            + height.to_bytes(4, "big"))


class Claimer:
    def __init__(self, store: Store, config: RecipientConfig, chain: bytes = BITCOIN_CHAIN) -> None:
        self.store, self.config, self.chain = store, config, chain
        self.records = RecipientRecords(store)
        # Never below LDK's HTLC_FAIL_BACK_BUFFER, whatever the config says (options.load validates it too).
        self.margin = max(config.recipient_claim_margin_blocks, HTLC_FAIL_BACK_BUFFER)

    def is_ours(self, data: EncryptedData, payment_hash: bytes, now: int) -> bool:
        """Our payment context; or a payment whose preimage we gave out (any HTLC paying
        it to us is resolved: a replay whose context was purged since, a part sent over
        another of our paths); or a set waiting over this path."""
        path_id = data.path_id
        if path_id is None or len(path_id) != 32:
            return False
        ctx = self.store.context(path_id)
        if ctx is not None and ctx[0] == PAYMENT:
            return True
        if self.preimage_out(payment_hash) is not None:
            return True
        claim = self.records.claim(payment_hash)
        return claim is not None and claim.path_id == path_id

    def knows(self, key: HtlcKey, payment_hash: bytes) -> bool:
        """A replayed HTLC whose hop cannot be decrypted (no path key): ours if it is a
        part we stored, or pays a payment whose preimage we gave out (resolving it only gains)."""
        if self.preimage_out(payment_hash) is not None:
            return True
        part = self.records.part(key)
        return part is not None and part.payment_hash == payment_hash

    def preimage_out(self, payment_hash: bytes) -> bytes | None:
        """The preimage of a payment we decided to claim (durable), else None."""
        paid = self.records.payment(payment_hash)
        return paid["payment_preimage"] if paid is not None and paid["status"] == "received" else None

    def pending(self) -> dict[bytes, list[Part]]:
        """Multi-part payments waiting, with their parts."""
        return {c.payment_hash: self.records.parts_of(c.payment_hash) for c in self.records.claims.where()}

    def decide(self, htlc: Htlc, height: int, now: int,
               live: Collection[HtlcKey] = ()) -> list[tuple[HtlcKey, Verdict]]:
        """Verdicts for ``htlc`` and for any earlier parts its arrival settles;
        ``live``: the other parts lightningd handed to this process that wait
        for their verdict (only those count towards a total)."""
        # 1. The preimage is out already: resolve, whatever else holds (a replay, a late part).
        preimage = self.preimage_out(htlc.payment_hash)
        if preimage is not None:
            self.store.bump("claim_replayed")
            return [(htlc.key, Resolve(preimage))]
        # 2. A part we stored before a restart: it waits again (or its set is failed now).
        stored = self.records.part(htlc.key)
        if stored is not None and stored.payment_hash == htlc.payment_hash:
            claim = self.records.claim(htlc.payment_hash)
            if claim is not None:
                self.store.bump("claim_part_replayed")
                return self._complete(claim, htlc.key, height, now, live)
        # 3. A new HTLC.
        try:
            c = self._check(htlc, height, now)
        except Dropped as e:
            log.debug("failing HTLC %s: %s", htlc.payment_hash.hex(), e)
            return self._fail(htlc, height, e.reason)
        payment_log.changed(payment_log.RECIPIENT, htlc.payment_hash, "received", f"{htlc.amount_msat} msat")
        total = htlc.payload.total_amount_msat or htlc.amount_msat
        if total < c.required_msat:
            return self._fail(htlc, height, "amount_too_low")
        claim = self.records.claim(htlc.payment_hash)
        if claim is None and htlc.amount_msat >= total:
            return self._claim(htlc.payment_hash, htlc.data.path_id or b"", c.slot, c.kind, c.offer_id, c.preimage,
                               [(htlc.key, htlc.amount_msat)], now)
        sets, parts = self.records.pending_counts()
        if parts >= self.config.recipient_max_pending_parts or (
                claim is None and sets >= self.config.recipient_max_pending_payments):
            return self._fail(htlc, height, "too_many_pending")
        if claim is not None and (claim.total_msat != total or claim.preimage != c.preimage):
            return self._fail(htlc, height, "mpp_total_mismatch")
        part = Part(htlc.key[0], htlc.key[1], htlc.payment_hash, htlc.amount_msat, htlc.cltv_expiry, now)
        with self.store.tx():
            if claim is None:
                claim = Claim(htlc.payment_hash, htlc.data.path_id or b"", c.slot, c.kind, c.offer_id, c.preimage,
                              total, now + self.config.recipient_mpp_timeout, now)
                self.records.claims.put(claim)
            self.records.parts.put(part)
        return self._complete(claim, htlc.key, height, now, live)

    def _complete(self, claim: Claim, key: HtlcKey, height: int, now: int,
                  live: Collection[HtlcKey]) -> list[tuple[HtlcKey, Verdict]]:
        """The set failed if its time is up; claimed if the live parts reach the total; else ``key`` waits."""
        failed = self._check_set(claim, height, now)
        if failed:
            return failed
        got = [p for p in self.records.parts_of(claim.payment_hash) if p.key == key or p.key in live]
        if sum(p.amount_msat for p in got) < claim.total_msat:
            return [(key, Wait(claim.deadline))]
        # Complete: every part left the margin (_check_set) when the preimage goes out.
        return self._claim(claim.payment_hash, claim.path_id, claim.slot, claim.kind, claim.offer_id, claim.preimage,
                           [(p.key, p.amount_msat) for p in got], now)

    def forget_part(self, key: HtlcKey, payment_hash: bytes) -> None:
        """An HTLC the adapter failed after an error: it must not count towards its set."""
        with self.store.tx():
            self.store.conn.execute("DELETE FROM recipient_parts WHERE scid = ? AND htlc_id = ? AND payment_hash = ?",
                                    (key[0], key[1], payment_hash))
            self.store.conn.execute("DELETE FROM recipient_claims WHERE payment_hash = ? AND NOT EXISTS "
                                    "(SELECT 1 FROM recipient_parts WHERE payment_hash = ?)",
                                    (payment_hash, payment_hash))

    def expire(self, height: int, now: int) -> list[tuple[HtlcKey, Fail]]:
        """Fail every multi-part payment whose wait is over or one of whose parts
        came within the claim margin (LDK ``MppPart::check_onchain_timeout``)."""
        out: list[tuple[HtlcKey, Fail]] = []
        for claim in self.records.due_claims(now, height + self.margin):
            out += self._check_set(claim, height, now)
        return out

    def next_deadline(self) -> int | None:
        """When the earliest waiting set times out (seconds), for the adapter's timer."""
        return self.store.conn.execute("SELECT MIN(deadline) FROM recipient_claims").fetchone()[0]

    # -- internals -----------------------------------------------------------------

    def _near(self, cltv_expiry: int, height: int) -> bool:
        return cltv_expiry - height <= self.margin

    def _check_set(self, claim: Claim, height: int, now: int) -> list[tuple[HtlcKey, Fail]]:
        """Fail the whole set (deleting it) if its time is up or a part is within the margin."""
        parts = self.records.parts_of(claim.payment_hash)
        if now >= claim.deadline:
            reason = "mpp_timeout"
        elif any(self._near(p.cltv_expiry, height) for p in parts):
            reason = "mpp_expiry_near"
        else:
            return []
        with self.store.tx():
            self.records.drop_claim(claim.payment_hash)
            self.store.bump(f"claim_failed_{reason}")
        payment_log.changed(payment_log.RECIPIENT, claim.payment_hash, "failed", f"{len(parts)} parts: {reason}")
        return [(p.key, Fail(reason, failure(p.amount_msat, height))) for p in parts]

    def _claim(self, payment_hash: bytes, path_id: bytes, slot: int, kind: str, offer_id: bytes | None,
               preimage: bytes, parts: list[tuple[HtlcKey, int]], now: int) -> list[tuple[HtlcKey, Verdict]]:
        """Record the payment received (the durable preimage decision), then resolve every part."""
        amount = sum(a for _, a in parts)
        with self.store.tx():
            self.records.drop_claim(payment_hash)
            recorded = self.records.received(payment_hash, preimage, amount, slot, kind, now, path_id, offer_id)
            self.store.bump("recipient_payments_received" if recorded else "claim_replayed")
        if recorded:
            payment_log.changed(payment_log.RECIPIENT, payment_hash, "claimed", f"{amount} msat")
        return [(k, Resolve(preimage, recorded)) for k, _ in parts]

    def _fail(self, htlc: Htlc, height: int, reason: str) -> list[tuple[HtlcKey, Verdict]]:
        self.store.bump(f"claim_failed_{reason}")
        payment_log.changed(payment_log.RECIPIENT, htlc.payment_hash, "failed", reason)
        return [(htlc.key, Fail(reason, failure(htlc.amount_msat, height)))]

    def _check(self, htlc: Htlc, height: int, now: int) -> _Checked:
        """What a new HTLC pays for, or Dropped with the reason."""
        path_id = htlc.data.path_id
        ctx = self.store.context(path_id) if path_id else None
        if ctx is None or ctx[0] != PAYMENT:
            raise Dropped("unknown_path_id")
        _, owner, slot, expires_at = ctx
        if now >= expires_at:
            raise Dropped("expired_path_id")
        c = htlc.data.payment_constraints
        if c is not None and htlc.cltv_expiry > c.max_cltv_expiry:
            raise Dropped("cltv_too_far")
        # LDK onion_payment.rs: fail when cltv_expiry <= height + HTLC_FAIL_BACK_BUFFER + 1 (the +1 avoids a
        # race with the block that would fail it while it waits).
        if htlc.cltv_expiry <= height + self.margin + 1:
            raise Dropped("cltv_too_soon")
        p = htlc.payload
        if p.outgoing_cltv_value is not None and p.outgoing_cltv_value > htlc.cltv_expiry:
            raise Dropped("cltv_mismatch")
        if p.amt_to_forward is not None and htlc.amount_msat < p.amt_to_forward:
            raise Dropped("amount_mismatch")
        if c is not None and htlc.amount_msat < c.htlc_minimum_msat:
            raise Dropped("amount_too_low")
        if slot is None:
            raise Dropped("unknown_slot")
        offer, offer_id = self._offer_for(owner, slot)
        if p.keysend_preimage is not None:
            if hashlib.sha256(p.keysend_preimage).digest() != htlc.payment_hash:
                raise Dropped("wrong_preimage")
            if offer is None:
                raise Dropped("unknown_slot")
            req = check_invoice_request(p.invoice_request, offer, self.chain)
            required = required_amount(req)
            if required is None:
                raise Dropped("invalid_invoice_request", "no amount")
            return _Checked(slot, "static", p.keysend_preimage, required, offer_id)
        known = self.records.payment(htlc.payment_hash)
        if known is None or known["slot"] != slot or known["status"] != "expected":
            raise Dropped("unknown_payment_hash")
        return _Checked(slot, "invoice", known["payment_preimage"], known["amount_msat"] or 0,
                        known["offer_id"] or offer_id)

    def _offer_for(self, owner: str, slot: int) -> tuple[bytes | None, bytes | None]:
        """The offer a payment path was made for: the issued offer its context names (any
        offer of ours whose invoices may still be paid), else (older contexts) the slot's."""
        if len(owner) == 64:
            issued = self.records.issued_offer(bytes.fromhex(owner))
            if issued is None:
                raise Dropped("unknown_offer")
            return issued.offer, issued.offer_id
        row = self.records.offer(slot)
        return (row.offer, None) if row is not None else (None, None)
