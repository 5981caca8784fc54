"""Hold for wake-up: an HTLC whose next hop is an offline client waits, in
``htlc_accepted``, for the client to connect (LSPS5 "Webhook Call": "the LSP
SHOULD hold onto the incoming H/PTLC for a reasonable time that allows the
client to awaken"; eclair's ``peer-wake-up`` waits 60 s).

Sans-IO over the store. ``accept`` decides for a new HTLC (or lightningd's
replay of one after a restart):

* ``None``: not ours (the next hop is connected, or is not a client we
  wake, or the HTLC is too close to its CLTV budget, or a bound is full):
  the router goes on and lightningd forwards (or fails) it as it would
  without us;
* ``Hold``: answer later; the adapter calls the client's webhooks;
* ``Release`` / ``FailBack``: answer now (a replay of an HTLC already decided,
  or one whose client connected or whose time ran out meanwhile).

Later, ``connected`` releases every HTLC held for a client, and ``tick``
fails back those past ``wake-timeout`` or within ``wake-min-blocks`` of
their budget: min(incoming ``cltv_expiry`` - our ``cltv-delta``, outgoing
CLTV), as the hold role (``hold/holder.py``) reckons it. A row leaves HELD
once, to RELEASED or FAILED, and each transition returns the one answer the
adapter owes: exactly one verdict per HTLC, whatever the order of events.
The deadline is kept on disk, so a restart (lightningd replays the HTLC)
does not extend the wait.

An answer lost to the store (a commit that failed or whose outcome is
unknown) leaves the call open: ``tick`` answers each call the adapter still
has open from its row as it is on disk, and ``Hold.answer_by`` is when the
adapter fails it from memory if the store cannot be read by then
(``open_calls.py``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from .. import payment_log
from ..held_counts import CHANNEL, PEER, TOTAL, CountedRows, HeldCounts, incoming_channel
from ..open_calls import AnswerBy
from ..payment.forward_budget import CLN_CLTV_DELTA, forward_budget
from ..storage import SchemaEditor
from ..store import Store
from .config import Lsps5Config

HELD, RELEASED, FAILED = "held", "released", "failed"
CLN_MAX_ACCEPTED_HTLCS = 30  # lightningd's max-concurrent-htlcs on mainnet (lightningd/options.c mainnet_config)
TEMPORARY_NODE_FAILURE = "2002"  # BOLT 4 NODE|2: the client did not wake in time
KEEP_ANSWERED = 86400  # answered rows stay a day (a replay after a restart finds its verdict)


def _v1(db: SchemaEditor) -> None:
    db["lsps5_wake_htlcs"].create(
        {"key": str, "peer_id": str, "payment_hash": bytes, "amount_msat": int, "cltv_expiry": int,
         "outgoing_cltv": int, "since": int, "deadline": int, "state": str, "reason": str, "updated_at": int},
        pk="key")
    db["lsps5_wake_htlcs"].create_index(["state", "peer_id"])


HELD_COUNTS = HeldCounts("lsps5_wake_counts", "lsps5_wake_htlcs", by_channel=True)


def _v2(db: SchemaEditor) -> None:
    # Issue 24: the bounds from maintained counts, the timer from indexes on
    # what makes a hold due (its CLTV budget, its deadline), answered rows
    # pruned through their age.
    HELD_COUNTS.create(db)
    t = db["lsps5_wake_htlcs"]
    for column in ("cltv_expiry", "outgoing_cltv", "deadline"):
        t.create_index(["state", column])
    t.create_index(["updated_at"])


MIGRATIONS = [_v1, _v2]


@dataclass
class WakeRow:
    key: str  # "<incoming scid>/<htlc id>": stable across lightningd's replays
    peer_id: str  # the offline client the HTLC goes to
    payment_hash: bytes
    amount_msat: int
    cltv_expiry: int
    outgoing_cltv: int
    since: int
    deadline: int  # since + wake-timeout
    state: str = HELD
    reason: str | None = None
    updated_at: int = 0

    def view(self) -> dict:
        return {"payment_hash": self.payment_hash.hex(), "peer_id": self.peer_id, "amount_msat": self.amount_msat,
                "since": self.since, "deadline": self.deadline, "state": self.state,
                **({"reason": self.reason} if self.reason else {})}


@dataclass(frozen=True)
class WakeCandidate:
    """An HTLC to forward to ``peer_id`` (the adapter read it from the hook)."""

    key: str  # "<incoming scid>/<htlc id>"
    peer_id: str
    payment_hash: bytes
    amount_msat: int
    cltv_expiry: int
    outgoing_cltv: int
    # What the admission bounds need (docs/security.md, LSPS5: slots of an
    # upstream channel, liquidity held): the HTLC slots of the incoming channel (our
    # max_accepted_htlcs on it; 0: not known, CLN's default then), the
    # amount the client is to get, and what the client's usable channels can
    # take from us (sum of spendable_msat; None: not known, not checked).
    incoming_slots: int = 0
    forward_msat: int | None = None
    receivable_msat: int | None = None

    @property
    def incoming_channel(self) -> str:
        return incoming_channel(self.key)


@dataclass(frozen=True)
class Hold:
    deadline: int
    answer_by: AnswerBy  # when the call is failed back at the latest, store or no store


@dataclass(frozen=True)
class Release:
    key: str

    def hook_answer(self) -> dict:
        return {"result": "continue"}


@dataclass(frozen=True)
class FailBack:
    key: str
    reason: str

    def hook_answer(self) -> dict:
        return {"result": "fail", "failure_message": TEMPORARY_NODE_FAILURE}


Answer = Release | FailBack


class WakeHolder:
    def __init__(self, store: Store, config: Lsps5Config, cltv_delta: int = CLN_CLTV_DELTA) -> None:
        self.store, self.config, self.cltv_delta = store, config, cltv_delta
        store.migrate_component("lsps5_wake", MIGRATIONS)
        self.rows = CountedRows(store, HELD_COUNTS, WakeRow, "key")
        self.get = self.rows.get

    def budget(self, cltv_expiry: int, outgoing_cltv: int) -> int:
        """The last height at which the HTLC may still be forwarded."""
        return forward_budget(cltv_expiry, outgoing_cltv, self.cltv_delta)

    def answer_by(self, row: WakeRow) -> AnswerBy:
        """The deadline and last height ``_end_reason`` lets a held row reach."""
        return AnswerBy(row.deadline, self.budget(row.cltv_expiry, row.outgoing_cltv) - self.config.wake_min_blocks)

    def _too_close(self, cltv_expiry: int, outgoing_cltv: int, height: int) -> bool:
        return self.budget(cltv_expiry, outgoing_cltv) - height < self.config.wake_min_blocks

    def accept(self, h: WakeCandidate, online: bool, wakeable: bool, height: int, now: int) -> Hold | Answer | None:
        known = self.rows.get(h.key)
        if known is not None:
            return self._replay(known, online, height, now)
        if online or not wakeable:
            return None
        if self._too_close(h.cltv_expiry, h.outgoing_cltv, height):
            self.store.bump("wake_not_held_cltv_budget")
            return None
        refusal = self.admission_refusal(h)
        if refusal is not None:
            self.store.bump(f"wake_not_held_{refusal}")
            return None
        if self.count_held(h.peer_id) >= self.config.wake_max_per_peer:
            self.store.bump("wake_not_held_peer_limit")
            return None
        if self.count_held() >= self.config.wake_max_total:
            self.store.bump("wake_not_held_total_limit")
            return None
        row = WakeRow(h.key, h.peer_id, h.payment_hash, h.amount_msat, h.cltv_expiry, h.outgoing_cltv,
                      now, now + self.config.wake_timeout, HELD, None, now)
        with self.store.tx():
            self.rows.put(row)
            self.store.bump("wake_held")
        payment_log.changed(payment_log.WAKE_HOLD, h.payment_hash, "held", f"for {h.peer_id}")
        return Hold(row.deadline, self.answer_by(row))

    def channel_bound(self, slots: int) -> int:
        """HTLCs held for wake-up at once arriving on one incoming channel
        with ``slots`` HTLC slots: ``wake-channel-share`` percent of them, at
        least one. A sleeping client is no lever to fill an upstream
        channel's slots: the rest stay for other forwards."""
        return max(1, (slots or CLN_MAX_ACCEPTED_HTLCS) * self.config.wake_channel_share // 100)

    def admission_refusal(self, h: WakeCandidate) -> str | None:
        """Why a new HTLC is not held although its client sleeps: its incoming
        channel has its share of held HTLCs ("channel_slots"), or the client
        could never receive it with what it has held already ("not_receivable")."""
        if self.count_held_on_channel(h.incoming_channel) >= self.channel_bound(h.incoming_slots):
            return "channel_slots"
        if h.receivable_msat is not None:
            amount = h.amount_msat if h.forward_msat is None else h.forward_msat
            if self.held_amount(h.peer_id) + amount > h.receivable_msat:
                return "not_receivable"
        return None

    def count_held_on_channel(self, incoming_channel: str) -> int:
        """Held HTLCs that came in on ``incoming_channel`` (maintained counts, issue 24)."""
        return self.rows.count(CHANNEL, incoming_channel)

    def held_amount(self, peer_id: str) -> int:
        """msat held for the client (incoming amounts: a bound above what it gets; maintained counts)."""
        return self.rows.amount(PEER, peer_id)

    def _replay(self, row: WakeRow, online: bool, height: int, now: int) -> Hold | Answer:
        """lightningd restarted and asks again. A failure stands; a release
        whose answer never reached lightningd (it asks again) is decided
        afresh, as a held one: the client may be gone again, or the budget
        near, since."""
        self.store.bump("wake_replayed")
        if row.state == FAILED:
            return FailBack(row.key, row.reason or "failed")
        reason = self._end_reason(row, height, now)
        if reason is not None:
            return self._fail(row, reason, now)
        if online:
            return self._release(row, now)
        if row.state != HELD:
            row.state, row.updated_at = HELD, now
            self.rows.put(row)
        return Hold(row.deadline, self.answer_by(row))

    def _end_reason(self, row: WakeRow, height: int, now: int) -> str | None:
        if self._too_close(row.cltv_expiry, row.outgoing_cltv, height):
            return "cltv_budget"
        if now >= row.deadline:
            return "wake_timeout"
        return None

    def connected(self, peer_id: str, height: int, now: int) -> list[Answer]:
        """The client is back: every HTLC held for it goes on, but one whose
        budget is within the margin (the tick has not failed it yet) fails."""
        out: list[Answer] = []
        with self.store.tx():
            for r in self.rows.where("state = ? AND peer_id = ?", (HELD, peer_id)):
                too_close = self._too_close(r.cltv_expiry, r.outgoing_cltv, height)
                out.append(self._fail(r, "cltv_budget", now) if too_close else self._release(r, now))
        return out

    def tick(self, height: int, now: int, open_calls: Collection[str] = ()) -> list[Answer]:
        """Every block and every few seconds: fail back what waited too long. A
        call in ``open_calls`` whose row is no longer held (its answer was lost
        to the store) is answered from the row."""
        out: list[Answer] = []
        with self.store.tx():
            for r in self.due(height, now):
                reason = self._end_reason(r, height, now)
                if reason is not None:
                    out.append(self._fail(r, reason, now))
            answered = {a.key for a in out}
            for key in sorted(set(open_calls) - answered):
                r = self.rows.get(key)
                if r is not None and r.state == RELEASED:
                    too_close = self._too_close(r.cltv_expiry, r.outgoing_cltv, height)
                    out.append(self._fail(r, "cltv_budget", now) if too_close else Release(r.key))
                elif r is not None and r.state == FAILED:
                    out.append(FailBack(r.key, r.reason or "failed"))
            self.store.conn.execute("DELETE FROM lsps5_wake_htlcs WHERE updated_at < ? AND state != ?",
                                    (now - KEEP_ANSWERED, HELD))
        return out

    def due(self, height: int, now: int) -> list[WakeRow]:
        """Held rows that may have to fail, through the (state, ...) indexes, never
        every held row (issue 24): budget - height < wake_min_blocks is
        cltv_expiry - delta < height + min or outgoing_cltv < height + min."""
        edge = height + self.config.wake_min_blocks
        rows = self.rows.where("state = ? AND cltv_expiry < ?", (HELD, edge + self.cltv_delta))
        rows += self.rows.where("state = ? AND outgoing_cltv < ?", (HELD, edge))
        rows += self.rows.where("state = ? AND deadline <= ?", (HELD, now))
        unique = {r.key: r for r in rows}
        return sorted(unique.values(), key=lambda r: (r.since, r.key))

    def abort(self, key: str, now: int) -> list[Answer]:
        """Something failed after the HTLC was taken: fail it, never leave it held."""
        row = self.rows.get(key)
        if row is None or row.state != HELD:
            return []
        return [self._fail(row, "internal_error", now)]

    def _release(self, row: WakeRow, now: int) -> Release:
        row.state, row.updated_at = RELEASED, now
        self.rows.put(row)
        self.store.bump("wake_released")
        payment_log.changed(payment_log.WAKE_HOLD, row.payment_hash, "released")
        return Release(row.key)

    def _fail(self, row: WakeRow, reason: str, now: int) -> FailBack:
        row.state, row.reason, row.updated_at = FAILED, reason, now
        self.rows.put(row)
        self.store.bump(f"wake_failed_{reason}")
        payment_log.changed(payment_log.WAKE_HOLD, row.payment_hash, "failed", reason)
        return FailBack(row.key, reason)

    def count_held(self, peer_id: str | None = None) -> int:
        """Held for ``peer_id``, or in all: from the maintained counts, never a count of the rows."""
        return self.rows.count(TOTAL) if peer_id is None else self.rows.count(PEER, peer_id)

    def all(self) -> list[WakeRow]:
        return self.rows.where(order="since")
