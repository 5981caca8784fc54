"""The LSPS5 outbox's order and limits (lsps/notifications.py ``Outbox``)
under random interleavings (hypothesis state machine): calls of a few
clients to a few hosts are queued, taken by senders, finished (ok or
failed, then retried), and clients removed, as time passes.

After every step:

* no client has more than ``lsps5-senders-per-client`` calls running, no
  host more than ``lsps5-senders-per-host``, the queue stays within its bounds;
* a sender takes only a call that may start (due, its client and host under
  their limits, behind no webhook_registered of its webhook), and a
  non-urgent one only when no urgent one may start (a call due for
  ``wake-timeout`` counts as urgent);
* while a client's urgent call may start, any other client starts at most
  one urgent call ahead of it before this client starts one: one client's
  calls delay another's by one call time at most (docs/lsps5.md).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from asyncpay.lsps import notifications as n
from asyncpay.lsps.config import Lsps5Config

CI = os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci"
PEERS = [f"02{i:064x}" for i in range(4)]
HOSTS = ["a.example.org", "b.example.org", "c.example.org"]


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.config = Lsps5Config(lsps5_queue_max=12, lsps5_queue_max_per_client=5, lsps5_senders_per_client=1,
                                  lsps5_senders_per_host=2, lsps5_retry_first=2, lsps5_retry_max_interval=4,
                                  lsps5_retry_attempts=3, wake_timeout=20)
        self.box = n.Outbox(self.config)
        self.now = 0.0
        # (waiting urgent call, its client, another client) -> starts of the other ahead of it
        self.ahead: dict[tuple[int, str, str], int] = {}
        self.made: list[n.Call] = []  # every call, kept so that no id() is reused

    def _may_start(self, c: n.Call) -> bool:
        running = self.box.running
        registering = {(r.peer_id, r.app_name, r.url) for r in (*self.box.calls, *running)
                       if r.method == n.WEBHOOK_REGISTERED}
        return (c.next_at <= self.now
                and (c.method == n.WEBHOOK_REGISTERED or (c.peer_id, c.app_name, c.url) not in registering)
                and sum(r.peer_id == c.peer_id for r in running) < self.config.lsps5_senders_per_client
                and sum(r.host == c.host for r in running) < self.config.lsps5_senders_per_host)

    @rule(peer=st.sampled_from(PEERS), app=st.sampled_from("xyz"), host=st.sampled_from(HOSTS),
          method=st.sampled_from(n.METHODS), tag=st.integers(0, 3))
    def add(self, peer, app, host, method, tag):
        self.now += 1
        self.made.append(n.Call(peer, app, f"https://{host}/{app}", method, n.body(method, {"t": tag})))
        self.box.add(self.made[-1], self.now)

    @rule()
    def take(self):
        self.now += 1
        startable = [c for c in self.box.calls if self._may_start(c)]
        c = self.box.take(self.now)
        if c is None:
            assert startable == [], "a call could start but none was taken"
            return
        assert any(c is s for s in startable), "a call taken that may not start"
        waiting_urgent = [w for w in startable if self.box.urgent(w, self.now) and w is not c]
        if not self.box.urgent(c, self.now):
            assert waiting_urgent == [], "a non-urgent call before an urgent one"
        for w in waiting_urgent:
            if w.peer_id != c.peer_id:
                k = (id(w), w.peer_id, c.peer_id)
                self.ahead[k] = self.ahead.get(k, 0) + 1
                assert self.ahead[k] <= 1, "a client started twice ahead of another's waiting urgent call"
        # This client started: the counts of its waiting calls start afresh.
        self.ahead = {k: v for k, v in self.ahead.items() if k[1] != c.peer_id}

    @precondition(lambda self: self.box.running)
    @rule(data=st.data(), ok=st.booleans())
    def finish(self, data, ok):
        self.now += 1
        c = data.draw(st.sampled_from(self.box.running))
        self.box.result(c, ok, self.now)

    @rule(peer=st.sampled_from(PEERS))
    def forget(self, peer):
        self.box.forget(peer)

    @rule(seconds=st.integers(1, 5))
    def time_passes(self, seconds):
        self.now += seconds

    @invariant()
    def within_the_limits(self):
        running = self.box.running
        for p in PEERS:
            assert sum(r.peer_id == p for r in running) <= self.config.lsps5_senders_per_client
            assert sum(c.peer_id == p for c in self.box.calls) <= self.config.lsps5_queue_max_per_client
        for h in HOSTS:
            assert sum(r.host == h for r in running) <= self.config.lsps5_senders_per_host
        assert len(self.box) <= self.config.lsps5_queue_max


OutboxMachine.TestCase.settings = settings(
    max_examples=400 if CI else 4000, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_outbox_machine = OutboxMachine.TestCase
