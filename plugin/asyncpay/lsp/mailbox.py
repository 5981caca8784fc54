"""Onion-message mailbox for offline peers (design §3 step 8, §5).

A message CLN could not forward to one of our peers is kept (its incoming
onion and path_key) under per-peer and global limits and a TTL. When the
peer connects, ``Flush`` re-injects its messages oldest first, paced under
connectd's per-peer limit, deleting each only once CLN accepted it.

Which peers qualify: a peer with a channel to us, or a registered recipient
whose recipient_id is its node id (``qualifies``). Anything else is dropped,
so strangers cannot use our disk.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..ratelimit import TokenBuckets
from ..store import MAILBOX_MIGRATIONS, MailboxRow, Store
from .config import LspConfig

log = logging.getLogger("asyncpay.lsp.mailbox")
_NONE = object()  # no source at all (None is a source: our own messages)
SOURCE_CACHE = 4096  # peers whose breakdown by source is kept in memory


class Mailbox:
    """The queue of every offline peer, under four bounds and a share.

    Limits (``LspConfig``): messages and bytes per peer, messages and bytes
    in all, and each source's share of one peer's quota
    (``mailbox_max_messages_per_source_per_peer``). The LSP cannot read what
    it queues, so fairness is by source, the peer that handed the message
    to us: when a peer's quota (or the global one) is full, the oldest
    message of the source holding the most is evicted for a message from a
    source holding fewer. A fresh source therefore always gets in, and one
    stranger holds at most its share of a sleeping wallet's mailbox.
    """

    def __init__(self, store: Store, config: LspConfig) -> None:
        self.store, self.config = store, config
        store.migrate_component("mailbox", MAILBOX_MIGRATIONS)
        self.intake_limits = TokenBuckets(config.mailbox_intake_burst, config.mailbox_intake_rate)
        self.last_wakeup: dict[str, int] = {}
        self.source_cache_size = SOURCE_CACHE
        self._load_totals()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """A transaction whose failure (a COMMIT refused, lost or of unknown outcome)
        marks the in-memory totals stale: they counted changes the database may not
        have; the next use reads them again from the database, which has the truth
        either way. Nested in another: that one's failure marks them."""
        self._fresh()
        try:
            with self.store.tx():
                yield
        except BaseException:
            self._stale = True
            raise

    def _fresh(self) -> None:
        if self._stale:
            self._load_totals()  # raises while the store is down: nothing is admitted then

    def _load_totals(self) -> None:
        # Kept in memory so intake never scans the table; the mailbox object
        # is the only writer of the mailbox table. Per peer and per source,
        # not per (peer, source): a million messages for 100,000 sleeping
        # wallets from ten sources each would be a million entries (~290 MB,
        # issue 24). A peer's breakdown by source is read from the table when
        # its intake needs it (its rows only, at most its quota) and kept in
        # a bounded LRU (``per_source``).
        self._stale = True  # until read in full
        self.total = [0, 0]
        self.per_peer: dict[str, list[int]] = {}
        self.per_source: OrderedDict[str, dict[str | None, list[int]]] = OrderedDict()  # peer -> source -> [n, b]
        self.source_total: dict[str | None, list[int]] = {}  # source -> [messages, bytes], all peers
        for peer, n, b in self.store.mailbox_peer_totals():
            self.per_peer[peer] = [n, b]
            self.total[0] += n
            self.total[1] += b
        for source, n, b in self.store.mailbox_source_totals():
            self.source_total[source] = [n, b]
        self._stale = False

    def _sources(self, peer_id: str) -> dict[str | None, list[int]]:
        """``peer_id``'s messages and bytes by source (cached, LRU)."""
        hit = self.per_source.get(peer_id)
        if hit is not None:
            self.per_source.move_to_end(peer_id)
            return hit
        sources: dict[str | None, list[int]] = {}
        if peer_id in self.per_peer:
            for source, n, b in self.store.mailbox_sources_of(peer_id):
                sources[source] = [n, b]
        self.per_source[peer_id] = sources
        while len(self.per_source) > self.source_cache_size:
            self.per_source.popitem(last=False)
        return sources

    def qualifies(self, peer_id: str, has_channel: bool) -> bool:
        return has_channel or self.store.is_recipient(peer_id)

    def intake(self, peer_id: str, source: str | None, path_key: bytes, onion: bytes, now: int) -> str | None:
        """Queue a message for ``peer_id`` from ``source``; returns why it was
        dropped, or None. May evict older mail of a larger source."""
        self._fresh()
        reason = self._refusal(peer_id, source, len(onion), now)
        if reason is None:
            with self._tx():
                if self.store.mailbox_contains(path_key, onion):
                    self.store.bump("mailbox_duplicate")
                    return None
                reason = self._make_room(peer_id, source, len(onion))
                if reason is None:
                    self.store.mailbox_add(peer_id, source, path_key, onion, now)
                    self.store.bump("mailbox_buffered")
                    self._account(peer_id, source, 1, len(onion))
                    return None
        self.store.bump(f"mailbox_dropped_{reason}")
        log.debug("mailbox: dropped message for %s from %s: %s", peer_id, source, reason)
        return reason

    def intake_batch(self, items: list[tuple[str, str | None, bytes, bytes]], now: int) -> list[str | None]:
        """``intake`` for each (peer_id, source, path_key, onion), in one
        transaction: one commit, so one fsync, for the whole batch."""
        with self._tx():
            return [self.intake(peer, source, key, onion, now) for peer, source, key, onion in items]

    def wakeup(self, peer_id: str, now: int) -> dict | None:
        """The ``asyncpay_mailbox_queued`` notification for ``peer_id``, at most
        one per ``mailbox_notify_interval`` seconds per peer (None otherwise):
        a push-notification plugin can wake a sleeping wallet with it."""
        last = self.last_wakeup.get(peer_id)
        if last is not None and now - last < self.config.mailbox_notify_interval:
            return None
        messages, size = self.per_peer.get(peer_id, (0, 0))
        if not messages:
            return None
        self.last_wakeup[peer_id] = now
        if len(self.last_wakeup) > 4 * max(1, len(self.per_peer)) + 1000:
            horizon = now - self.config.mailbox_notify_interval
            self.last_wakeup = {p: t for p, t in self.last_wakeup.items() if t > horizon}
        return {"peer_id": peer_id, "messages": messages, "bytes": size,
                "oldest": self.store.mailbox_oldest(peer_id)}

    def _refusal(self, peer_id: str, source: str | None, size: int, now: int) -> str | None:
        """Refusals that no eviction could change."""
        c = self.config
        if source is not None and not self.intake_limits.allow(source, now):
            return "rate_limited"
        if size > c.mailbox_max_bytes_per_peer:
            return "peer_bytes"
        if size > c.mailbox_max_bytes:
            return "full"
        if self._sources(peer_id).get(source, (0, 0))[0] >= c.mailbox_max_messages_per_source_per_peer:
            return "source_quota"
        return None

    def _make_room(self, peer_id: str, source: str | None, size: int) -> str | None:
        """Evict, oldest first, mail of the source holding the most, while the
        peer's (then the global) quota is full and that source holds more than
        ``source``; the reason for a refusal when that is not enough."""
        c = self.config
        sources = self._sources(peer_id)
        mine = sources.get(source, (0, 0))[0]
        while True:
            n, b = self.per_peer.get(peer_id, (0, 0))
            if n < c.mailbox_max_messages_per_peer and b + size <= c.mailbox_max_bytes_per_peer:
                break
            top = max(sources, key=lambda s: sources[s][0], default=_NONE)
            if top is _NONE or sources[top][0] <= mine:
                return "peer_messages" if n >= c.mailbox_max_messages_per_peer else "peer_bytes"
            self._evict(self.store.mailbox_oldest_of(top, peer_id), top)
        mine = self.source_total.get(source, (0, 0))[0]
        while self.total[0] >= c.mailbox_max_messages or self.total[1] + size > c.mailbox_max_bytes:
            # Only when the whole mailbox is full: a scan over the sources.
            top = max(self.source_total, key=lambda s: self.source_total[s][0], default=_NONE)
            if top is _NONE or self.source_total[top][0] <= mine:
                return "full"
            self._evict(self.store.mailbox_oldest_of(top), top)
        return None

    def _evict(self, row: tuple[int, str, int] | None, source: str | None) -> None:
        if row is None:  # the totals and the table disagree: trust the table
            self._load_totals()
            raise RuntimeError("mailbox totals out of step with the table")
        msg_id, peer, size = row
        self.store.mailbox_delete(msg_id)
        self.store.bump("mailbox_evicted")
        self._account(peer, source, -1, -size)
        log.debug("mailbox: evicted a message for %s from %s", peer, source)

    def _account(self, peer_id: str, source: str | None, dn: int, db: int) -> None:
        self.total[0] += dn
        self.total[1] += db
        tables = [(self.per_peer, peer_id), (self.source_total, source)]
        cached = self.per_source.get(peer_id)
        if cached is not None:  # a breakdown not in the cache is read afresh when needed
            tables.append((cached, source))
        for table, key in tables:
            entry = table.setdefault(key, [0, 0])
            entry[0] += dn
            entry[1] += db
            if entry[0] <= 0:
                del table[key]

    def pending(self, peer_id: str) -> list[MailboxRow]:
        return self.store.mailbox_pending(peer_id, self.config.mailbox_max_messages_per_peer)

    def delivered(self, row: MailboxRow) -> None:
        with self._tx():
            if self.store.mailbox_delete(row.id, row.path_key, row.onion):
                self.store.bump("mailbox_flushed")
                self._account(row.peer_id, row.source, -1, -row.size)

    def failed(self, row: MailboxRow, now: int) -> None:
        self.store.mailbox_attempted(row.id, now)
        self.store.bump("mailbox_flush_failed")

    def expire(self, now: int) -> int:
        """Delete the messages past the TTL. The totals follow the deleted rows
        (no recount of the table: a block's cost is what expired, issue 24); a
        failed commit marks them stale (``_tx``)."""
        with self._tx():
            gone = self.store.mailbox_expire(now - self.config.mailbox_ttl)
            if gone:
                self.store.bump("mailbox_expired", len(gone))
            for peer, source, size in gone:
                self._account(peer, source, -1, -size)
        return len(gone)

    def summary(self, now: int) -> list[dict]:
        out = []
        for p in self.store.mailbox_peers():
            p["oldest_age"] = now - p.pop("oldest_received_at")
            out.append(p)
        return out


