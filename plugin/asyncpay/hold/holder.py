"""Holding a sender's HTLC at its LSP until the recipient releases it
(design §2 "payer's LSP", §4, §8; LDK ``ln/channelmanager.rs`` held HTLCs
for often-offline senders, here with the request in the onion:
``payment/hold_request.py``).

Sans-IO. The adapter hands ``accept`` an HTLC whose hop payload carries a
hold request; the verdict is ``Hold`` (answer later; onions to send),
``Forward`` (continue with the payload) or ``Refuse`` (fail it back). Then:

* ``release``: a ``release_held_htlc`` over the reply path we gave names the
  HTLC; a held one becomes RELEASED and is forwarded. Unknown, replayed or
  late releases do nothing.
* ``expire``: an HTLC whose outgoing CLTV comes within
  ``hold_min_blocks`` of the chain tip, or held longer than
  ``hold_max_seconds``, is failed back: never left without a verdict past
  its margin, never forwarded when its budget cannot reach the recipient.
* lightningd replays unresolved HTLCs after a restart: ``accept`` of a known
  key answers from the store (held again, forwarded if the release came
  meanwhile, refused if it was failed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..actions import InjectOnion
from ..endpoint import Delivered, Dropped, Endpoint, Resolver
from ..payment.hold_request import HoldRequest
from ..store import Store
from .config import HoldConfig
from .records import FAILED, FORWARDED, HELD, RELEASED, HeldRow, HoldRecords

log = logging.getLogger("asyncpay.hold")

RELEASE = "hold:release"  # reply path of our held_htlc_available (owner: the HTLC's key)
KINDS = (RELEASE,)
MAX_PATHS = 3  # held_htlc_available goes over at most this many paths

# BOLT 4 temporary_node_failure (NODE|2): the hold ended without a release.
TEMPORARY_NODE_FAILURE = bytes.fromhex("2002")


@dataclass(frozen=True)
class HtlcToHold:
    key: str
    payment_hash: bytes
    amount_msat: int
    cltv_expiry: int
    outgoing_cltv: int
    peer_id: str
    payload: bytes  # our hop's payload with the hold request taken out
    request: HoldRequest


@dataclass(frozen=True)
class Hold:
    actions: list[InjectOnion]


@dataclass(frozen=True)
class Forward:
    payload: bytes


@dataclass(frozen=True)
class Refuse:
    reason: str
    failure_message: bytes = TEMPORARY_NODE_FAILURE


class Holder:
    def __init__(self, store: Store, endpoint: Endpoint, config: HoldConfig, resolve_intro: Resolver) -> None:
        self.store, self.endpoint, self.config, self.resolve_intro = store, endpoint, config, resolve_intro
        self.records = HoldRecords(store)

    def accept(self, h: HtlcToHold, height: int, now: int) -> Hold | Forward | Refuse:
        known = self.records.get(h.key)
        if known is not None:  # a replay after a restart
            self.store.bump("hold_replayed")
            if known.state == HELD:
                return Hold([])
            if known.state in (RELEASED, FORWARDED):
                return Forward(known.payload)
            return Refuse(known.reason or "failed")
        reason = self._refusal(h, height, now)
        if reason is not None:
            self.store.bump(f"hold_refused_{reason}")
            return Refuse(reason)
        row = HeldRow(h.key, h.payment_hash, h.amount_msat, h.cltv_expiry, h.outgoing_cltv, h.peer_id, h.payload,
                      HELD, None, now, now)
        until = min(now + self.config.hold_max_seconds, h.request.hold_until or now + self.config.hold_max_seconds)
        with self.store.tx():  # held on disk before anyone can release it
            self.records.put(row)
            actions, unusable = self.endpoint.held_htlc_available(
                (h.request.held_htlc_available_paths or [])[:MAX_PATHS], RELEASE, h.key, until, now,
                self.resolve_intro)
            for reason in unusable:
                self.store.bump(f"hold_dropped_{reason}")
            if not actions:
                row.state, row.reason = FAILED, "no usable held_htlc_available path"
                self.records.put(row)
                return Refuse(row.reason)
            self.store.bump("hold_held")
        log.info("holding HTLC %s from %s until its release", h.payment_hash.hex(), h.peer_id)
        return Hold(actions)

    def _refusal(self, h: HtlcToHold, height: int, now: int) -> str | None:
        if h.outgoing_cltv - height < self.config.hold_min_blocks:
            return "cltv_budget"
        if h.request.hold_until is not None and h.request.hold_until <= now:
            return "hold_until_past"
        if self.records.count_held(h.peer_id) >= self.config.hold_max_per_peer:
            return "peer_limit"
        if self.records.count_held() >= self.config.hold_max_total:
            return "total_limit"
        return None

    def release(self, d: Delivered, height: int, now: int) -> HeldRow:
        """A ``release_held_htlc`` for one of our holds: the row, now
        RELEASED (raises Dropped for anything else)."""
        if d.payload.release_held_htlc is None:
            raise Dropped("unexpected_message", "not a release_held_htlc")
        row = self.records.get(d.owner)
        if row is None:
            raise Dropped("unknown_hold", d.owner)
        if row.state != HELD:
            raise Dropped("release_replayed" if row.state in (RELEASED, FORWARDED) else "release_too_late",
                          row.state)
        if row.outgoing_cltv - height < self.config.hold_min_blocks:
            self._fail(row, "cltv_budget", now)
            raise Dropped("release_too_late", "the CLTV budget is spent")
        row.state, row.updated_at = RELEASED, now
        self.records.put(row)
        self.store.bump("hold_released")
        return row

    def forwarded(self, key: str, now: int) -> None:
        row = self.records.get(key)
        if row is not None and row.state == RELEASED:
            row.state, row.updated_at = FORWARDED, now
            self.records.put(row)

    def expire(self, height: int, now: int) -> list[HeldRow]:
        """Holds whose margin or longest hold is reached, now FAILED."""
        out = []
        for row in self.records.by_state(HELD):
            if row.outgoing_cltv - height < self.config.hold_min_blocks:
                out.append(self._fail(row, "cltv_budget", now))
            elif now - row.since >= self.config.hold_max_seconds:
                out.append(self._fail(row, "held_too_long", now))
        return out

    def fail(self, payment_hash: bytes, now: int) -> list[HeldRow]:
        """The operator fails every held HTLC of a payment."""
        return [self._fail(r, "failed_by_operator", now) for r in self.records.by_payment_hash(payment_hash)
                if r.state in (HELD, RELEASED)]

    def _fail(self, row: HeldRow, reason: str, now: int) -> HeldRow:
        row.state, row.reason, row.updated_at = FAILED, reason, now
        self.records.put(row)
        self.store.bump(f"hold_failed_{reason}")
        log.info("failing held HTLC %s: %s", row.payment_hash.hex(), reason)
        return row
