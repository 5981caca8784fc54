"""An HTLC's verdict never waits on a store that is gone (issue "failover
without a force-close"; docs/security.md "When the store is gone"): the
adapters of the async hold, the wake hold and the recipient's claim, over a
store whose database fails on demand (tests/store_faults.py: the lock lost,
the server gone, a COMMIT whose answer is lost)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time

from asyncpay.storage import StoreError
from store_faults import LOCK_LOST, SERVER_GONE, faulty
from test_hold import FAIL, HEIGHT, hook_params, release_of
from test_lsps5_adapter import CLIENT, Answers, htlc, make, register
from test_recipient_claim import ready  # noqa: F401 (a fixture)
from test_recipient_flow import Flow, attach

KEY = "1x2x3/4"
CONTINUE_WAKE = {"result": "continue"}


# -- the async hold (cln/hold.py) ---------------------------------------------------------------------


def held(tmp_path, **req):
    flow = Flow(tmp_path)
    answers: list[dict] = []
    assert flow.lsp.hold.on_htlc(hook_params(flow, **req), answers.append) and answers == []
    return flow, answers


def test_held_htlc_is_failed_back_at_its_deadline_while_the_store_is_down(tmp_path):
    now = int(time.time())
    flow, answers = held(tmp_path, hold_until=now + 100)
    faults = faulty(flow.lsp.store)
    faults.down = LOCK_LOST
    flow.lsp.hold.tick(now + 99)
    assert answers == []  # not due yet: nothing answered from memory early
    flow.lsp.hold.tick(now + 100)
    assert answers == [FAIL]
    faults.down = None  # back: the row is failed on the next pass, no second answer
    flow.lsp.hold.tick(now + 101)
    assert answers == [FAIL] and flow.lsp.hold.core.records.get(KEY).state == "failed"


def test_held_htlc_is_failed_back_at_its_cltv_budget_while_the_store_is_down(tmp_path):
    """Budget min(540 - 40, 500) = HEIGHT + 500; the margin (hold-min-blocks) ends the hold before."""
    flow, answers = held(tmp_path)
    faulty(flow.lsp.store).down = SERVER_GONE
    margin = flow.lsp.hold.config.hold_min_blocks
    flow.lsp.on_block(HEIGHT + 500 - margin)
    assert answers == []
    flow.lsp.on_block(HEIGHT + 500 - margin + 1)
    assert answers == [FAIL]


def test_a_block_reaches_every_role_when_one_store_pass_fails(tmp_path, monkeypatch):
    flow, answers = held(tmp_path)
    seen: list[int] = []
    monkeypatch.setattr(flow.lsp.recipient, "on_block", lambda height, now: seen.append(height))
    monkeypatch.setattr(flow.lsp.hold, "tick", lambda now: 1 / 0)
    flow.lsp.on_block(HEIGHT + 1)
    assert seen == [HEIGHT + 1]


def test_release_whose_commit_outcome_is_unknown_is_continued_from_the_row(tmp_path):
    """The COMMIT landed, its answer was lost: the row says forwarded. The call used to stay
    open for good (a second release was dropped as release_replayed)."""
    flow, answers = held(tmp_path)
    faulty(flow.lsp.store).unknown_commits = 1
    flow.lsp.hold.on_message(release_of(KEY), int(time.time()))
    assert [a["result"] for a in answers] == ["continue"]
    assert flow.lsp.hold.core.records.get(KEY).state == "forwarded"


def test_release_while_the_store_is_gone_is_continued_once_it_is_back(tmp_path):
    flow, answers = held(tmp_path)
    faults = faulty(flow.lsp.store)
    faults.down = SERVER_GONE
    flow.lsp.hold.on_message(release_of(KEY), int(time.time()))
    assert answers == []  # nothing known durable: no continue
    faults.down = None
    flow.lsp.hold.tick(int(time.time()))
    assert [a["result"] for a in answers] == ["continue"]
    assert flow.lsp.hold.core.records.get(KEY).state == "forwarded"


def test_a_replayed_release_of_a_forwarded_row_whose_call_is_open_continues_it(tmp_path):
    flow, answers = held(tmp_path)
    flow.lsp.store.conn.execute("UPDATE held_htlcs SET state = 'forwarded' WHERE key = ?", (KEY,))
    flow.lsp.hold.on_message(release_of(KEY), int(time.time()))
    assert [a["result"] for a in answers] == ["continue"]


def test_the_hold_timer_answers_from_memory_when_the_node_lock_stays_busy(tmp_path, monkeypatch):
    """A store that hangs under the node lock (a server gone without a reset) must not keep a
    deadline from being met."""
    import threading

    from asyncpay.cln import role

    now = int(time.time())
    flow, answers = held(tmp_path, hold_until=now + 10)
    monkeypatch.setattr(role, "STORE_WAIT", 0.2)
    taken, done = threading.Event(), threading.Event()

    def hang() -> None:
        with flow.lsp.lock:
            taken.set()
            done.wait(10)

    threading.Thread(target=hang, daemon=True).start()
    taken.wait(5)
    try:
        flow.lsp.hold.tick(now + 10)
        assert answers == [FAIL]
    finally:
        done.set()


# -- the wake hold (cln/lsps5.py) ---------------------------------------------------------------------


def test_wake_held_htlc_is_failed_back_at_its_deadline_while_the_store_is_down(tmp_path):
    host, role = make(tmp_path, wake_timeout=60)
    register(role)
    answers = Answers()
    now = int(time.time())
    assert role.on_htlc(htlc(), answers) is True
    faulty(host.store).down = LOCK_LOST
    role.tick(now + 30)
    assert answers.got == []
    role.tick(now + 61)
    assert answers.got == [{"result": "fail", "failure_message": "2002"}]


def test_wake_release_whose_commit_outcome_is_unknown_is_continued_from_the_row(tmp_path):
    host, role = make(tmp_path)
    register(role)
    answers = Answers()
    role.on_htlc(htlc(), answers)
    faults = faulty(host.store)
    faults.unknown_commits = 1
    host.online.add(CLIENT)
    role.on_connect(CLIENT)
    assert answers.got == []  # the connect's commit raised: no answer on a guess
    role.tick(int(time.time()))
    assert answers.got == [CONTINUE_WAKE]


def test_wake_release_while_the_store_is_gone_goes_on_once_it_is_back(tmp_path):
    host, role = make(tmp_path)
    register(role)
    answers = Answers()
    role.on_htlc(htlc(), answers)
    faults = faulty(host.store)
    faults.down = SERVER_GONE
    host.online.add(CLIENT)
    role.on_connect(CLIENT)
    role.tick(int(time.time()))
    assert answers.got == []
    faults.down = None
    role.tick(int(time.time()))
    assert answers.got == [CONTINUE_WAKE]


# -- the recipient's claim (cln/recipient.py) ------------------------------------------------------------


def multi_part(flow, static, req, preimage):
    def pay(amount):
        return flow.pay(static.invoice_paths, static.invoice_blindedpay, amount, hashlib.sha256(preimage).digest(),
                        total_msat=10_000, keysend_preimage=preimage, invoice_request=req.encode())
    return pay


def test_waiting_part_is_failed_at_its_mpp_timeout_while_the_store_is_down(ready):  # noqa: F811
    flow, offer, req, static, _ = ready
    role = flow.r.recipient
    first = multi_part(flow, static, req, os.urandom(32))(4_000)
    assert first.answer is None
    faulty(flow.r.store).down = SERVER_GONE
    call = role.waiting.get(next(iter(role.waiting)))
    role.expire(call.by.seconds - 1)
    assert first.answer is None
    role.expire(call.by.seconds)
    assert first.answer["result"] == "fail" and first.answer["failure_message"].startswith("400f")


def test_claim_whose_commit_outcome_is_unknown_resolves_once_the_store_is_read(ready):  # noqa: F811
    """The claim's COMMIT landed but raised: the parts stay open (no guess), and the next
    pass reads the payment received and resolves them, announcing it once."""
    flow, offer, req, static, _ = ready
    role = flow.r.recipient
    preimage = os.urandom(32)
    pay = multi_part(flow, static, req, preimage)
    first = pay(4_000)
    faults = faulty(flow.r.store)
    faults.unknown_commits = 1
    second = pay(6_000)
    assert first.answer is None and second.answer is None and role.retry
    role.expire(int(time.time()))
    want = {"result": "resolve", "payment_key": preimage.hex()}
    assert first.answer == want and second.answer == want
    assert [t for t, _ in flow.r.notes if t == "asyncpay_payment_received"] == ["asyncpay_payment_received"]


def test_claim_whose_commit_failed_is_claimed_again_from_the_store(ready):  # noqa: F811
    flow, offer, req, static, _ = ready
    preimage = os.urandom(32)
    pay = multi_part(flow, static, req, preimage)
    first = pay(4_000)
    faulty(flow.r.store).fail_commits = 1  # the part's row and the claim: rolled back
    second = pay(6_000)
    assert first.answer is None and second.answer is None
    flow.r.recipient.expire(int(time.time()))
    want = {"result": "resolve", "payment_key": preimage.hex()}
    assert first.answer == want and second.answer == want


def test_a_part_of_a_paid_payment_is_resolved_from_memory_while_the_store_is_down(ready):  # noqa: F811
    flow, offer, req, static, _ = ready
    preimage = os.urandom(32)
    pay = multi_part(flow, static, req, preimage)
    assert pay(4_000).answer is None and pay(6_000).answer["result"] == "resolve"
    faulty(flow.r.store).down = LOCK_LOST
    late = pay(1_000)  # another part with the paid hash: the preimage is out, it is never failed
    assert late.answer == {"result": "resolve", "payment_key": preimage.hex()}


def test_a_part_with_the_store_unreadable_waits_and_fails_only_at_its_time(ready):  # noqa: F811
    flow, offer, req, static, _ = ready
    faults = faulty(flow.r.store)
    faults.down = SERVER_GONE
    part = multi_part(flow, static, req, os.urandom(32))(4_000)
    assert part.answer is None  # cannot tell whether it is ours or paid: kept open
    role = flow.r.recipient
    call = role.waiting.get(next(iter(role.waiting)))
    role.expire(int(time.time()) + 3600)  # no MPP timeout known: a part of a paid payment may wait here
    assert part.answer is None
    role.on_block(call.by.height, int(time.time()))
    assert part.answer is None
    role.on_block(call.by.height + 1, int(time.time()))  # its expiry less the claim margin
    assert part.answer["result"] == "fail"


def test_payment_received_is_announced_once_not_again_for_a_later_htlc_or_a_replay(ready, tmp_path):  # noqa: F811
    flow, offer, req, static, _ = ready
    params: list[dict] = []
    flow.rnode.htlc_hooks.insert(0, lambda p, respond: (params.append(p), respond({"result": "continue"})))
    preimage = os.urandom(32)
    result, _ = flow.pay_static(static, req.encode(), 10_000, preimage=preimage)
    assert result.answer["result"] == "resolve"
    flow.rnode.htlc_hooks.pop(0)
    again = flow.pay(static.invoice_paths, static.invoice_blindedpay, 1, hashlib.sha256(preimage).digest(),
                     keysend_preimage=preimage, invoice_request=req.encode())
    assert again.answer["result"] == "resolve"  # 1 msat more for a paid hash: resolved, not announced
    assert [t for t, _ in flow.r.notes if t == "asyncpay_payment_received"] == ["asyncpay_payment_received"]
    restarted = attach(flow.rnode, tmp_path)
    from test_recipient_claim import without_path_key
    answers: list[dict] = []
    restarted.on_htlc_accepted(without_path_key(params[0]), answers.append)
    assert answers[0]["result"] == "resolve" and not [t for t, _ in restarted.notes if t.startswith("asyncpay_pay")]


# -- the shared pieces ------------------------------------------------------------------------------------


def test_open_calls_answer_each_call_once_and_only_when_due():
    from asyncpay.open_calls import AnswerBy, OpenCalls

    calls: OpenCalls[str] = OpenCalls()
    got: list[str] = []
    calls.open("a", lambda answer: got.append("a"), AnswerBy(100, 10))
    calls.open("b", lambda answer: got.append("b"), AnswerBy(200, 20))
    assert calls.overdue(10, 99) == []
    assert [k for k, _ in calls.overdue(11, 99)] == ["a"]  # past its last height
    assert [k for k, _ in calls.overdue(0, 200)] == ["b"]  # at its second
    assert calls.pop("a") is None and len(calls) == 0


def test_a_driver_error_counts_as_a_store_failure_a_bug_does_not():
    from asyncpay.storage.base import is_store_failure

    assert is_store_failure(StoreError("x")) and is_store_failure(sqlite3.OperationalError("disk I/O error"))
    assert not is_store_failure(ZeroDivisionError())


def test_forwards_through_the_lsp_go_on_while_the_store_is_gone(tmp_path):
    """Every forward passes the wake hold's hook: with the store gone it is not ours
    (lightningd forwards or fails it as without us), never failed by us."""
    host, role = make(tmp_path)
    register(role)
    faulty(host.store).down = SERVER_GONE
    answers = Answers()
    host.online.add(CLIENT)
    assert role.on_htlc(htlc(), answers) is False and answers.got == []
    host.online.discard(CLIENT)
    assert role.on_htlc(htlc(htlc_id=1), answers) is False and answers.got == []