@dataclass(frozen=True)
class Send:
    row: MailboxRow


@dataclass(frozen=True)
class Wait:
    seconds: float


class Flush:
    """Paced delivery of one peer's queue, driven by the host::

        while (step := flush.poll(now())) is not None:
            if isinstance(step, Wait): sleep(step.seconds)
            else: flush.result(step.row, inject(step.row), now())

    A failed injection stops the flush (the peer is likely gone again) and the
    message stays queued for the next connection.
    """

    def __init__(self, mailbox: Mailbox, peer_id: str, now: float) -> None:
        self.mailbox, self.peer_id = mailbox, peer_id
        self.interval = mailbox.config.mailbox_flush_interval_ms / 1000
        self.queue: deque[MailboxRow] = deque(mailbox.pending(peer_id))
        self.next_at = now
        self.sent = self.failed = 0

    def poll(self, now: float) -> Send | Wait | None:
        if not self.queue:
            return None
        if now < self.next_at:
            return Wait(self.next_at - now)
        return Send(self.queue[0])

    def result(self, row: MailboxRow, ok: bool, now: float) -> None:
        if not self.queue or self.queue[0].id != row.id:
            raise ValueError("result for a message that is not at the head of the queue")
        self.queue.popleft()
        self.next_at = now + self.interval
        if ok:
            self.mailbox.delivered(row)
            self.sent += 1
        else:
            self.mailbox.failed(row, int(now))
            self.failed += 1
            self.queue.clear()
