"""Hostile input to the recipient role (issue 6): every HTLC and message that
is ours but wrong ends in a clean failure and a counter, never an
exception; what is not ours is left to lightningd."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time

import pytest

from asyncpay.blinded_path import BlindedPath
from asyncpay.cln.options import load
from asyncpay.crypto import pubkey_of
from asyncpay.endpoint import Dropped
from asyncpay.offers import Invoice, InvoiceRequest, Offer, StaticInvoice
from asyncpay.onion_message import HeldHtlcAvailable, OnionMessagePayload, ReleaseHeldHtlc
from asyncpay.recipient import Claimer, Fail, RecipientConfig, Resolve, Wait
from asyncpay.recipient.config import HTLC_FAIL_BACK_BUFFER, PAYER_LAG_BLOCKS
from asyncpay.store import Store
from test_claim_machine import Bench, Pay
from test_recipient_flow import Flow, attach


@pytest.fixture
def ready(tmp_path):
    """A recipient with a ready offer, asleep while a payer fetched its
    static invoice, then awake again; and the decisions its claimer made."""
    flow = Flow(tmp_path, recipient_mpp_timeout=30)
    flow.setserver()
    offer = flow.offer(description="hostile", amount_msat=10_000)
    flow.net.disconnect(flow.lnode, flow.rnode)
    req, onion = flow.payer.invoice_request(offer)
    flow.send(onion)
    static = StaticInvoice.decode(flow.inbox.take().static_invoice)
    flow.net.connect(flow.lnode, flow.rnode)
    flow.lsp.lsp.wait_flushes()
    flow.inbox.items.clear()  # the online invoice for the forwarded request
    seen = []
    claimer = flow.r.recipient.claimer
    decide = claimer.decide
    claimer.decide = lambda htlc, *a: seen.append(htlc) or decide(htlc, *a)
    return flow, offer, req, static, seen


def served_invoice(flow) -> StaticInvoice:
    [row] = flow.lsp.store.list_invoices(flow.rnode.id)
    return StaticInvoice.decode(row["invoice"])


def counters(flow) -> dict:
    return flow.r.store.counters()


def assert_failed(result, flow, reason):
    assert result.answer["result"] == "fail", result.answer
    assert result.answer["failure_message"].startswith("400f")  # incorrect_or_unknown_payment_details
    assert counters(flow)[f"claim_failed_{reason}"] == 1
    assert not flow.r.recipient.core.records.payments()


def other_request(offer: Offer, payer_secret: bytes | None = None, amount: int | None = None) -> InvoiceRequest:
    secret = payer_secret or os.urandom(32)
    req = InvoiceRequest.from_records(offer.to_records() + [(0, os.urandom(16)), (88, pubkey_of(secret))],
                                      check=False)
    req.invreq_amount = amount
    req.sign(secret)
    return req


def fresh(htlc, key, **kw):
    """Another payment over the same path: a new keysend preimage and payment hash."""
    preimage = os.urandom(32)
    payload = dataclasses.replace(htlc.payload, keysend_preimage=preimage)
    return dataclasses.replace(htlc, key=key, payment_hash=hashlib.sha256(preimage).digest(), payload=payload, **kw)


def test_static_payment_is_claimed(ready):
    flow, offer, req, static, _ = ready
    result, preimage = flow.pay_static(static, req.encode(), 10_000)
    assert result.answer == {"result": "resolve", "payment_key": preimage.hex()}


def test_wrong_preimage(ready):
    flow, offer, req, static, _ = ready
    result, _ = flow.pay_static(static, req.encode(), 10_000, payment_hash=os.urandom(32))
    assert_failed(result, flow, "wrong_preimage")


def test_missing_invoice_request(ready):
    flow, offer, req, static, _ = ready
    result, _ = flow.pay_static(static, b"", 10_000)
    assert_failed(result, flow, "invalid_invoice_request")


def test_garbage_invoice_request(ready):
    flow, offer, req, static, _ = ready
    result, _ = flow.pay_static(static, b"\xff" * 40, 10_000)
    assert_failed(result, flow, "invalid_invoice_request")


def test_request_for_another_offer(ready):
    flow, offer, req, static, _ = ready
    foreign = dataclasses.replace(offer, offer_description="someone else's")
    result, _ = flow.pay_static(static, other_request(foreign).encode(), 10_000)
    assert_failed(result, flow, "offer_mismatch")


def test_bad_signature(ready):
    flow, offer, req, static, _ = ready
    forged = other_request(offer)
    forged.signature = bytes(64)
    result, _ = flow.pay_static(static, forged.encode(), 10_000)
    assert_failed(result, flow, "invalid_invoice_request")


def test_amount_too_low(ready):
    flow, offer, req, static, _ = ready
    result, _ = flow.pay_static(static, req.encode(), 9_999)
    assert_failed(result, flow, "amount_too_low")


def test_request_amount_below_offer(ready):
    flow, offer, req, static, _ = ready
    result, _ = flow.pay_static(static, other_request(offer, amount=5_000).encode(), 10_000)
    assert_failed(result, flow, "invalid_invoice_request")


def test_replayed_htlc_is_resolved_again_and_recorded_once(ready):
    flow, offer, req, static, seen = ready
    result, preimage = flow.pay_static(static, req.encode(), 10_000)
    assert result.answer["result"] == "resolve"
    # lightningd replays the same HTLC after a restart: same verdict, one record.
    [(key, verdict)] = flow.r.recipient.claimer.decide(seen[0], flow.net.height, int(time.time()))
    assert verdict == Resolve(preimage) and key == seen[0].key
    assert len(flow.r.recipient.core.records.payments()) == 1
    assert counters(flow)["claim_replayed"] == 1


def test_expired_context(ready):
    flow, offer, req, static, seen = ready
    flow.pay_static(static, req.encode(), 10_000)
    htlc = fresh(seen[0], ("1x1x1", 99))
    far = int(time.time()) + 400 * 86400
    [(_, verdict)] = flow.r.recipient.claimer.decide(htlc, flow.net.height, far)
    assert isinstance(verdict, Fail) and verdict.reason == "expired_path_id"
    assert counters(flow)["claim_failed_expired_path_id"] == 1


def test_unknown_context_is_not_ours(ready):
    flow, offer, req, static, seen = ready
    flow.pay_static(static, req.encode(), 10_000)
    data = dataclasses.replace(seen[0].data, path_id=os.urandom(32))
    htlc = fresh(seen[0], ("x", 3), data=data)
    assert not flow.r.recipient.claimer.is_ours(data, htlc.payment_hash, int(time.time()))
    # But an HTLC of a payment whose preimage is out is ours over any path: resolving it only gains.
    assert flow.r.recipient.claimer.is_ours(data, seen[0].payment_hash, int(time.time()))
    [(_, verdict)] = flow.r.recipient.claimer.decide(htlc, flow.net.height, int(time.time()))
    assert isinstance(verdict, Fail) and counters(flow)["claim_failed_unknown_path_id"] == 1


def test_cltv_too_soon_and_too_far(ready):
    flow, offer, req, static, seen = ready
    flow.pay_static(static, req.encode(), 10_000)
    h = seen[0]
    now = int(time.time())
    [(_, soon)] = flow.r.recipient.claimer.decide(fresh(h, ("x", 1)), h.cltv_expiry, now)
    [(_, far)] = flow.r.recipient.claimer.decide(fresh(h, ("x", 2), cltv_expiry=10**8), flow.net.height, now)
    assert (soon.reason, far.reason) == ("cltv_too_soon", "cltv_too_far")


def test_a_payer_some_blocks_behind_our_tip_is_still_paid(ready):
    """The payer set the HTLC's expiry from its own tip, PAYER_LAG_BLOCKS + 1
    blocks behind ours (the chaos run: a burst of blocks, a payer two behind
    failed cltv_too_soon with the old default); one block more is too soon."""
    flow, offer, req, static, seen = ready
    flow.pay_static(static, req.encode(), 10_000)
    h = seen[0]
    now = int(time.time())
    payer_tip = h.cltv_expiry - flow.r.recipient.config.recipient_final_cltv_delta
    [(_, late)] = flow.r.recipient.claimer.decide(fresh(h, ("x", 1)), payer_tip + PAYER_LAG_BLOCKS + 1, now)
    assert isinstance(late, Resolve)
    [(_, too_late)] = flow.r.recipient.claimer.decide(fresh(h, ("x", 2)), payer_tip + PAYER_LAG_BLOCKS + 2, now)
    assert isinstance(too_late, Fail) and too_late.reason == "cltv_too_soon"


def test_multi_part_payment_waits_for_the_total(ready):
    flow, offer, req, static, seen = ready
    preimage = os.urandom(32)
    payment_hash = hashlib.sha256(preimage).digest()
    parts = [flow.pay(static.invoice_paths, static.invoice_blindedpay, amt, payment_hash, total_msat=10_000,
                      keysend_preimage=preimage, invoice_request=req.encode()) for amt in (4_000, 6_000)]
    assert parts[0].answer == parts[1].answer == {"result": "resolve", "payment_key": preimage.hex()}
    [pay] = flow.r.recipient.core.records.payments()
    assert pay["amount_msat"] >= 10_000


def test_multi_part_payment_times_out(ready):
    flow, offer, req, static, seen = ready
    preimage = os.urandom(32)
    payment_hash = hashlib.sha256(preimage).digest()
    part = flow.pay(static.invoice_paths, static.invoice_blindedpay, 4_000, payment_hash, total_msat=10_000,
                    keysend_preimage=preimage, invoice_request=req.encode())
    assert part.answer is None  # held, waiting for the rest
    assert isinstance(flow.r.recipient.claimer.decide(
        dataclasses.replace(seen[0], key=("y", 1)), flow.net.height, int(time.time()))[0][1], Wait)
    flow.r.recipient.on_block(flow.net.height, int(time.time()) + 31)
    assert part.answer["result"] == "fail" and part.answer["failure_message"].startswith("400f")
    assert counters(flow)["claim_failed_mpp_timeout"] == 1
    assert not flow.r.recipient.core.records.payments()


def test_held_htlc_available_on_a_path_not_ours_is_dropped(ready):
    flow, offer, req, static, _ = ready
    before = counters(flow).get("recipient_releases", 0)
    # A path that looks like ours (it ends at our endpoint) but was never minted.
    fake = flow.r.endpoint.mint_path("recipient:held", "0", 0, int(time.time()) + 60, int(time.time()),
                                   via=(flow.lnode.node_id,))
    flow.r.store.conn.execute("DELETE FROM path_contexts WHERE kind = 'recipient:held' AND expires_at < ?",
                              (int(time.time()) + 120,))
    held = OnionMessagePayload(held_htlc_available=HeldHtlcAvailable(), reply_path=flow.payer.reply_path())
    flow.send(flow.payer.onion_to(fake, held))
    assert not flow.inbox.items and counters(flow).get("recipient_releases", 0) == before
    assert counters(flow)["dropped_unknown_path_id"] >= 1


def test_messages_on_the_wrong_path_are_dropped(ready):
    flow, offer, req, static, _ = ready
    core = flow.r.recipient.core
    persisted = core.endpoint.mint_path("recipient:persisted", "0", 0, int(time.time()) + 60, int(time.time()),
                                        via=(flow.lnode.node_id,))
    msg = OnionMessagePayload(release_held_htlc=ReleaseHeldHtlc(), reply_path=flow.payer.reply_path())
    flow.send(flow.payer.onion_to(persisted, msg))
    assert counters(flow)["dropped_unexpected_message"] == 1
    # And the core says why, without raising anything but Dropped.
    with pytest.raises(Dropped, match="unknown_slot"):
        core._slot_row(type("D", (), {"slot": 7})())


# -- Regressions: replayed parts, the claim margin, replaced offers, bounds, errors ------------------------

M = HTLC_FAIL_BACK_BUFFER


def test_replayed_part_of_a_claimed_payment_is_resolved_after_restart(tmp_path):
    """lightningd fulfilled part 1, restarted, and replays part 2: the preimage is out, so part 2 is
    resolved at once (it used to wait for a total that never came, then fail)."""
    b = Bench(str(tmp_path / "r.sqlite3"))
    pay = Pay(os.urandom(32), 10_000)
    p1, p2 = b.htlc(pay, 4_000, 144), b.htlc(pay, 6_000, 144)
    assert b.decide(p1) == [(p1.key, Wait())]
    assert b.decide(p2) == [(p1.key, Resolve(pay.preimage)), (p2.key, Resolve(pay.preimage))]
    b.restart()
    assert b.decide(p2) == [(p2.key, Resolve(pay.preimage))]
    b.now += 3600
    b.height += 100  # even past the margin: its preimage is out, failing it would give the money up
    assert b.expire() == [] and b.decide(p1) == [(p1.key, Resolve(pay.preimage))]
    assert len(b.records.payments()) == 1 and b.store.counters()["recipient_payments_received"] == 1


def test_restart_mid_claim_completes_the_claim(tmp_path):
    """Parts waiting are on disk: after a restart the set completes once lightningd has handed
    this process parts reaching the total again (a stored part not replayed yet does not count:
    lightningd may have failed it while we were away)."""
    b = Bench(str(tmp_path / "r.sqlite3"))
    pay = Pay(os.urandom(32), 10_000)
    p1, p2, p3 = b.htlc(pay, 3_000, 144), b.htlc(pay, 3_000, 144), b.htlc(pay, 4_000, 144)
    assert b.decide(p1) == [(p1.key, Wait())] and b.decide(p2) == [(p2.key, Wait())]
    b.restart()
    assert b.decide(p1) == [(p1.key, Wait())]  # replayed: counted once
    assert b.decide(p3) == [(p3.key, Wait())]  # p2 not handed again yet: 7,000 of 10,000
    verdicts = dict(b.decide(p2))
    assert verdicts == {k: Resolve(pay.preimage) for k in (p1.key, p2.key, p3.key)}
    [row] = b.records.payments()
    assert row["amount_msat"] == 10_000


def test_a_stored_part_lightningd_failed_while_we_were_away_does_not_count(tmp_path):
    """Item "stale MPP parts": part 1 was stored by the previous process, which died; lightningd
    failed part 1 itself before the plugin came back (it is never handed again). The parts handed
    to the new process fall short of the total: no preimage goes out for less."""
    b = Bench(str(tmp_path / "r.sqlite3"))
    pay = Pay(os.urandom(32), 10_000)
    p1, p2 = b.htlc(pay, 6_000, 144), b.htlc(pay, 4_000, 144)
    assert b.decide(p1) == [(p1.key, Wait())]
    b.restart()  # lightningd fails p1 meanwhile: it is not replayed
    assert b.decide(p2) == [(p2.key, Wait())]
    assert not b.records.payments()


def test_waiting_parts_survive_a_restart_with_their_deadline(tmp_path):
    b = Bench(str(tmp_path / "r.sqlite3"))
    p1 = b.htlc(Pay(os.urandom(32), 10_000), 4_000, 144)
    b.decide(p1)
    deadline = b.claimer.next_deadline()
    b.restart()
    assert b.claimer.next_deadline() == deadline == b.now + 60
    b.now = deadline
    [(key, fail)] = b.expire()
    assert key == p1.key and fail.reason == "mpp_timeout" and not b.claimer.pending()


def test_preimage_not_revealed_within_the_claim_margin():
    """BOLT 4 / LDK onion_payment.rs: an HTLC with margin + 1 blocks left or fewer is failed."""
    b = Bench()
    [(_, near)] = b.decide(b.htlc(Pay(os.urandom(32), 10_000), 10_000, M + 1))
    pay = Pay(os.urandom(32), 10_000)
    [(_, ok)] = b.decide(b.htlc(pay, 10_000, M + 2))
    assert isinstance(near, Fail) and near.reason == "cltv_too_soon" and near.failure_message[:2] == b"\x40\x0f"
    assert ok == Resolve(pay.preimage)


def test_waiting_part_reaching_the_claim_margin_fails_the_whole_set():
    b = Bench()
    pay = Pay(os.urandom(32), 10_000)
    p1, p2 = b.htlc(pay, 3_000, M + 5), b.htlc(pay, 3_000, 400)
    b.decide(p1)
    b.decide(p2)
    b.height += 4
    assert b.expire() == []  # M + 1 left: still waiting
    b.height += 1
    assert {k: v.reason for k, v in b.expire()} == {p1.key: "mpp_expiry_near", p2.key: "mpp_expiry_near"}
    assert b.store.counters()["claim_failed_mpp_expiry_near"] == 1 and not b.claimer.pending()


def test_completion_rechecks_the_claim_margin():
    """The last part arrives after a block the timer did not see yet: no preimage goes out."""
    b = Bench()
    pay = Pay(os.urandom(32), 10_000)
    p1 = b.htlc(pay, 4_000, M + 2)
    b.decide(p1)
    b.height += 2  # p1 now has M blocks left
    p2 = b.htlc(pay, 6_000, 144)
    verdicts = dict(b.decide(p2))
    assert set(verdicts) == {p1.key, p2.key} and all(isinstance(v, Fail) for v in verdicts.values())
    assert b.records.payment(pay.payment_hash) is None


def test_claim_margin_and_final_cltv_delta_are_validated():
    RecipientConfig().validate()
    default = RecipientConfig()
    assert default.recipient_final_cltv_delta == M + 3 + PAYER_LAG_BLOCKS and default.recipient_claim_margin_blocks == M
    with pytest.raises(ValueError, match="claim-margin-blocks: must be at least 39"):
        RecipientConfig(recipient_claim_margin_blocks=21).validate()
    with pytest.raises(ValueError, match="final-cltv-delta: must be at least"):
        RecipientConfig(recipient_claim_margin_blocks=50, recipient_final_cltv_delta=50).validate()
    with pytest.raises(ValueError, match="final-cltv-delta"):
        load({"asyncpay-recipient-final-cltv-delta": 18})
    # And the claimer never uses less than LDK's buffer, whatever it is given.
    assert Claimer(Store(":memory:"), RecipientConfig(recipient_claim_margin_blocks=3)).margin == M


def test_payment_for_a_replaced_offer_is_claimed():
    """asyncpay-offer replaced slot 0's offer; the static invoice of the old one, still served for
    days, is paid: the payment context names the offer it was made for."""
    b = Bench()
    old = b.paths[0]
    b.new_offer("tea")
    assert b.records.offer(0).description == "tea"
    pay = Pay(os.urandom(32), 10_000)
    assert b.decide(b.htlc(pay, 10_000, 144, path=0)) == [(b.next_key(-1), Resolve(pay.preimage))]
    # A request for the old offer over the new offer's path is refused: the offers are not mixed up.
    foreign = b.htlc(Pay(os.urandom(32), 10_000), 10_000, 144, path=1)
    foreign = dataclasses.replace(foreign, payload=dataclasses.replace(foreign.payload, invoice_request=old[1]))
    [(_, verdict)] = b.decide(foreign)
    assert isinstance(verdict, Fail) and verdict.reason == "offer_mismatch"


def test_replaced_offers_static_invoice_and_held_path_still_work(tmp_path):
    """Through both nodes: a payer holding the old offer's static invoice gets its held HTLC released
    and its payment claimed after asyncpay-offer gave the slot a new offer."""
    flow = Flow(tmp_path)
    flow.setserver()
    first = flow.offer(description="first", amount_msat=10_000)
    static = served_invoice(flow)
    second = flow.offer(description="second", amount_msat=10_000)
    assert second.encode() != first.encode() and served_invoice(flow).offer().encode() == second.encode()
    for node in (flow.lnode, flow.rnode, flow.pnode):
        node.buckets.clear()  # two handshakes just ran: connectd's per-peer rate would drop the next message
    held = OnionMessagePayload(held_htlc_available=HeldHtlcAvailable(), reply_path=flow.payer.reply_path())
    flow.send(flow.payer.onion_to(static.invoice_held_htlc_available_paths[0], held))
    assert flow.inbox.take().release_held_htlc is not None
    req, _ = flow.payer.invoice_request(first)
    result, preimage = flow.pay_static(static, req.encode(), 10_000)
    assert result.answer == {"result": "resolve", "payment_key": preimage.hex()}
    [pay] = flow.r.recipient.core.records.payments()
    assert pay["bolt12"] == first.to_string()


def test_pending_parts_beyond_the_bound_are_failed_before_anything_is_stored():
    b = Bench(recipient_max_pending_payments=1, recipient_max_pending_parts=2)
    a, other = Pay(os.urandom(32), 20_000), Pay(os.urandom(32), 20_000)
    assert b.decide(b.htlc(a, 3_000, 144))[0][1] == Wait()
    [(_, refused)] = b.decide(b.htlc(other, 3_000, 144))
    assert refused.reason == "too_many_pending" and b.records.claim(other.payment_hash) is None
    assert b.decide(b.htlc(a, 3_000, 144))[0][1] == Wait()
    [(_, refused)] = b.decide(b.htlc(a, 3_000, 144))
    assert refused.reason == "too_many_pending" and b.records.pending_counts() == (1, 2)
    # A single-part payment is never stored as pending: it is claimed at once.
    single = Pay(os.urandom(32), 10_000)
    assert b.decide(b.htlc(single, 10_000, 144))[0][1] == Resolve(single.preimage)


def test_unpaid_online_invoices_are_bounded(tmp_path):
    flow = Flow(tmp_path, recipient_max_expected_invoices=1)
    flow.setserver()
    offer = flow.offer(description="tea", amount_msat=20_000)
    for _ in range(2):
        _, onion = flow.payer.invoice_request(offer)
        flow.send(onion)
    assert flow.r.recipient.core.records.expected_count() == 1
    assert counters(flow)["dropped_too_many_invoices"] == 1


def test_waiting_part_arms_the_mpp_timer_and_times_out_on_the_clock(ready):
    flow, offer, req, static, seen = ready
    role = flow.r.recipient
    role._wake.clear()
    preimage = os.urandom(32)
    part = flow.pay(static.invoice_paths, static.invoice_blindedpay, 4_000, hashlib.sha256(preimage).digest(),
                    total_msat=10_000, keysend_preimage=preimage, invoice_request=req.encode())
    assert part.answer is None and role._wake.is_set()
    deadline = role.claimer.next_deadline()
    assert deadline is not None and deadline - int(time.time()) <= 30
    role.expire(deadline - 1)
    assert part.answer is None
    role.expire(deadline)  # what the timer thread calls, no block needed
    assert part.answer["result"] == "fail" and counters(flow)["claim_failed_mpp_timeout"] == 1


def test_error_after_taking_an_htlc_fails_it(ready):
    flow, offer, req, static, seen = ready

    def broken(htlc, height, now):
        raise RuntimeError("disk on fire")

    flow.r.recipient.claimer.decide = broken
    result, _ = flow.pay_static(static, req.encode(), 10_000)
    assert result.answer["result"] == "fail" and result.answer["failure_message"].startswith("400f")
    assert counters(flow)["claim_failed_internal_error"] == 1 and not flow.r.recipient.waiting


def test_error_with_the_preimage_out_resolves(ready, tmp_path):
    """A replay after a restart hits an error: its payment was claimed, so it is resolved, not failed."""
    flow, offer, req, static, seen = ready
    params: list[dict] = []
    flow.rnode.htlc_hooks.insert(0, lambda p, respond: (params.append(p), respond({"result": "continue"})))
    result, preimage = flow.pay_static(static, req.encode(), 10_000)
    assert result.answer["result"] == "resolve"
    restarted = attach(flow.rnode, tmp_path)
    restarted.recipient.claimer.decide = lambda *a: 1 / 0
    answers: list[dict] = []
    restarted.on_htlc_accepted(without_path_key(params[0]), answers.append)
    assert answers == [{"result": "resolve", "payment_key": preimage.hex()}]


def test_replayed_part_after_restart_through_the_adapter(ready, tmp_path):
    """Part 2 of a claimed payment replayed to a restarted plugin is resolved."""
    flow, offer, req, static, seen = ready
    params: list[dict] = []
    flow.rnode.htlc_hooks.insert(0, lambda p, respond: (params.append(p), respond({"result": "continue"})))
    preimage = os.urandom(32)
    parts = [flow.pay(static.invoice_paths, static.invoice_blindedpay, amt, hashlib.sha256(preimage).digest(),
                      total_msat=10_000, keysend_preimage=preimage, invoice_request=req.encode())
             for amt in (4_000, 6_000)]
    assert all(p.answer["result"] == "resolve" for p in parts)
    restarted = attach(flow.rnode, tmp_path)
    answers: list[dict] = []
    restarted.on_htlc_accepted(without_path_key(params[1]), answers.append)
    assert answers == [{"result": "resolve", "payment_key": preimage.hex()}]
    assert len(restarted.recipient.core.records.payments()) == 1


def without_path_key(params: dict) -> dict:
    """How lightningd v26.06 replays an HTLC after a restart: it does not store the path key
    (wallet/wallet.c "FIXME: save path_key in db"), so ``extra_tlvs`` is missing."""
    return {**params, "htlc": {k: v for k, v in params["htlc"].items() if k != "extra_tlvs"}}


def test_replayed_waiting_part_without_path_key_waits_and_completes(ready, tmp_path):
    flow, offer, req, static, seen = ready
    params: list[dict] = []
    flow.rnode.htlc_hooks.insert(0, lambda p, respond: (params.append(p), respond({"result": "continue"})))
    preimage = os.urandom(32)

    def pay(amount):
        return flow.pay(static.invoice_paths, static.invoice_blindedpay, amount, hashlib.sha256(preimage).digest(),
                        total_msat=10_000, keysend_preimage=preimage, invoice_request=req.encode())

    first = pay(4_000)
    assert first.answer is None
    restarted = attach(flow.rnode, tmp_path)
    flow.rnode.htlc_hooks.remove(flow.r.on_htlc_accepted)  # the old process is gone
    replayed: list[dict] = []
    restarted.on_htlc_accepted(without_path_key(params[0]), replayed.append)
    assert replayed == []  # recognised as our stored part: it waits again
    second = pay(6_000)
    want = {"result": "resolve", "payment_key": preimage.hex()}
    assert second.answer == want and replayed == [want]
    # An HTLC replayed without its path key that we know nothing about is left to lightningd.
    other = without_path_key({**params[0], "htlc": {**params[0]["htlc"], "payment_hash": "11" * 32}})
    answers: list[dict] = []
    restarted.on_htlc_accepted(other, answers.append)
    assert answers == [{"result": "continue"}]


def test_invoice_request_over_a_replaced_offers_forward_path_is_answered_for_that_offer(tmp_path):
    flow = Flow(tmp_path)
    flow.setserver()
    first = flow.offer(description="first", amount_msat=10_000)
    [(raw,)] = flow.lsp.store.conn.execute("SELECT forward_path FROM invoices").fetchall()
    flow.offer(description="second", amount_msat=10_000)
    for node in (flow.lnode, flow.rnode, flow.pnode):
        node.buckets.clear()  # connectd's per-peer rate, after two handshakes
    req, _ = flow.payer.invoice_request(first)
    payload = OnionMessagePayload(invoice_request=req.encode(), reply_path=flow.payer.reply_path())
    flow.send(flow.payer.onion_to(BlindedPath.decode(raw), payload))
    inv = Invoice.decode(flow.inbox.take().invoice)
    assert inv.signature_ok() and inv.invoice_node_id == first.offer_issuer_id
    # And paying it is claimed, though slot 0 now holds the second offer.
    result = flow.pay(inv.invoice_paths, inv.invoice_blindedpay, 10_000, inv.invoice_payment_hash)
    assert result.answer["result"] == "resolve"
    [pay] = flow.r.recipient.core.records.payments()
    assert pay["kind"] == "invoice" and pay["bolt12"] == first.to_string()


def test_error_after_the_claim_was_decided_resolves_every_waiting_part(ready):
    """The set completed (preimage durable), then the adapter hit an error before answering: the
    HTLC and its waiting sibling are resolved, not failed or left hanging."""
    flow, offer, req, static, seen = ready
    claimer = flow.r.recipient.claimer
    decide = claimer.decide
    preimage = os.urandom(32)
    payment_hash = hashlib.sha256(preimage).digest()

    def pay(amount):
        return flow.pay(static.invoice_paths, static.invoice_blindedpay, amount, payment_hash, total_msat=10_000,
                        keysend_preimage=preimage, invoice_request=req.encode())

    first = pay(4_000)
    assert first.answer is None

    def decided_then_broken(htlc, height, now, live=()):
        decide(htlc, height, now, live)
        raise RuntimeError("after the decision")

    claimer.decide = decided_then_broken
    second = pay(6_000)
    want = {"result": "resolve", "payment_key": preimage.hex()}
    assert first.answer == want and second.answer == want and not flow.r.recipient.waiting
