"""Claiming a payment to us (design §3 step 10, §8; LDK
``ln/channelmanager.rs`` async receive and ``offers/flow.rs``
``verify_static_invoice_payment``).

The adapter gives ``Claimer.decide`` one HTLC whose blinded final hop it
decrypted, and gets back verdicts. A payment is ours when our hop's
``path_id`` keys a ``recipient:payment`` context; then:

* static invoice (a keysend preimage, 5482373484, in the payload): the
  preimage hashes to ``payment_hash``, the ``invoice_request`` (77777)
  parses, its signature verifies, and its offer records equal our offer's;
* BOLT 12 invoice we issued: we hold the preimage for ``payment_hash``;
* both: the amount covers the request (or the offer), and the CLTV is within
  our ``payment_constraints`` and not too close.

Multi-part payments wait until their parts reach ``total_msat``, or fail
together after ``recipient_mpp_timeout``. Whatever is ours but wrong fails
with ``incorrect_or_unknown_payment_details``; a path we do not know is not
ours (CLN's own offers use blinded paths too). Claiming is idempotent: an
HTLC lightningd replays after a restart is resolved again with the same
preimage, and recorded once.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from ..blinded_path import EncryptedData
from ..endpoint import Dropped
from ..offers import BITCOIN_CHAIN
from ..payment import HopPayload
from ..store import Store
from .config import RecipientConfig
from .recipient import PAYMENT, check_invoice_request, required_amount
from .records import RecipientRecords

log = logging.getLogger("asyncpay.recipient.claim")

HtlcKey = tuple[str, int]  # (incoming short_channel_id, htlc id): stable across replays

# BOLT 4: PERM|15, with htlc_msat (u64) and height (u32).
INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS = 0x400F
# Our hop must leave us at least this many blocks to claim on chain.
MIN_CLTV_SLACK = 3


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


@dataclass(frozen=True)
class Fail:
    reason: str
    failure_message: bytes


class Wait:
    """Part of a multi-part payment: the verdict comes later."""


@dataclass
class _PartSet:
    total_msat: int
    required_msat: int
    slot: int
    kind: str
    preimage: bytes
    deadline: int
    parts: dict[HtlcKey, int] = field(default_factory=dict)


def failure(amount_msat: int, height: int) -> bytes:
    return (INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS.to_bytes(2, "big") + amount_msat.to_bytes(8, "big")
            + height.to_bytes(4, "big"))


class Claimer:
    def __init__(self, store: Store, config: RecipientConfig, chain: bytes = BITCOIN_CHAIN) -> None:
        self.store, self.config, self.chain = store, config, chain
        self.records = RecipientRecords(store)
        self.pending: dict[bytes, _PartSet] = {}

    def is_ours(self, data: EncryptedData, now: int) -> bool:
        path_id = data.path_id
        ctx = self.store.context(path_id) if path_id is not None and len(path_id) == 32 else None
        return ctx is not None and ctx[0] == PAYMENT

    def decide(self, htlc: Htlc, height: int, now: int) -> list[tuple[HtlcKey, Resolve | Fail | Wait]]:
        """Verdicts for ``htlc`` and for any earlier parts its arrival settles."""
        try:
            slot, kind, preimage, required = self._check(htlc, height, now)
        except Dropped as e:
            self.store.bump(f"claim_failed_{e.reason}")
            log.info("failing HTLC %s: %s", htlc.payment_hash.hex(), e)
            return [(htlc.key, Fail(e.reason, failure(htlc.amount_msat, height)))]
        total = htlc.payload.total_amount_msat or htlc.amount_msat
        if total < required:
            return self._fail(htlc, height, "amount_too_low")
        s = self.pending.get(htlc.payment_hash)
        if s is None:
            s = _PartSet(total, required, slot, kind, preimage, now + self.config.recipient_mpp_timeout)
            self.pending[htlc.payment_hash] = s
        elif s.total_msat != total:
            return self._fail(htlc, height, "mpp_total_mismatch")
        s.parts[htlc.key] = htlc.amount_msat
        if sum(s.parts.values()) < s.total_msat:
            return [(htlc.key, Wait())]
        del self.pending[htlc.payment_hash]
        amount = sum(s.parts.values())
        with self.store.tx():
            if self.records.received(htlc.payment_hash, s.preimage, amount, s.slot, s.kind, now):
                self.store.bump("recipient_payments_received")
            else:
                self.store.bump("claim_replayed")
        return [(k, Resolve(s.preimage)) for k in s.parts]

    def expire(self, height: int, now: int) -> list[tuple[HtlcKey, Fail]]:
        """Fail the parts of every multi-part payment whose wait is over."""
        out = []
        for h, s in list(self.pending.items()):
            if now >= s.deadline:
                del self.pending[h]
                self.store.bump("claim_failed_mpp_timeout")
                out += [(k, Fail("mpp_timeout", failure(amt, height))) for k, amt in s.parts.items()]
        return out

    def _fail(self, htlc: Htlc, height: int, reason: str):
        self.store.bump(f"claim_failed_{reason}")
        return [(htlc.key, Fail(reason, failure(htlc.amount_msat, height)))]

    def _check(self, htlc: Htlc, height: int, now: int) -> tuple[int, str, bytes, int]:
        """(slot, kind, preimage, required amount), or Dropped with the reason."""
        path_id = htlc.data.path_id
        ctx = self.store.context(path_id) if path_id else None
        if ctx is None or ctx[0] != PAYMENT:
            raise Dropped("unknown_path_id")
        _, _, slot, expires_at = ctx
        if now >= expires_at:
            raise Dropped("expired_path_id")
        c = htlc.data.payment_constraints
        if c is not None and htlc.cltv_expiry > c.max_cltv_expiry:
            raise Dropped("cltv_too_far")
        if htlc.cltv_expiry < height + MIN_CLTV_SLACK:
            raise Dropped("cltv_too_soon")
        p = htlc.payload
        if p.outgoing_cltv_value is not None and p.outgoing_cltv_value > htlc.cltv_expiry:
            raise Dropped("cltv_mismatch")
        if p.amt_to_forward is not None and htlc.amount_msat < p.amt_to_forward:
            raise Dropped("amount_mismatch")
        if c is not None and htlc.amount_msat < c.htlc_minimum_msat:
            raise Dropped("amount_too_low")
        assert slot is not None
        if p.keysend_preimage is not None:
            if hashlib.sha256(p.keysend_preimage).digest() != htlc.payment_hash:
                raise Dropped("wrong_preimage")
            row = self.records.offer(slot)
            if row is None or row.offer is None:
                raise Dropped("unknown_slot")
            req = check_invoice_request(p.invoice_request, row.offer, self.chain)
            required = required_amount(req)
            if required is None:
                raise Dropped("invalid_invoice_request", "no amount")
            return slot, "static", p.keysend_preimage, required
        known = self.records.payment(htlc.payment_hash)
        if known is None or known["slot"] != slot:
            raise Dropped("unknown_payment_hash")
        return slot, "invoice", known["payment_preimage"], known["amount_msat"] or 0
