"""Holding a sender's HTLC at its LSP until the recipient releases it
(design §2 "payer's LSP", §4, §8; LDK ``ln/channelmanager.rs`` held HTLCs
for often-offline senders, here with the request in the onion:
``payment/hold_request.py``).

Sans-IO. The adapter hands ``accept`` an HTLC whose hop payload carries a
hold request; the verdict is ``Hold`` (answer later; onions to send),
``Forward`` (continue with the payload) or ``Refuse`` (fail it back). Every
later change returns a ``Step``: the answers owed to HTLCs whose
``htlc_accepted`` call is still open, and onions to send.

* ``release``: a ``release_held_htlc`` over the reply path we gave names the
  HTLC; a held one within its budget becomes RELEASED and is continued
  (``Continue``). A release too late fails it (``FailBack``). Unknown or
  replayed releases raise ``Dropped`` and change nothing.
* ``tick`` (every block and every few seconds): an HTLC whose budget comes
  within ``hold_min_blocks`` of the tip, or whose ``hold_until`` or longest
  hold passed, is failed back; held ones get ``held_htlc_available`` again,
  with backoff.
* lightningd replays unresolved HTLCs after a restart: ``accept`` of a known
  key answers from the store (held again, forwarded if the release came
  meanwhile and the budget allows, refused if it was failed).
* An answer lost to the store (a commit that failed, or whose outcome is
  unknown: it may have landed) leaves the call open; the adapter passes its
  open calls to ``release`` and ``tick``, which answer each from the row as
  it is on disk (continue for a released or forwarded one within its
  budget, fail for a failed one). ``Hold.answer_by`` is when the adapter
  fails the call from memory if the store cannot be read by then
  (``open_calls.py``).

The budget of an HTLC is the last height at which we may still forward it:
min(incoming ``cltv_expiry`` - our ``cltv-delta``, outgoing CLTV). The
onion's outgoing CLTV alone is the sender's word; ``htlc_accepted`` runs
before lightningd checks the delta (BOLT 2 "cltv_expiry_delta"), so the
incoming expiry bounds the hold too.

FAILED is reached only through ``_fail``, which returns the ``FailBack``
the caller must hand on: a failed row whose HTLC is never answered cannot
be written.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from .. import payment_log
from ..actions import InjectOnion
from ..endpoint import Delivered, Dropped, Endpoint, Resolver
from ..open_calls import AnswerBy
from ..payment.forward_budget import CLN_CLTV_DELTA, forward_budget
from ..payment.hold_request import HoldRequest
from ..store import Store
from ..wire import WireError
from .config import HoldConfig
from .records import FAILED, FORWARDED, HELD, NEVER, RELEASED, HeldRow, HoldRecords

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
    # The private flag of each open channel with the peer (hold-clients).
    peer_channels_private: tuple[bool, ...] = ()


@dataclass(frozen=True)
class Hold:
    actions: list[InjectOnion]
    answer_by: AnswerBy  # when the call is failed back at the latest, store or no store


@dataclass(frozen=True)
class Forward:
    payload: bytes


@dataclass(frozen=True)
class Refuse:
    reason: str
    failure_message: bytes = TEMPORARY_NODE_FAILURE


@dataclass(frozen=True)
class Continue:
    """Answer the HTLC's open call: ``continue`` with ``payload``."""

    key: str
    payload: bytes

    def hook_answer(self) -> dict:
        return {"result": "continue", "payload": self.payload.hex()}


@dataclass(frozen=True)
class FailBack:
    """Answer the HTLC's open call: ``fail``. Its row is FAILED."""

    key: str
    reason: str
    failure_message: bytes = TEMPORARY_NODE_FAILURE

    def hook_answer(self) -> dict:
        return {"result": "fail", "failure_message": self.failure_message.hex()}


Answer = Continue | FailBack


@dataclass
class Step:
    answers: list[Answer] = field(default_factory=list)
    sends: list[InjectOnion] = field(default_factory=list)

    def __iadd__(self, other: Step) -> Step:
        self.answers += other.answers
        self.sends += other.sends
        return self


