"""The mailbox's bounds (issue 6): each source holds at most its share of one
peer's quota, a full quota gives way to a source holding less, and the
totals never pass their limits, whatever the order of intake, flush, expiry
and restart (a hypothesis state machine)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from asyncpay.crypto import pubkey_of
from asyncpay.lsp import Flush, LspConfig, Mailbox
from asyncpay.lsp.mailbox import Send, Wait
from asyncpay.store import Store

NOW = 1_800_000_000
KEY = pubkey_of(bytes([7]) * 32)


def mailbox(**limits) -> Mailbox:
    limits.setdefault("mailbox_intake_burst", 10**9)  # the rate limit is tested elsewhere
    return Mailbox(Store(":memory:"), LspConfig(**limits))


def held(mb: Mailbox, peer: str) -> dict[str | None, int]:
    """source -> messages queued for ``peer``, from the table."""
    rows = mb.store.conn.execute("SELECT source, COUNT(*) FROM mailbox WHERE peer_id = ? GROUP BY source", (peer,))
    return dict(rows.fetchall())


def test_one_source_holds_at_most_its_share_of_a_peers_quota():
    mb = mailbox(mailbox_max_messages_per_peer=100, mailbox_max_messages_per_source_per_peer=10)
    got = [mb.intake("wallet", "stranger", KEY, os.urandom(100), NOW) for _ in range(100)]
    assert got.count(None) == 10 and got.count("source_quota") == 90
    assert held(mb, "wallet") == {"stranger": 10}
    # Its share is per peer: another wallet has its own.
    assert mb.intake("other-wallet", "stranger", KEY, os.urandom(100), NOW) is None
    # And the payer's held_htlc_available still gets in.
    assert mb.intake("wallet", "payer", KEY, os.urandom(100), NOW) is None
    assert mb.store.counters()["mailbox_dropped_source_quota"] == 90


def test_a_fresh_source_evicts_the_oldest_message_of_the_largest():
    mb = mailbox(mailbox_max_messages_per_peer=5, mailbox_max_messages_per_source_per_peer=3)
    onions = {s: [os.urandom(60) for _ in range(3)] for s in ("a", "b")}
    for i in range(3):
        assert mb.intake("w", "a", KEY, onions["a"][i], NOW + i) is None
    for i in range(2):
        assert mb.intake("w", "b", KEY, onions["b"][i], NOW + i) is None
    # Full (5): the fresh source c takes the place of a's oldest.
    assert mb.intake("w", "c", KEY, os.urandom(60), NOW + 5) is None
    assert held(mb, "w") == {"a": 2, "b": 2, "c": 1}
    assert onions["a"][0] not in [r.onion for r in mb.pending("w")]
    # b (2) holding no less than the largest (a, 2) gets no room at its expense.
    assert mb.intake("w", "b", KEY, onions["b"][2], NOW + 6) == "peer_messages"
    assert mb.store.counters()["mailbox_evicted"] == 1
    assert mb.per_peer["w"] == [5, 300] and mb.total == [5, 300]


def test_byte_quota_evicts_too():
    mb = mailbox(mailbox_max_bytes_per_peer=1000, mailbox_max_messages_per_source_per_peer=10)
    for _ in range(3):
        assert mb.intake("w", "big", KEY, os.urandom(300), NOW) is None
    assert mb.intake("w", "fresh", KEY, os.urandom(300), NOW) is None  # 1200 > 1000: one of big's goes
    assert held(mb, "w") == {"big": 2, "fresh": 1}
    assert mb.intake("w", "x", KEY, os.urandom(1001), NOW) == "peer_bytes"  # could never fit


def test_global_quota_evicts_the_largest_source_anywhere():
    mb = mailbox(mailbox_max_messages=6, mailbox_max_messages_per_source_per_peer=2)
    for peer in ("w1", "w2", "w3"):
        for _ in range(2):
            assert mb.intake(peer, "stranger", KEY, os.urandom(50), NOW) is None
    assert mb.intake("w4", "payer", KEY, os.urandom(50), NOW) is None
    assert mb.total[0] == 6 and held(mb, "w4") == {"payer": 1}
    assert held(mb, "w1") == {"stranger": 1}  # the stranger's oldest went


def test_shares_survive_a_restart():
    mb = mailbox(mailbox_max_messages_per_source_per_peer=2)
    for _ in range(2):
        mb.intake("w", "s", KEY, os.urandom(50), NOW)
    again = Mailbox(mb.store, mb.config)
    assert again.intake("w", "s", KEY, os.urandom(50), NOW) == "source_quota"
    assert again.per_source == {"w": {"s": [2, 100]}} and again.source_total == {"s": [2, 100]}


def test_duplicate_takes_no_room_and_evicts_nothing():
    mb = mailbox(mailbox_max_messages_per_peer=2)
    onion = os.urandom(50)
    assert mb.intake("w", "a", KEY, onion, NOW) is None
    assert mb.intake("w", "a", KEY, os.urandom(50), NOW) is None
    assert mb.intake("w", "b", KEY, onion, NOW) is None  # the same onion again, from elsewhere
    assert held(mb, "w") == {"a": 2} and "mailbox_evicted" not in mb.store.counters()


# --- the state machine -------------------------------------------------------

LIMITS = dict(mailbox_max_messages_per_peer=6, mailbox_max_bytes_per_peer=600, mailbox_max_messages=14,
              mailbox_max_bytes=1500, mailbox_max_messages_per_source_per_peer=3, mailbox_ttl=100,
              mailbox_intake_burst=10**9, mailbox_flush_interval_ms=1)
PEERS = ["p0", "p1", "p2", "p3"]
SOURCES = [None, "s0", "s1", "s2", "s3", "s4", "s5"]


class MailboxMachine(RuleBasedStateMachine):
    """Random sources and interleavings; the invariants are the bounds."""

    @initialize()
    def setup(self) -> None:
        self.store = Store(":memory:")
        self.config = LspConfig(**LIMITS)
        self.mb = Mailbox(self.store, self.config)
        self.mb.source_cache_size = 2  # fewer than the peers: breakdowns leave the cache and are read again
        self.now = NOW
        self.flush: Flush | None = None
        self.counter = 0
        self.clock = 0.0  # the flush's monotonic clock, one second per step

    def _onion(self, size: int) -> bytes:
        self.counter += 1
        return self.counter.to_bytes(4, "big") + bytes(size - 4)

    def _pairs(self) -> dict[tuple[str, str | None], tuple[int, int]]:
        return {(p, s): (n, b) for p, s, n, b in self.store.mailbox_sources()}

    @rule(peer=st.sampled_from(PEERS), source=st.sampled_from(SOURCES), size=st.integers(10, 150))
    def intake(self, peer: str, source: str | None, size: int) -> None:
        fresh = all(s != source for _, s in self._pairs())
        reason = self.mb.intake(peer, source, KEY, self._onion(size), self.now)
        if fresh:
            # A source holding nothing always gets in, however full it is.
            assert reason is None, reason

    @rule(items=st.lists(st.tuples(st.sampled_from(PEERS), st.sampled_from(SOURCES), st.integers(10, 150)),
                         min_size=1, max_size=8))
    def intake_batch(self, items) -> None:
        self.mb.intake_batch([(p, s, KEY, self._onion(n)) for p, s, n in items], self.now)

    @rule(seconds=st.integers(0, 60))
    def expire(self, seconds: int) -> None:
        self.now += seconds
        self.mb.expire(self.now)

    @rule()
    def restart(self) -> None:
        self.mb = Mailbox(self.store, self.config)
        self.mb.source_cache_size = 2  # fewer than the peers: breakdowns leave the cache and are read again
        self.flush = None

    @rule(peer=st.sampled_from(PEERS))
    def start_flush(self, peer: str) -> None:
        self.flush = Flush(self.mb, peer, self.clock)

    @precondition(lambda self: self.flush is not None)
    @rule(ok=st.booleans())
    def flush_step(self, ok: bool) -> None:
        self.clock += 1
        step = self.flush.poll(self.clock)
        if step is None:
            self.flush = None
            return
        assert not isinstance(step, Wait)
        assert isinstance(step, Send)
        # The row may have been evicted or expired since the flush began:
        # delivering it then must not count it twice.
        self.flush.result(step.row, ok, self.clock)

    @invariant()
    def bounds(self) -> None:
        c = self.config
        pairs = self._pairs()
        for (_, _), (n, _) in pairs.items():
            assert n <= c.mailbox_max_messages_per_source_per_peer
        for peer in PEERS:
            n = sum(v[0] for (p, _), v in pairs.items() if p == peer)
            b = sum(v[1] for (p, _), v in pairs.items() if p == peer)
            assert n <= c.mailbox_max_messages_per_peer and b <= c.mailbox_max_bytes_per_peer
        total = self.store.mailbox_totals()
        assert total[0] <= c.mailbox_max_messages and total[1] <= c.mailbox_max_bytes
        # The in-memory totals intake relies on follow the table.
        assert tuple(self.mb.total) == total
        assert {p: tuple(v) for p, v in self.mb.per_peer.items()} == {
            p: (sum(v[0] for (q, _), v in pairs.items() if q == p), sum(v[1] for (q, _), v in pairs.items() if q == p))
            for p in {p for p, _ in pairs}}
        # Each breakdown in the bounded cache follows the table too.
        assert len(self.mb.per_source) <= self.mb.source_cache_size
        for p, d in self.mb.per_source.items():
            assert {s: tuple(v) for s, v in d.items()} == {s: v for (q, s), v in pairs.items() if q == p}


MailboxMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("MAILBOX_EXAMPLES", "300")), stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_mailbox_bounds_hold_under_any_interleaving = MailboxMachine.TestCase


@pytest.mark.parametrize("size", [10, 150])
def test_fresh_source_gets_in_when_the_peer_is_full_of_one_sources_mail(size):
    """The property's plainest case, as a regression test."""
    mb = mailbox(mailbox_max_messages_per_peer=3, mailbox_max_messages_per_source_per_peer=3)
    for _ in range(3):
        assert mb.intake("w", "flooder", KEY, os.urandom(100), NOW) is None
    assert mb.intake("w", "payer", KEY, os.urandom(size), NOW) is None
    assert held(mb, "w") == {"flooder": 2, "payer": 1}


def test_flush_of_an_expired_message_does_not_delete_the_one_that_took_its_id():
    """Found by the state machine: SQLite gives a deleted last row's id to the
    next insert, so a flush's snapshot could delete someone else's message."""
    mb = mailbox(mailbox_ttl=100, mailbox_flush_interval_ms=1)
    old = os.urandom(50)
    mb.intake("p1", "s", KEY, old, NOW)
    flush = Flush(mb, "p1", 0.0)
    assert mb.expire(NOW + 200) == 1
    mb.intake("p2", "s", KEY, os.urandom(70), NOW + 200)
    [row] = mb.pending("p2")
    step = flush.poll(1.0)
    assert isinstance(step, Send) and step.row.onion == old
    assert (step.row.id == row.id) == (mb.store.kind == "sqlite")  # PostgreSQL's sequence never reuses an id
    flush.result(step.row, True, 1.0)
    assert mb.pending("p2") == [row]
    assert mb.total == [1, 70] and mb.per_peer == {"p2": [1, 70]}
