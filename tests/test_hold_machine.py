"""The sans-IO holding LSP under random events (hypothesis state machine).

``Holder`` runs against a model of lightningd and of the adapter's open
``htlc_accepted`` calls (``cln/hold.py``: a held HTLC keeps its call until
an answer; an answer without a call is given from the store on the
replay). Events, in any order: new HTLCs (good ones, incoming expiry near,
a sender who left us less than our cltv-delta, non-clients, unusable held
paths, hold_until soon or past), releases (own, unknown, replayed, late,
not a release at all), blocks, the clock past hold_until or the longest
hold, restarts (store kept, calls and memory dropped, maybe a larger
cltv-delta; releases, blocks and the timer may come before lightningd
replays every HTLC without a verdict), operator fails and internal errors
(``abort``), and store faults (tests/store_faults.py): the lock lost (until
a restart), the server gone for some seconds, a commit that fails, a commit
whose outcome is unknown (it landed, then raised). The adapter's side is
modelled as ``cln/hold.py`` does it: open calls with their ``AnswerBy``,
releases whose commit raised tried again by the timer, and the calls whose
time came failed from memory when the timer cannot use the store.

After every step:

* every HTLC got at most one verdict, ever;
* no HTLC is still held (without a verdict) once its budget,
  min(cltv_expiry - cltv-delta, outgoing CLTV), is within the margin of the
  tip, or past its hold_until or longest hold;
* nothing is continued without a release that came while it was held,
  within its budget and deadline, and nothing is continued with its budget
  spent;
* a FAILED row's HTLC was answered fail, a FORWARDED one's continue, a HELD
  one has its call open (but for a call failed from memory while the store
  was gone: its row may say held or forwarded; fail is safe either way);
  held_htlc_available goes only for held HTLCs, at most
  hold-resend-attempts times each.

Runs small under the "ci" profile; HYPOTHESIS_PROFILE=thorough for many
examples (tests/conftest.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from asyncpay.actions import InjectOnion
from asyncpay.endpoint import Delivered, Dropped
from asyncpay.hold import Continue, Forward, Hold, HoldConfig, Holder, HtlcToHold, Refuse, Step
from asyncpay.hold.holder import RELEASE, FailBack
from asyncpay.onion_message import HeldHtlcAvailable, OnionMessagePayload, ReleaseHeldHtlc
from asyncpay.open_calls import OpenCalls
from asyncpay.payment import HopPayload
from asyncpay.payment.hold_request import HoldRequest
from asyncpay.storage import StoreError
from asyncpay.store import Store
from store_faults import SERVER_GONE, faulty
from test_hold import held_path

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")

CI = os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci"
HEIGHT, NOW = 800_000, 1_800_000_000
DELTA, MARGIN, LONGEST, ATTEMPTS = 40, 36, 7200, 2
PEERS = ["02" + "a1" * 32, "02" + "b2" * 32, "03" + "c3" * 32]
GOOD, BAD = held_path(), held_path()  # BAD: a path the endpoint cannot send over
BAD_BYTES = BAD.encode()


def config() -> HoldConfig:
    return HoldConfig(hold_min_blocks=MARGIN, hold_max_seconds=LONGEST, hold_max_per_peer=3, hold_max_total=6,
                      hold_resend_first=60, hold_resend_max_interval=600, hold_resend_attempts=ATTEMPTS)


class FakeEndpoint:
    """One onion per usable path; checks it is asked only for held rows."""

    def __init__(self, machine: HoldMachine) -> None:
        self.machine = machine

    def held_htlc_available(self, paths, kind, owner, expires_at, now, resolve_intro=None, via=()):
        assert kind == RELEASE
        row = self.machine.holder.records.get(owner)
        assert row is not None and row.state == "held", "held_htlc_available for an HTLC not held"
        assert expires_at <= row.since + LONGEST  # the reply path dies with the hold
        usable = [p for p in paths if p.encode() != BAD_BYTES]
        return ([InjectOnion(b"\x02" * 33, owner.encode(), None, "held_htlc_available") for _ in usable],
                ["unresolvable_path"] * (len(paths) - len(usable)))


@dataclass
class Lightningd:
    """One incoming HTLC as lightningd sees it."""

    h: HtlcToHold
    first_seen: int
    deadline: int
    verdicts: list[dict] = field(default_factory=list)
    valid_release: bool = False  # a release came while it was held, within budget and deadline

    def budget(self, delta: int = DELTA) -> int:
        return min(self.h.cltv_expiry - delta, self.h.outgoing_cltv)


# A new HTLC: blocks of outgoing CLTV left, blocks between incoming and
# outgoing (our delta is 40), the peer's channels' private flags, the
# sender's hold_until (seconds from now), a usable held path or not.
good_htlcs = st.tuples(
    st.integers(MARGIN + 10, 400), st.integers(DELTA, 200), st.just((True,)),
    st.one_of(st.none(), st.integers(600, 5000)), st.just(True), st.sampled_from(PEERS))
any_htlcs = st.tuples(
    st.one_of(st.integers(MARGIN, 400), st.integers(0, 60)),
    st.one_of(st.just(DELTA), st.integers(DELTA, 200), st.integers(-50, DELTA - 1)),
    st.sampled_from([(True,), (True,), (True, True), (False,), (True, False), ()]),
    st.one_of(st.none(), st.integers(1, 5000), st.integers(-100, 0)),
    st.sampled_from([True, True, True, False]),
    st.sampled_from(PEERS),
)
htlcs = st.one_of(good_htlcs, any_htlcs)


class HoldMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = Store(":memory:")
        self.faults = faulty(self.store)
        self.back_at: int | None = None  # the server comes back then (None: not gone, or the lock is lost)
        self.faulted = False  # a fault happened: answers may come from memory or from a later pass
        self.from_memory: set[str] = set()  # HTLCs answered without their row saying so
        self.endpoint = FakeEndpoint(self)
        self.height, self.now = HEIGHT, NOW
        self.htlcs: dict[str, Lightningd] = {}
        self.sends: dict[str, int] = {}
        self.next_id = 0
        self.replay_pending = False
        self._start(DELTA)

    def _start(self, delta: int) -> None:
        """The plugin (re)starts: a new Holder over the same store, no open calls."""
        self.delta = delta
        self.holder = Holder(self.store, self.endpoint, config(), lambda i: i.node_id, cltv_delta=delta)
        self.waiting: OpenCalls[str] = OpenCalls()
        self.releases: dict[str, Delivered] = {}

    def teardown(self) -> None:
        self.store.close()

    # -- the adapter, as cln/hold.py -----------------------------------------

    def _respond(self, key: str):
        def respond(answer: dict) -> None:
            x = self.htlcs[key]
            x.verdicts.append(answer)
            assert len(x.verdicts) == 1, f"{key} answered twice: {x.verdicts}"
            if answer["result"] == "continue":
                assert x.valid_release, f"{key} continued without a valid release"
                assert x.budget(self.delta) - self.height >= MARGIN, f"{key} continued with its budget spent"
        return respond

    def _accept(self, key: str) -> None:
        x = self.htlcs[key]
        respond = self._respond(key)
        try:
            verdict = self.holder.accept(x.h, self.height, self.now)
            if isinstance(verdict, Forward):
                self.holder.forwarded(key, self.now)
        except StoreError:
            # The adapter's abort (it may fail too); the router answers fail.
            event("accept: store failed")
            try:
                self.holder.abort(key, self.now)
            except StoreError:
                pass
            self.from_memory.add(key)
            respond({"result": "fail", "failure_message": "2002"})
            return
        if isinstance(verdict, Hold):
            self.waiting.open(key, respond, verdict.answer_by)
            self._sent(verdict.actions)
        elif isinstance(verdict, Forward):
            respond({"result": "continue", "payload": verdict.payload.hex()})
        else:
            assert isinstance(verdict, Refuse)
            respond({"result": "fail", "failure_message": verdict.failure_message.hex()})

    def _sent(self, onions: list[InjectOnion]) -> None:
        """held_htlc_available the adapter sends (a pass whose commit failed sends nothing)."""
        for a in onions:
            self.sends[a.packet.decode()] = self.sends.get(a.packet.decode(), 0) + 1

    def _mark_forwarded(self, step: Step) -> None:
        for a in step.answers:
            if isinstance(a, Continue) and a.key in self.waiting:
                self.holder.forwarded(a.key, self.now)

    def _run(self, step: Step) -> None:
        for a in step.answers:
            respond = self.waiting.pop(a.key)
            if respond is None:
                continue  # answered from the store on lightningd's replay
            respond(a.hook_answer())

    def _tick(self) -> None:
        """The adapter's timer: a pass through the store, tried once more at once if it
        raised (its commit may have landed), else the calls whose time came failed from memory."""
        step = self._store_tick() or self._store_tick()
        if step is None:
            for key, call in self.waiting.overdue(self.height, self.now):
                event("tick failed a hold back from memory")
                self.from_memory.add(key)
                call.respond(FailBack(key, "store_unavailable").hook_answer())
            return
        self._after_tick(step)

    def _store_tick(self) -> Step | None:
        try:
            step = Step()
            with self.store.tx():
                for key, d in sorted(self.releases.items()):
                    if key in self.waiting:
                        try:
                            step += self.holder.release(d, self.height, self.now, self.waiting.keys())
                        except Dropped:
                            pass
                answered = {a.key for a in step.answers}
                step += self.holder.tick(self.height, self.now, self.waiting.keys() - answered)
                self._mark_forwarded(step)
            self.releases.clear()
        except StoreError:
            return None
        return step

    def _after_tick(self, step: Step) -> None:
        if step.answers:
            event("tick failed a hold back")
        if step.sends:
            event("tick sent held_htlc_available again")
            self._sent(step.sends)
        self._run(step)

    # -- events ------------------------------------------------------------------

    @rule(spec=htlcs)
    def new_htlc(self, spec) -> None:
        out_left, delta, private, until, usable, peer = spec
        key = f"1x1x1/{self.next_id}"
        self.next_id += 1
        outgoing = self.height + out_left
        hold_until = None if until is None else self.now + until
        payload = HopPayload(amt_to_forward=10_000, outgoing_cltv_value=outgoing, short_channel_id=7).encode()
        request = HoldRequest(held_htlc_available_paths=[GOOD if usable else BAD], hold_until=hold_until)
        h = HtlcToHold(key, os.urandom(32), 10_100, outgoing + delta, outgoing, peer, payload, request, private)
        deadline = min(self.now + LONGEST, hold_until) if hold_until is not None else self.now + LONGEST
        x = self.htlcs[key] = Lightningd(h, self.now, deadline)
        self._accept(key)
        must_refuse = (not private or not all(private) or delta < self.delta
                       or x.budget(self.delta) - self.height < MARGIN
                       or deadline <= self.now or not usable)
        if must_refuse:
            assert x.verdicts and x.verdicts[0]["result"] == "fail", (spec, x.verdicts)
        event("new HTLC held" if key in self.waiting else "new HTLC refused")

    def _held(self) -> list[str]:
        return self.faults.truth(lambda: sorted(r.key for r in self.holder.records.by_state("held")))

    @rule(data=st.data(), late=st.sampled_from([0, 0, 1, 20, 300]))
    @precondition(lambda self: self._held())
    def release_held(self, data, late) -> None:
        self._release(data.draw(st.sampled_from(self._held())), "own", late)

    @rule(data=st.data(), kind=st.sampled_from(["any", "unknown", "not_a_release"]))
    def release_other(self, data, kind) -> None:
        if kind == "unknown" or not self.htlcs:
            key = f"9x9x9/{data.draw(st.integers(0, 5))}"
        else:
            key = data.draw(st.sampled_from(sorted(self.htlcs)))
        self._release(key, kind, 0)

    def _release(self, key: str, kind: str, late: int, tick: bool = True) -> None:
        # late > 0: the adapter learnt of blocks (from another HTLC) before their block_added.
        self.height += late
        x, row = self.htlcs.get(key), self.faults.truth(lambda: self.holder.records.get(key))
        payload = OnionMessagePayload(release_held_htlc=ReleaseHeldHtlc()) if kind != "not_a_release" else \
            OnionMessagePayload(held_htlc_available=HeldHtlcAvailable())
        valid = (kind != "not_a_release" and x is not None and row is not None and row.state == "held"
                 and x.budget(self.delta) - self.height >= MARGIN and self.now < x.deadline)
        if valid:
            x.valid_release = True
        before = {k: list(v.verdicts) for k, v in self.htlcs.items()}
        d = Delivered(RELEASE, key, None, payload, os.urandom(32))
        try:
            with self.store.tx():
                step = self.holder.release(d, self.height, self.now, self.waiting.keys())
                self._mark_forwarded(step)
        except Dropped as e:
            event(f"release dropped: {e.reason}")
            if not self.faulted:
                assert not valid, f"a valid release of {key} was dropped: {e}"
                assert {k: v.verdicts for k, v in self.htlcs.items()} == before
                if row is not None:
                    assert self.faults.truth(lambda: self.holder.records.get(key)).state == row.state  # nothing changed
        except StoreError:
            # As the adapter: kept for the timer, which re-reads the row at once.
            event("release: store failed")
            if key in self.waiting:
                self.releases[key] = d
                self._tick()
        else:
            [answer] = step.answers
            assert answer.key == key
            if not self.faulted:
                assert isinstance(answer, Continue) is valid
            event("release: " + ("continue" if valid else "fail back"))
            self._run(step)
            if (key in self.waiting or not self.replay_pending) and not self.faulted:
                assert self.htlcs[key].verdicts[0]["result"] == ("continue" if valid else "fail")
        if tick:
            self._tick()

    @rule(blocks=st.one_of(st.integers(1, 6), st.integers(7, 300)))
    def blocks(self, blocks) -> None:
        self.height += blocks
        self._tick()

    @rule(seconds=st.one_of(st.integers(1, 700), st.integers(701, 8000)))
    def clock(self, seconds) -> None:
        self.now += seconds
        if self.back_at is not None and self.now >= self.back_at:
            self.faults.down, self.back_at = None, None  # the server is back
        self._tick()

    # -- store faults --------------------------------------------------------------

    @rule(seconds=st.integers(60, 9000), blocks=st.integers(0, 100))
    def server_gone_for_a_while(self, seconds, blocks) -> None:
        """Every statement raises for ``seconds`` (``blocks`` come meanwhile); the timer runs."""
        self.faulted = True
        down, self.faults.down = self.faults.down, SERVER_GONE
        for _ in range(10):
            self.height += blocks // 10
            self.now += seconds // 10
            self._tick()
            self.none_held_past_its_margin_or_deadline()
        self.faults.down = down

    @rule(kind=st.sampled_from(["server_gone", "lock_lost", "commit_fails", "commit_outcome_unknown"]),
          seconds=st.one_of(st.integers(1, 9000), st.just(10**6)))
    def store_fault(self, kind, seconds) -> None:
        """The server gone for ``seconds`` (every statement raises); the lock lost
        (every statement raises until the plugin restarts and takes it again); the
        next commit rolled back, or landed but raising (its outcome unknown)."""
        self.faulted = True
        event(f"store fault: {kind}")
        if kind == "server_gone":
            if self.faults.down is None:
                self.faults.down, self.back_at = SERVER_GONE, self.now + seconds
        else:
            self.back_at = None if kind == "lock_lost" else self.back_at
            self.faults.inject(kind)

    @rule(data=st.data())
    @precondition(lambda self: self.htlcs)
    def operator_fails(self, data) -> None:
        key = data.draw(st.sampled_from(sorted(self.htlcs)))
        try:
            step = self.holder.fail(self.htlcs[key].h.payment_hash, self.now)
        except StoreError:  # the RPC errors; as the adapter, the truth is re-read at once
            self._tick()
            return
        self._run(step)

    @rule(data=st.data())
    @precondition(lambda self: self.htlcs)
    def internal_error(self, data) -> None:
        key = data.draw(st.sampled_from(sorted(self.htlcs)))
        try:
            step = self.holder.abort(key, self.now)
        except StoreError:  # as the adapter: the open call fails from memory
            if key in self.waiting:
                self.from_memory.add(key)
            step = Step([FailBack(key, "internal_error")])
        self._run(step)

    @rule(data=st.data(), delta=st.one_of(st.just(DELTA), st.integers(DELTA + 1, DELTA + 300)),
          before=st.lists(st.sampled_from(["release", "blocks", "tick", "clock"]), max_size=3))
    def restart(self, data, delta, before) -> None:
        """The plugin restarts (maybe with a larger cltv-delta); before
        lightningd's replays reach it, releases may come, the chain and the
        clock may move, its timer may run. It starts once the store can be
        used (a lost lock is taken again)."""
        self.faults.down = self.back_at = None
        self.faults.fail_commits = self.faults.unknown_commits = 0
        self._start(delta)
        self.replay_pending = True
        for what in before:
            if what == "release" and self._held():
                self._release(data.draw(st.sampled_from(self._held())), "own", 0, tick=False)
            elif what == "blocks":
                self.height += data.draw(st.integers(1, 300))  # seen on the replayed HTLCs, not ticked
            elif what == "clock":
                self.now += data.draw(st.integers(1, 8000))
            elif what == "tick":
                self._tick()
        self._replay()

    def _replay(self) -> None:
        """lightningd asks again about every HTLC it has no verdict for."""
        self.replay_pending = False
        for key, x in sorted(self.htlcs.items()):
            if not x.verdicts:
                self._accept(key)
                event(f"replay answered {x.verdicts[0]['result'] if x.verdicts else 'held'}")

    # -- invariants ----------------------------------------------------------------

    @invariant()
    def one_verdict_each(self) -> None:
        assert all(len(x.verdicts) <= 1 for x in self.htlcs.values())

    @invariant()
    def none_held_past_its_margin_or_deadline(self) -> None:
        for key, x in self.htlcs.items():
            if not x.verdicts:
                assert key in self.waiting, f"{key} has no verdict and no open call"
                assert x.budget(self.delta) - self.height >= MARGIN, f"{key} still held at its margin"
                assert self.now < x.deadline, f"{key} still held past its hold_until or longest hold"

    @invariant()
    def rows_match_the_answers(self) -> None:
        self.faults.truth(self._rows_match_the_answers)

    def _rows_match_the_answers(self) -> None:
        for row in self.holder.records.all():
            x = self.htlcs[row.key]
            if row.key in self.from_memory:
                assert [v["result"] for v in x.verdicts] in ([], ["fail"]), (row, x.verdicts)
            elif row.state == "failed":
                assert [v["result"] for v in x.verdicts] == ["fail"], (row, x.verdicts)
            elif row.state == "forwarded":
                assert [v["result"] for v in x.verdicts] == ["continue"]
            elif row.state == "released":
                raise AssertionError(f"{row.key} released but not continued")
            else:
                assert not x.verdicts and row.key in self.waiting
        for key, x in self.htlcs.items():
            if x.verdicts and x.verdicts[0]["result"] == "continue":
                assert self.holder.records.get(key).state == "forwarded", "continued without a durable release"

    @invariant()
    def held_htlc_available_is_bounded(self) -> None:
        assert all(n <= ATTEMPTS for n in self.sends.values()), self.sends


HoldMachine.TestCase.settings = settings(
    max_examples=100 if CI else settings.default.max_examples, stateful_step_count=30 if CI else 60,
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestHoldMachine = HoldMachine.TestCase