class Holder:
    def __init__(self, store: Store, endpoint: Endpoint, config: HoldConfig, resolve_intro: Resolver,
                 cltv_delta: int = CLN_CLTV_DELTA) -> None:
        self.store, self.endpoint, self.config, self.resolve_intro = store, endpoint, config, resolve_intro
        self.cltv_delta = cltv_delta  # lightningd's, read once by the adapter
        self.records = HoldRecords(store)

    # -- budget ------------------------------------------------------------

    def budget(self, cltv_expiry: int, outgoing_cltv: int) -> int:
        """The last height at which the HTLC may still be forwarded."""
        return forward_budget(cltv_expiry, outgoing_cltv, self.cltv_delta)

    def _deadline(self, row: HeldRow) -> int:
        longest = row.since + self.config.hold_max_seconds
        return min(row.deadline, longest) if row.deadline else longest

    def answer_by(self, row: HeldRow) -> AnswerBy:
        """The deadline and last height ``_end_reason`` lets a held row reach."""
        return AnswerBy(self._deadline(row),
                        self.budget(row.cltv_expiry, row.outgoing_cltv) - self.config.hold_min_blocks)

    def _end_reason(self, row: HeldRow, height: int, now: int) -> str | None:
        """Why this row must not be held (or forwarded) any more, if it must not."""
        if self.budget(row.cltv_expiry, row.outgoing_cltv) - height < self.config.hold_min_blocks:
            return "cltv_budget"
        if row.state == HELD and now >= self._deadline(row):
            return "held_too_long" if now >= row.since + self.config.hold_max_seconds else "hold_until"
        return None

    # -- a new HTLC, or lightningd's replay of one -------------------------

    def accept(self, h: HtlcToHold, height: int, now: int) -> Hold | Forward | Refuse:
        known = self.records.get(h.key)
        if known is not None:
            with self.store.tx():
                return self._replay(known, height, now)
        reason = self._refusal(h, height, now)
        if reason is not None:
            self.store.bump(f"hold_refused_{reason}")
            return Refuse(reason)
        longest = now + self.config.hold_max_seconds
        deadline = min(longest, h.request.hold_until) if h.request.hold_until is not None else longest
        row = HeldRow(h.key, h.payment_hash, h.amount_msat, h.cltv_expiry, h.outgoing_cltv, h.peer_id, h.payload,
                      HELD, None, now, now, deadline, h.request.encode())
        with self.store.tx():  # held on disk before anyone can release it
            self.records.put(row)
            actions = self._send(row, h.request, now)
            if not actions:
                self._fail(row, "no_usable_path", now)  # answered below, by the Refuse
                return Refuse("no_usable_path")
            self.store.bump("hold_held")
        payment_log.changed(payment_log.HOLD, h.payment_hash, "held", f"from {h.peer_id}")
        return Hold(actions, self.answer_by(row))

    def _replay(self, row: HeldRow, height: int, now: int) -> Hold | Forward | Refuse:
        """lightningd restarted and asks again about an HTLC it had no verdict for."""
        self.store.bump("hold_replayed")
        if row.state in (HELD, RELEASED):
            reason = self._end_reason(row, height, now)
            if reason is not None:
                return Refuse(self._fail(row, reason, now).reason)
        if row.state == HELD:
            # The first held_htlc_available may have been lost with us: send it again now.
            return Hold(self._resend(row, now), self.answer_by(row))
        if row.state in (RELEASED, FORWARDED):
            return Forward(row.payload)
        return Refuse(row.reason or "failed")

    def _refusal(self, h: HtlcToHold, height: int, now: int) -> str | None:
        if not self.config.serves(h.peer_id, h.peer_channels_private):
            return "not_client"
        if h.cltv_expiry - self.cltv_delta < h.outgoing_cltv:
            return "cltv_delta"  # the sender left us less than our delta: lightningd fails it anyway
        if self.budget(h.cltv_expiry, h.outgoing_cltv) - height < self.config.hold_min_blocks:
            return "cltv_budget"
        if h.request.hold_until is not None and h.request.hold_until <= now:
            return "hold_until_past"
        if self.records.count_held(h.peer_id) >= self.config.hold_max_per_peer:
            return "peer_limit"
        if self.records.count_held() >= self.config.hold_max_total:
            return "total_limit"
        return None

    # -- held_htlc_available, first and again ------------------------------

    def _send(self, row: HeldRow, request: HoldRequest, now: int) -> list[InjectOnion]:
        """One round of held_htlc_available, each with a fresh reply path
        that lives until the hold's deadline; the next round scheduled."""
        actions, unusable = self.endpoint.held_htlc_available(
            (request.held_htlc_available_paths or [])[:MAX_PATHS], RELEASE, row.key, self._deadline(row), now,
            self.resolve_intro)
        for reason in unusable:
            self.store.bump(f"hold_dropped_{reason}")
        row.sends += 1
        wait = min(self.config.hold_resend_first << min(row.sends - 1, 30), self.config.hold_resend_max_interval)
        row.next_send_at, row.updated_at = now + wait, now
        self.records.put(row)
        # Queued for a sleeping first hop, they count against the sender
        # whose HTLC we hold, not against one shared "no source" share.
        return [dataclasses.replace(a, cause=row.peer_id or None) for a in actions]

    def _resend(self, row: HeldRow, now: int) -> list[InjectOnion]:
        try:
            if row.sends >= self.config.hold_resend_attempts or not row.request:
                raise WireError("no send left")
            request = HoldRequest.decode(row.request)
        except WireError:
            if row.next_send_at != NEVER:  # never due for a send again: the timer stops finding it
                row.next_send_at = NEVER
                self.records.put(row)
            return []
        actions = self._send(row, request, now)
        self.store.bump("hold_resent", len(actions))
        return actions

    # -- release -----------------------------------------------------------

    def release(self, d: Delivered, height: int, now: int, open_calls: Collection[str] = ()) -> Step:
        """A ``release_held_htlc`` for one of our holds: ``Continue`` for a
        held HTLC within its budget and deadline, ``FailBack`` for one past
        them (raises Dropped for anything that changes nothing). A row already
        released or failed whose call is in ``open_calls`` (its answer was
        lost to the store) is answered as the row says."""
        if d.payload.release_held_htlc is None:
            raise Dropped("unexpected_message", "not a release_held_htlc")
        row = self.records.get(d.owner)
        if row is None:
            raise Dropped("unknown_hold", d.owner)
        if row.state != HELD and row.key in open_calls:
            answer = self._settle(row, height, now)
            if answer is not None:
                self.store.bump("hold_release_settled")
                return Step([answer])
        if row.state != HELD:
            raise Dropped("release_replayed" if row.state in (RELEASED, FORWARDED) else "release_too_late",
                          row.state)
        reason = self._end_reason(row, height, now)
        if reason is not None:
            self.store.bump("hold_release_too_late")
            return Step([self._fail(row, reason, now)])
        row.state, row.updated_at = RELEASED, now
        self.records.put(row)
        self.store.bump("hold_released")
        payment_log.changed(payment_log.HOLD, row.payment_hash, "released")
        return Step([Continue(row.key, row.payload)])

    def forwarded(self, key: str, now: int) -> None:
        """The adapter answered ``continue`` for this HTLC."""
        row = self.records.get(key)
        if row is not None and row.state == RELEASED:
            row.state, row.updated_at = FORWARDED, now
            self.records.put(row)
            payment_log.changed(payment_log.HOLD, row.payment_hash, "forwarded")

    # -- time --------------------------------------------------------------

    def tick(self, height: int, now: int, open_calls: Collection[str] = ()) -> Step:
        """Every block and every few seconds: holds past their budget or
        deadline failed back; held_htlc_available again for the rest when due.
        A call in ``open_calls`` whose row is no longer held (its answer was
        lost to the store) is answered from the row."""
        step = Step()
        c = self.config
        # What can be due, never every held row (issue 24): budget(c, o) - height < min_blocks
        # is c - delta < height + min_blocks or o < height + min_blocks.
        with self.store.tx():
            due = self.records.due(height + c.hold_min_blocks + self.cltv_delta, height + c.hold_min_blocks, now,
                                   now - c.hold_max_seconds, now)
            for row in due:
                reason = self._end_reason(row, height, now)
                if reason is not None:
                    step.answers.append(self._fail(row, reason, now))
                elif row.state == HELD and row.next_send_at <= now:
                    step.sends += self._resend(row, now)
            answered = {a.key for a in step.answers}
            for key in sorted(set(open_calls) - answered):
                row = self.records.get(key)
                answer = self._settle(row, height, now) if row is not None else None
                if answer is not None:
                    step.answers.append(answer)
        return step

    def _settle(self, row: HeldRow, height: int, now: int) -> Answer | None:
        """The answer an open call is owed from its row, when the row is no longer
        held: released or forwarded (on disk, yet no ``continue`` given) goes on if
        the budget allows, else fails; failed fails."""
        if row.state in (RELEASED, FORWARDED):
            if self._end_reason(row, height, now) is not None:
                return self._fail(row, "cltv_budget", now)
            return Continue(row.key, row.payload)
        if row.state == FAILED:
            return FailBack(row.key, row.reason or "failed")
        return None

    # -- failing -----------------------------------------------------------

    def fail(self, payment_hash: bytes, now: int) -> Step:
        """The operator fails every held HTLC of a payment."""
        with self.store.tx():
            return Step([self._fail(r, "failed_by_operator", now) for r in self.records.by_payment_hash(payment_hash)
                         if r.state in (HELD, RELEASED)])

    def abort(self, key: str, now: int) -> Step:
        """Something went wrong after the HTLC was taken: fail it rather
        than leave it held (or continued) without its release."""
        row = self.records.get(key)
        if row is None or row.state not in (HELD, RELEASED):
            return Step()
        return Step([self._fail(row, "internal_error", now)])

    def _fail(self, row: HeldRow, reason: str, now: int) -> FailBack:
        row.state, row.reason, row.updated_at = FAILED, reason, now
        self.records.put(row)
        self.store.bump(f"hold_failed_{reason}")
        payment_log.changed(payment_log.HOLD, row.payment_hash, "failed", reason)
        return FailBack(row.key, reason)
