"""Hold for wake-up (lsps/wake_hold.py) under random events (hypothesis
state machine), against a model of lightningd and of the adapter's open
``htlc_accepted`` calls: HTLCs arrive for clients that are on- or offline,
with or without webhooks, with budgets near and far; clients connect and
disconnect; blocks and seconds pass; the plugin and lightningd restart
(calls dropped, the store kept) and lightningd replays each HTLC that had
no verdict; the store fails (tests/store_faults.py: the server gone for
some seconds, the lock lost until a restart, a commit rolled back, a commit
that landed but raised), with the adapter's answers from memory
(``cln/lsps5.py``, ``open_calls.py``) modelled.

After every step:

* each hook call got at most one answer, and each HTLC at most one
  verdict that lightningd acted on;
* no call is held past its deadline, or with its budget within the
  margin, once a tick ran, whether or not the store could be used;
* an HTLC continued by us was continued while its client was connected
  and its budget outside the margin;
* nothing is held for a client that is connected, once its connect ran.
"""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from asyncpay.lsps.config import Lsps5Config
from asyncpay.lsps.wake_hold import FailBack, Hold, Release, WakeCandidate, WakeHolder
from asyncpay.open_calls import AnswerBy
from asyncpay.storage import StoreError
from asyncpay.store import Store
from store_faults import SERVER_GONE, faulty

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")

CI = os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci"
ON_POSTGRES = os.environ.get("ASYNCPAY_TEST_STORE") == "postgresql"  # the logic ran on SQLite already
HEIGHT, NOW, DELTA, MARGIN, TIMEOUT = 800_000, 1_800_000_000, 34, 6, 60
PEERS = ["02" + "a1" * 32, "02" + "b2" * 32, "03" + "c3" * 32]


class WakeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.store = Store(os.path.join(self.dir.name, "w.sqlite3"))
        self.faults = faulty(self.store)
        self.back_at: int | None = None
        self.faulted = False
        self.by: dict[str, AnswerBy] = {}  # open call -> when the adapter answers it at the latest
        self.reconnected: set[str] = set()  # clients whose release was not recorded (the adapter's)
        self.config = Lsps5Config(wake_timeout=TIMEOUT, wake_min_blocks=MARGIN, wake_max_per_peer=3,
                                  wake_max_total=5)
        self.holder = WakeHolder(self.store, self.config, DELTA)
        self.height, self.now = HEIGHT, NOW
        self.online: set[str] = set()
        self.wakeable = {PEERS[0], PEERS[1]}
        self.htlcs: dict[str, WakeCandidate] = {}
        self.open: dict[str, int] = {}  # key -> call number waiting for its answer
        self.answers: dict[int, list[dict]] = {}  # call number -> answers given
        self.verdicts: dict[str, list[str]] = {}  # key -> verdicts lightningd acted on
        self.unanswered: set[str] = set()  # HTLCs lightningd will replay (no verdict yet)
        self.calls = 0
        self.held_ever: set[str] = set()

    def teardown(self) -> None:
        self.store.close()
        self.dir.cleanup()

    # -- the model's side of each answer ---------------------------------------

    def _call(self, key: str) -> int:
        self.calls += 1
        self.answers[self.calls] = []
        return self.calls

    def _answer(self, call: int, key: str, answer: dict) -> None:
        self.answers[call].append(answer)
        if len(self.answers[call]) == 1:
            self.verdicts.setdefault(key, []).append(answer["result"])
            self.unanswered.discard(key)
            if answer["result"] == "continue" and key in self.held_ever:
                h = self.htlcs[key]
                # A release recorded while the store failed goes on from its row once read back,
                # whoever is connected then (lightningd fails it if the client left again).
                assert h.peer_id in self.online or self.faulted, "continued for a client that is not connected"
                assert min(h.cltv_expiry - DELTA, h.outgoing_cltv) - self.height >= MARGIN

    def _deliver(self, answers: list[Release | FailBack]) -> None:
        for a in answers:
            call = self.open.pop(a.key, None)
            if call is not None:
                self._answer(call, a.key, a.hook_answer())

    def _hook(self, key: str) -> None:
        h = self.htlcs[key]
        call = self._call(key)
        online = h.peer_id in self.online
        try:
            verdict = self.holder.accept(h, online, not online and h.peer_id in self.wakeable, self.height, self.now)
        except StoreError:  # as the adapter: abort fails too, the router answers fail
            self._answer(call, key, {"result": "fail", "failure_message": "2002"})
            return
        if verdict is None:
            self._answer(call, key, {"result": "continue"})  # the router goes on: lightningd forwards or fails
        elif isinstance(verdict, Hold):
            self.held_ever.add(key)
            self.open[key] = call
            self.by[key] = verdict.answer_by
        else:
            self._answer(call, key, verdict.hook_answer())

    # -- events ------------------------------------------------------------------

    @rule(peer=st.sampled_from(PEERS), budget=st.integers(0, 60), slack=st.integers(-3, 10))
    def htlc(self, peer, budget, slack):
        key = f"1x1x1/{len(self.htlcs)}"
        outgoing = self.height + budget
        self.htlcs[key] = WakeCandidate(key, peer, os.urandom(32), 1000, outgoing + DELTA + slack, outgoing)
        self.unanswered.add(key)
        self._hook(key)

    @rule(peer=st.sampled_from(PEERS))
    def connect(self, peer):
        self.online.add(peer)
        try:
            answers = self.holder.connected(peer, self.height, self.now)
        except StoreError:  # as the adapter: tried again by the timer
            self.reconnected.add(peer)
            return
        self._deliver(answers)
        if not self.faulted:
            assert not [k for k in self.open if self.htlcs[k].peer_id == peer]

    @rule(peer=st.sampled_from(PEERS))
    def disconnect(self, peer):
        self.online.discard(peer)

    @rule(seconds=st.integers(1, 90), blocks=st.integers(0, 8))
    def time_passes(self, seconds, blocks):
        self.now += seconds
        self.height += blocks
        if self.back_at is not None and self.now >= self.back_at:
            self.faults.down = self.back_at = None
        self._tick()
        for key in self.open:
            row = self.faults.truth(lambda k=key: self.holder.get(k))
            assert not self.by[key].due(self.height, self.now), "an open call past its time after a tick"
            assert self.now < row.deadline, "held past its deadline after a tick"
            assert min(row.cltv_expiry - DELTA, row.outgoing_cltv) - self.height >= MARGIN, "held within the margin"

    def _tick(self) -> None:
        """The adapter's timer (cln/lsps5.py tick): a pass raising is tried once more at once."""
        if not self._store_tick():
            self._store_tick(last=True)

    def _store_tick(self, last: bool = False) -> bool:
        try:
            answers: list[Release | FailBack] = []
            with self.store.tx():
                for peer in sorted(self.reconnected & self.online):
                    answers += self.holder.connected(peer, self.height, self.now)
                answered = {a.key for a in answers}
                answers += self.holder.tick(self.height, self.now, set(self.open) - answered)
            self.reconnected.clear()
        except StoreError:
            if last:
                for key in [k for k in self.open if self.by[k].due(self.height, self.now)]:
                    self._answer(self.open.pop(key), key, FailBack(key, "store_unavailable").hook_answer())
            return False
        self._deliver(answers)
        return True

    @rule(seconds=st.integers(1, 150), blocks=st.integers(0, 10))
    def server_gone_for_a_while(self, seconds, blocks):
        """Every statement raises for ``seconds`` (``blocks`` come meanwhile); the timer runs."""
        self.faulted = True
        self.faults.down = SERVER_GONE
        for _ in range(0, seconds, 10):
            self.time_passes(10, 1 if blocks > 0 else 0)
            blocks -= 1
        self.faults.down = self.back_at = None

    @rule(kind=st.sampled_from(["server_gone", "lock_lost", "commit_fails", "commit_outcome_unknown"]),
          seconds=st.one_of(st.integers(1, 120), st.just(10**6)))
    def store_fault(self, kind, seconds):
        self.faulted = True
        if kind == "server_gone":
            if self.faults.down is None:
                self.faults.down, self.back_at = SERVER_GONE, self.now + seconds
        else:
            self.back_at = None if kind == "lock_lost" else self.back_at
            self.faults.inject(kind)

    @rule(blocks=st.integers(1, 20))
    def block_before_the_tick(self, blocks):
        """A block seen by lightningd before our tick ran (a connect may come first)."""
        self.height += blocks

    @rule()
    def restart(self):
        self.open.clear()  # lightningd's calls die with the plugin
        self.reconnected.clear()
        self.faults.down = self.back_at = None  # it starts once the store can be used
        self.faults.fail_commits = self.faults.unknown_commits = 0
        self.holder = WakeHolder(self.store, self.config, DELTA)

    @precondition(lambda self: self.unanswered - set(self.open))
    @rule(data=st.data())
    def replay(self, data):
        key = data.draw(st.sampled_from(sorted(self.unanswered - set(self.open))))
        self._hook(key)

    # -- invariants --------------------------------------------------------------

    @invariant()
    def one_answer_per_call(self):
        assert all(len(a) <= 1 for a in self.answers.values())

    @invariant()
    def one_verdict_per_htlc(self):
        assert all(len(v) <= 1 for v in self.verdicts.values())

    @invariant()
    def bounded(self):
        assert self.faults.truth(self.holder.count_held) <= self.config.wake_max_total
        for p in PEERS:
            assert self.faults.truth(lambda q=p: self.holder.count_held(q)) <= self.config.wake_max_per_peer


WakeMachine.TestCase.settings = settings(
    max_examples=(15 if ON_POSTGRES else 60) if CI else 2000, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_wake_hold_machine = WakeMachine.TestCase
