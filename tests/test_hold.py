"""The hold state machine without a daemon (issue 8): every HTLC gets a clear
verdict, and none is left without one past its margin."""

from __future__ import annotations

import os
import time

import pytest

from asyncpay.blinded_path import EncryptedData, IntroductionNode
from asyncpay.crypto import CryptoError, pubkey_of
from asyncpay.endpoint import Delivered, Dropped, Endpoint
from asyncpay.hold import Continue, FailBack, Forward, Hold, HoldConfig, Holder, HtlcToHold, Refuse, Step
from asyncpay.hold.holder import RELEASE
from asyncpay.offers import StaticInvoice
from asyncpay.onion_message import HeldHtlcAvailable, OnionMessagePayload, ReleaseHeldHtlc, build_path
from asyncpay.payment import HopPayload
from asyncpay.payment.hold_request import HOLD_REQUEST, HoldRequest
from asyncpay.payment.route import RouteHop, blinded_payment_onion, to_introduction
from asyncpay.store import Store
from asyncpay.wire.types import bigsize
from test_recipient_flow import Flow

NOW, HEIGHT = 1_800_000_000, 800_000
LSP, RECIPIENT_LSP, RECIPIENT = (bytes([b]) * 32 for b in (0x61, 0x62, 0x63))


def held_path():
    """A recipient's held_htlc_available path [its LSP -> it -> its V]."""
    return build_path(os.urandom(32), [
        (pubkey_of(RECIPIENT_LSP), EncryptedData(next_node_id=pubkey_of(RECIPIENT))),
        (pubkey_of(RECIPIENT), EncryptedData(path_id=os.urandom(32))),
    ])


@pytest.fixture
def holder(tmp_path):
    store = Store(str(tmp_path / "hold.sqlite3"))
    endpoint = Endpoint(store, pubkey_of(LSP), os.urandom(32), os.urandom)
    return Holder(store, endpoint, HoldConfig(hold_min_blocks=36, hold_max_per_peer=2, hold_max_total=3,
                                              hold_max_seconds=3600), lambda i: i.node_id)


def htlc(n: int = 0, peer: str = "02" + "aa" * 32, outgoing_cltv: int = HEIGHT + 500, delta: int = 40,
         private: tuple[bool, ...] = (True,), **req) -> HtlcToHold:
    payload = HopPayload(amt_to_forward=10_000, outgoing_cltv_value=outgoing_cltv, short_channel_id=7)
    return HtlcToHold(f"1x1x1/{n}", os.urandom(32), 10_100, outgoing_cltv + delta, outgoing_cltv, peer,
                      payload.encode(), HoldRequest(held_htlc_available_paths=[held_path()], **req), private)


def release_for(holder: Holder, key: str) -> Delivered:
    return Delivered(RELEASE, key, None, OnionMessagePayload(release_held_htlc=ReleaseHeldHtlc()), os.urandom(32))


def test_hold_then_release_then_forward(holder):
    h = htlc()
    verdict = holder.accept(h, HEIGHT, NOW)
    assert isinstance(verdict, Hold)
    [msg] = verdict.actions
    assert msg.purpose == "held_htlc_available" and msg.first_hop == pubkey_of(RECIPIENT_LSP)
    assert holder.release(release_for(holder, h.key), HEIGHT + 10, NOW + 60) == Step([Continue(h.key, h.payload)])
    assert holder.records.get(h.key).state == "released"
    holder.forwarded(h.key, NOW + 61)
    assert holder.records.get(h.key).state == "forwarded"


def test_held_htlc_available_counts_against_the_sender_in_a_mailbox(holder):
    # Queued for a sleeping first hop, our message takes the sender's share
    # of that peer's mailbox, not a share every sender would have in common.
    h = htlc(peer="02" + "bb" * 32)
    [msg] = holder.accept(h, HEIGHT, NOW).actions
    assert msg.cause == "02" + "bb" * 32


def test_the_payload_we_continue_with_has_no_hold_request():
    req = HoldRequest(held_htlc_available_paths=[held_path()], hold_until=NOW + 10)
    p = HopPayload(amt_to_forward=1, outgoing_cltv_value=2, short_channel_id=3, unknown={HOLD_REQUEST: req.encode()})
    wire = p.encode()
    back = HopPayload.decode(wire)
    assert HoldRequest.decode(back.unknown[HOLD_REQUEST]) == req
    del back.unknown[HOLD_REQUEST]
    assert back.encode() == HopPayload(amt_to_forward=1, outgoing_cltv_value=2, short_channel_id=3).encode()


def test_release_before_the_hold_is_recorded_does_nothing(holder):
    h = htlc()
    with pytest.raises(Dropped, match="unknown_hold"):
        holder.release(release_for(holder, h.key), HEIGHT, NOW)
    assert isinstance(holder.accept(h, HEIGHT, NOW), Hold)  # and the hold that follows is a normal one
    assert holder.records.get(h.key).state == "held"


def test_duplicate_and_foreign_releases(holder):
    h = htlc()
    holder.accept(h, HEIGHT, NOW)
    holder.release(release_for(holder, h.key), HEIGHT, NOW)
    with pytest.raises(Dropped, match="release_replayed"):
        holder.release(release_for(holder, h.key), HEIGHT, NOW)
    with pytest.raises(Dropped, match="unknown_hold"):
        holder.release(release_for(holder, "9x9x9/9"), HEIGHT, NOW)
    other = Delivered(RELEASE, h.key, None, OnionMessagePayload(held_htlc_available=HeldHtlcAvailable()),
                      os.urandom(32))
    with pytest.raises(Dropped, match="unexpected_message"):
        holder.release(other, HEIGHT, NOW)


@pytest.mark.parametrize("blocks_left,held", [(36, True), (35, False)])
def test_expiry_at_the_margin(holder, blocks_left, held):
    h = htlc()
    holder.accept(h, HEIGHT, NOW)
    failed = holder.tick(h.outgoing_cltv - blocks_left, NOW).answers
    assert (failed == []) is held
    assert holder.records.get(h.key).state == ("held" if held else "failed")
    if not held:
        assert failed == [FailBack(h.key, "cltv_budget")]
        with pytest.raises(Dropped, match="release_too_late"):
            holder.release(release_for(holder, h.key), h.outgoing_cltv - blocks_left, NOW)


def test_no_budget_no_hold(holder):
    h = htlc(outgoing_cltv=HEIGHT + 35)
    assert holder.accept(h, HEIGHT, NOW) == Refuse("cltv_budget")
    assert holder.records.get(h.key) is None


def test_release_with_the_budget_spent_is_not_forwarded(holder):
    h = htlc()
    holder.accept(h, HEIGHT, NOW)
    # Blocks came, no block_added yet: the release fails the HTLC back, in the same step.
    assert holder.release(release_for(holder, h.key), h.outgoing_cltv - 10, NOW) == Step([FailBack(h.key,
                                                                                                    "cltv_budget")])
    assert holder.records.get(h.key).state == "failed"
    assert holder.store.counters()["hold_release_too_late"] == 1


def test_held_too_long(holder):
    h = htlc()
    holder.accept(h, HEIGHT, NOW)
    assert holder.tick(HEIGHT, NOW + 3599).answers == []
    assert holder.tick(HEIGHT, NOW + 3600).answers == [FailBack(h.key, "held_too_long")]


def test_replay_after_restart_answers_from_the_store(holder, tmp_path):
    h, r, f = htlc(1), htlc(2), htlc(3, peer="03" + "bb" * 32)
    for x in (h, r, f):
        holder.accept(x, HEIGHT, NOW)
    holder.release(release_for(holder, r.key), HEIGHT, NOW)
    holder.fail(f.payment_hash, NOW)
    # A new Holder over the same file: lightningd restarted and replays its HTLCs.
    again = Holder(holder.store, holder.endpoint, holder.config, lambda i: i.node_id)
    [resent] = again.accept(h, HEIGHT + 1, NOW + 5).actions  # held again, and held_htlc_available goes again
    assert resent.purpose == "held_htlc_available"
    assert again.accept(r, HEIGHT + 1, NOW + 5) == Forward(r.payload)
    assert again.accept(f, HEIGHT + 1, NOW + 5) == Refuse("failed_by_operator")
    assert holder.store.counters()["hold_replayed"] == 3
    # A release after the restart still works for the one still held.
    assert again.release(release_for(again, h.key), HEIGHT + 1, NOW + 6).answers == [Continue(h.key, h.payload)]


def test_limits(holder):
    a, b = htlc(1), htlc(2)
    assert isinstance(holder.accept(a, HEIGHT, NOW), Hold)
    assert isinstance(holder.accept(b, HEIGHT, NOW), Hold)
    assert holder.accept(htlc(3), HEIGHT, NOW) == Refuse("peer_limit")
    assert isinstance(holder.accept(htlc(4, peer="03" + "cc" * 32), HEIGHT, NOW), Hold)
    assert holder.accept(htlc(5, peer="03" + "dd" * 32), HEIGHT, NOW) == Refuse("total_limit")
    assert holder.store.counters()["hold_refused_peer_limit"] == 1


def test_hold_until_in_the_past_is_refused(holder):
    assert holder.accept(htlc(hold_until=NOW - 1), HEIGHT, NOW) == Refuse("hold_until_past")


def test_unusable_paths_refuse_the_hold(holder):
    h = htlc()
    unresolvable = Holder(holder.store, holder.endpoint, holder.config, lambda i: None)
    bad = HtlcToHold(h.key, h.payment_hash, h.amount_msat, h.cltv_expiry, h.outgoing_cltv, h.peer_id, h.payload,
                     HoldRequest(held_htlc_available_paths=[build_path(os.urandom(32), [
                         (pubkey_of(RECIPIENT), EncryptedData(path_id=os.urandom(32)))])]), (True,))
    # An introduction node named by an scid we cannot resolve.
    p = bad.request.held_htlc_available_paths[0]
    bad.request.held_htlc_available_paths[0] = type(p)(IntroductionNode(scid=5, direction=0), p.first_path_key,
                                                       p.hops)
    assert unresolvable.accept(bad, HEIGHT, NOW) == Refuse("no_usable_path")
    assert unresolvable.records.get(h.key).state == "failed"


def test_payload_budget_one_held_path_fits_two_do_not(tmp_path):
    """The evidence for the hold request's shape (docs/architecture.md): a real
    static invoice's held path (3 hops) in the LSP's hop, a route of two
    channels, a two-hop blinded path and a final payload with the
    invoice_request: one held path fits the onion's 1300 bytes, two do not."""
    flow = Flow(tmp_path)
    flow.setserver()
    offer = flow.offer(description="a typical coffee offer")
    [row] = flow.lsp.store.list_invoices(flow.rnode.id)
    inv = StaticInvoice.decode(row["invoice"])
    req, _ = flow.payer.invoice_request(offer, amount=40_000)
    [path] = inv.payment_paths()
    [held] = inv.invoice_held_htlc_available_paths
    a, c = to_introduction(path, 40_000, HEIGHT)
    route = [RouteHop(1 << 40, pubkey_of(LSP), a + 10, c + 40), RouteHop(2 << 40, flow.lnode.node_id, a, c)]

    def build(n: int) -> bytes:
        hold = HoldRequest(held_htlc_available_paths=[held] * n, hold_until=NOW)
        return blinded_payment_onion(os.urandom(32), pubkey_of(RECIPIENT), route, path, 40_000, HEIGHT, os.urandom(32),
                                     keysend_preimage=os.urandom(32), invoice_request=req.encode(),
                                     extra={pubkey_of(LSP): {HOLD_REQUEST: hold.encode()}}).onion

    assert len(build(1)) == 1366
    with pytest.raises(CryptoError, match="more than 1300"):
        build(2)


def test_ldk_hold_htlc_is_refused_with_a_reason(tmp_path):
    """update_add_htlc TLV 75537 (LDK's hold_htlc) cannot work through CLN."""
    flow = Flow(tmp_path)
    answers: list[dict] = []
    extra = "fe00012711" + "00"  # type 75537 (BigSize), empty value
    params = {"onion": {"payload": "00"}, "htlc": {"extra_tlvs": extra}, "peer_id": flow.pnode.id}
    assert flow.lsp.hold.on_htlc(params, answers.append)
    assert answers == [{"result": "fail", "failure_message": "2002"}]
    assert flow.lsp.store.counters()["hold_refused_ldk_hold_htlc"] == 1
    assert "75537" in flow.lsp.logs[-1] and "revoke_and_ack" in flow.lsp.logs[-1]


def test_hold_request_through_the_adapter(tmp_path):
    """An HTLC whose hop payload carries a hold request is held by the LSP's
    node and continued, without the request, on release."""
    flow = Flow(tmp_path)
    req = HoldRequest(held_htlc_available_paths=[held_path()])
    payload = HopPayload(amt_to_forward=10_000, outgoing_cltv_value=HEIGHT + 500, short_channel_id=7,
                         unknown={HOLD_REQUEST: req.encode()}).encode()
    params = {"onion": {"payload": (bigsize(len(payload)) + payload).hex(), "outgoing_cltv_value": HEIGHT + 500},
              "htlc": {"short_channel_id": "1x2x3", "id": 4, "amount_msat": 10_100, "cltv_expiry": HEIGHT + 540,
                       "cltv_expiry_relative": 540, "payment_hash": "11" * 32},
              "peer_id": flow.pnode.id}
    answers: list[dict] = []
    assert flow.lsp.hold.on_htlc(params, answers.append)
    assert answers == [] and flow.lsp.hold.core.records.get("1x2x3/4").state == "held"
    d = Delivered(RELEASE, "1x2x3/4", None, OnionMessagePayload(release_held_htlc=ReleaseHeldHtlc()), os.urandom(32))
    flow.lsp.hold.on_message(d, int(time.time()))
    [answer] = answers
    assert answer["result"] == "continue"
    assert HOLD_REQUEST not in HopPayload.decode(bytes.fromhex(answer["payload"])).unknown
    assert flow.lsp.hold.core.records.get("1x2x3/4").state == "forwarded"


# -- regressions (review of the holding LSP) ----------------------------------


def hook_params(flow, n: int = 4, cltv_expiry: int = HEIGHT + 540, outgoing: int = HEIGHT + 500,
                **req) -> dict:
    """An htlc_accepted call at the LSP for an HTLC from the payer that asks for a hold."""
    request = HoldRequest(held_htlc_available_paths=[held_path()], **req)
    payload = HopPayload(amt_to_forward=10_000, outgoing_cltv_value=outgoing, short_channel_id=7,
                         unknown={HOLD_REQUEST: request.encode()}).encode()
    return {"onion": {"payload": (bigsize(len(payload)) + payload).hex(), "outgoing_cltv_value": outgoing},
            "htlc": {"short_channel_id": "1x2x3", "id": n, "amount_msat": 10_100, "cltv_expiry": cltv_expiry,
                     "cltv_expiry_relative": cltv_expiry - HEIGHT, "payment_hash": os.urandom(32).hex()},
            "peer_id": flow.pnode.id}


def release_of(key: str) -> Delivered:
    return Delivered(RELEASE, key, None, OnionMessagePayload(release_held_htlc=ReleaseHeldHtlc()), os.urandom(32))


FAIL = {"result": "fail", "failure_message": "2002"}


def test_a_late_release_fails_the_waiting_htlc_back(tmp_path):
    """Item 4: a release past the margin used to mark the row failed and
    leave the open call unanswered (a force-close at the CLTV)."""
    flow = Flow(tmp_path)
    answers: list[dict] = []
    assert flow.lsp.hold.on_htlc(hook_params(flow), answers.append) and answers == []
    flow.lsp.saw_height(HEIGHT + 470)  # blocks came (seen on another HTLC), no block_added yet
    flow.lsp.hold.on_message(release_of("1x2x3/4"), int(time.time()))
    assert answers == [FAIL]
    row = flow.lsp.hold.core.records.get("1x2x3/4")
    assert (row.state, row.reason) == ("failed", "cltv_budget")
    with pytest.raises(Dropped, match="release_too_late"):
        flow.lsp.hold.on_message(release_of("1x2x3/4"), int(time.time()))
    assert answers == [FAIL]


def test_every_failed_transition_carries_its_answer(holder):
    """Item 4, by design: each way to FAILED returns the FailBack for that HTLC."""
    a, b, c, d = htlc(1), htlc(2, hold_until=NOW + 100), htlc(3, peer="03" + "bb" * 32), htlc(4, peer="03" + "cc" * 32)
    for h in (a, b, c):
        assert isinstance(holder.accept(h, HEIGHT, NOW), Hold)
    assert holder.tick(HEIGHT, NOW + 100).answers == [FailBack(b.key, "hold_until")]
    assert holder.fail(c.payment_hash, NOW + 101).answers == [FailBack(c.key, "failed_by_operator")]
    assert holder.abort(a.key, NOW + 102).answers == [FailBack(a.key, "internal_error")]
    holder.config.hold_max_total = 10
    assert isinstance(holder.accept(d, HEIGHT, NOW), Hold)
    assert holder.tick(d.outgoing_cltv - 35, NOW + 103).answers == [FailBack(d.key, "cltv_budget")]
    assert {r.key for r in holder.records.by_state("failed")} == {a.key, b.key, c.key, d.key}


def test_a_sender_that_leaves_us_less_than_our_delta_is_refused(holder):
    """Item 5: the onion's outgoing CLTV is the sender's word; one above
    cltv_expiry - cltv-delta is what lightningd fails, and held it would
    outlive the incoming HTLC."""
    assert holder.accept(htlc(1, delta=33), HEIGHT, NOW) == Refuse("cltv_delta")
    assert holder.accept(htlc(2, delta=-100), HEIGHT, NOW) == Refuse("cltv_delta")  # outgoing past the incoming
    assert isinstance(holder.accept(htlc(3, delta=34), HEIGHT, NOW), Hold)
    assert holder.store.counters()["hold_refused_cltv_delta"] == 2


def test_an_htlc_whose_incoming_expiry_is_near_is_not_held(holder):
    assert holder.accept(htlc(1, outgoing_cltv=HEIGHT + 35, delta=34), HEIGHT, NOW) == Refuse("cltv_budget")
    assert holder.records.get(htlc(1).key) is None


def test_the_incoming_expiry_bounds_the_hold_every_block(holder):
    """Item 5: the budget is min(cltv_expiry - cltv-delta, outgoing CLTV),
    checked each block (here a larger cltv-delta after a restart)."""
    h = htlc(1, delta=40)
    holder.accept(h, HEIGHT, NOW)
    again = Holder(holder.store, holder.endpoint, holder.config, lambda i: i.node_id, cltv_delta=510)
    assert again.budget(h.cltv_expiry, h.outgoing_cltv) == h.cltv_expiry - 510 < h.outgoing_cltv
    assert again.tick(HEIGHT, NOW).answers == [FailBack(h.key, "cltv_budget")]  # 30 blocks of budget left


def test_the_adapter_reads_lightningds_cltv_delta(tmp_path):
    flow = Flow(tmp_path)
    assert flow.lsp.hold.core.cltv_delta == flow.lnode.policy.cltv_expiry_delta == 40
    answers: list[dict] = []
    flow.lsp.hold.on_htlc(hook_params(flow, cltv_expiry=HEIGHT + 539), answers.append)
    assert answers == [FAIL]
    assert flow.lsp.store.counters()["hold_refused_cltv_delta"] == 1


def test_hold_until_fails_the_htlc_back_on_the_timer(tmp_path):
    """Item 7: the sender's hold_until ends the hold, in seconds, not after
    hold-max-seconds or the next block."""
    flow = Flow(tmp_path)
    now = int(time.time())
    answers: list[dict] = []
    flow.lsp.hold.on_htlc(hook_params(flow, hold_until=now + 100), answers.append)
    flow.lsp.hold.tick(now + 99)
    assert answers == []
    flow.lsp.hold.tick(now + 100)
    assert answers == [FAIL]
    row = flow.lsp.hold.core.records.get("1x2x3/4")
    assert (row.state, row.reason, row.deadline) == ("failed", "hold_until", now + 100)


def test_the_adapter_timer_runs_the_checks(tmp_path, monkeypatch):
    flow = Flow(tmp_path)
    ticks: list[int] = []
    waits = iter([False, True])
    monkeypatch.setattr(flow.lsp.hold._stop, "wait", lambda seconds: next(waits))
    monkeypatch.setattr(flow.lsp.hold, "tick", ticks.append)
    flow.lsp.hold._timer()
    assert len(ticks) == 1


def test_only_clients_get_a_hold(holder):
    """A routing peer (one with an announced channel to us) must not fill
    hold-max-total and jam our channels at no fee."""
    assert holder.accept(htlc(1, private=(True, False)), HEIGHT, NOW) == Refuse("not_client")
    assert holder.accept(htlc(2, private=()), HEIGHT, NOW) == Refuse("not_client")
    assert holder.store.counters()["hold_refused_not_client"] == 2
    holder.config.hold_clients = "channel"
    assert isinstance(holder.accept(htlc(3, private=(False,)), HEIGHT, NOW), Hold)
    listed = "03" + "ee" * 32
    holder.config.hold_clients = f"{listed}, 03{'ff' * 32}"
    assert isinstance(holder.accept(htlc(4, peer=listed, private=(False,)), HEIGHT, NOW), Hold)
    assert holder.accept(htlc(5, private=(True,)), HEIGHT, NOW) == Refuse("not_client")


def test_hold_clients_is_checked():
    with pytest.raises(ValueError, match="asyncpay-hold-clients"):
        HoldConfig(hold_clients="everyone").validate()
    with pytest.raises(ValueError, match="asyncpay-hold-clients"):
        HoldConfig(hold_clients=",").validate()
    HoldConfig(hold_clients="02" + "11" * 32).validate()


def test_a_peer_with_a_public_channel_gets_no_hold_through_the_adapter(tmp_path, monkeypatch):
    flow = Flow(tmp_path)
    real = flow.lsp.rpc.call

    def public(method, params=None):
        out = real(method, params)
        if method == "listpeerchannels":
            out["channels"] = [{**c, "private": False} for c in out["channels"]]
        return out

    monkeypatch.setattr(flow.lsp.rpc, "call", public)
    answers: list[dict] = []
    flow.lsp.hold.on_htlc(hook_params(flow), answers.append)
    assert answers == [FAIL] and flow.lsp.store.counters()["hold_refused_not_client"] == 1


def test_held_htlc_available_goes_again_with_backoff_until_the_bound(holder):
    """One lost held_htlc_available must not lock the sender's funds until
    the margin: sent again at 60 s, then doubling, capped, bounded."""
    holder.config.hold_resend_first, holder.config.hold_resend_max_interval = 60, 200
    holder.config.hold_resend_attempts = 4
    h = htlc()
    holder.accept(h, HEIGHT, NOW)
    sent_at = [t for t in range(NOW, NOW + 2000, 10) if holder.tick(HEIGHT, t).sends]
    assert sent_at == [NOW + 60, NOW + 180, NOW + 380]  # waits 60, 120, then capped at 200; 4 sends in all
    assert holder.records.get(h.key).sends == 4
    assert holder.store.counters()["hold_resent"] == 3


def test_a_replayed_hold_sends_held_htlc_available_again(holder):
    h = htlc()
    holder.accept(h, HEIGHT, NOW)
    again = Holder(holder.store, holder.endpoint, holder.config, lambda i: i.node_id)  # restarted
    verdict = again.accept(h, HEIGHT + 1, NOW + 5)
    assert isinstance(verdict, Hold) and [a.purpose for a in verdict.actions] == ["held_htlc_available"]


def test_a_replayed_hold_past_its_budget_is_failed_not_held(holder):
    h = htlc()
    holder.accept(h, HEIGHT, NOW)
    again = Holder(holder.store, holder.endpoint, holder.config, lambda i: i.node_id)
    assert again.accept(h, h.outgoing_cltv - 30, NOW + 5) == Refuse("cltv_budget")
    assert again.records.get(h.key).state == "failed"


def test_a_released_replay_past_its_budget_is_failed_not_forwarded(holder):
    h = htlc()
    holder.accept(h, HEIGHT, NOW)
    holder.release(release_for(holder, h.key), HEIGHT, NOW)  # released while lightningd was restarting
    again = Holder(holder.store, holder.endpoint, holder.config, lambda i: i.node_id)
    assert again.accept(h, h.outgoing_cltv - 30, NOW + 5) == Refuse("cltv_budget")


def test_an_exception_after_the_hold_fails_the_htlc_and_its_row(tmp_path, monkeypatch):
    """Answering ``continue`` after a hold was registered would forward the
    HTLC without its release while its row stays held."""
    flow = Flow(tmp_path)

    def broken(actions):
        raise RuntimeError("injectonionmessage exploded")

    monkeypatch.setattr(flow.lsp, "perform", broken)
    answers: list[dict] = []
    flow.lsp.on_htlc_accepted(hook_params(flow), answers.append)
    assert answers == [FAIL]
    row = flow.lsp.hold.core.records.get("1x2x3/4")
    assert (row.state, row.reason) == ("failed", "internal_error")
    with pytest.raises(Dropped, match="release_too_late"):
        flow.lsp.hold.on_message(release_of("1x2x3/4"), int(time.time()))
    assert answers == [FAIL]
    assert any("RuntimeError" in line for line in flow.lsp.logs)


def test_an_exception_before_the_hold_is_recorded_fails_the_htlc(tmp_path, monkeypatch):
    flow = Flow(tmp_path)

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(flow.lsp.hold.core, "accept", broken)
    answers: list[dict] = []
    flow.lsp.on_htlc_accepted(hook_params(flow), answers.append)
    assert answers == [FAIL] and flow.lsp.hold.core.records.get("1x2x3/4") is None


def test_an_exception_in_any_role_fails_the_htlc_never_continues(tmp_path, monkeypatch):
    flow = Flow(tmp_path)

    def broken(params, respond):
        raise KeyError("amount_msat")

    monkeypatch.setattr(flow.lsp.recipient, "on_htlc", broken)
    answers: list[dict] = []
    flow.lsp.on_htlc_accepted({"onion": {"payload": "00"}, "htlc": {}}, answers.append)
    assert answers == [FAIL]


def test_one_verdict_per_call_whatever_a_role_does(tmp_path, monkeypatch):
    flow = Flow(tmp_path)

    def twice(params, respond):
        respond({"result": "continue"})
        respond(FAIL)
        raise RuntimeError("and then it broke")

    monkeypatch.setattr(flow.lsp.recipient, "on_htlc", twice)
    answers: list[dict] = []
    flow.lsp.on_htlc_accepted({"onion": {"payload": "00"}, "htlc": {}}, answers.append)
    assert answers == [{"result": "continue"}]


def test_only_an_htlc_no_role_recognised_continues(tmp_path):
    flow = Flow(tmp_path)
    answers: list[dict] = []
    flow.lsp.on_htlc_accepted({"onion": {"payload": "00", "short_channel_id": "1x1x1"}, "htlc": {}},
                              answers.append)
    assert answers == [{"result": "continue"}]


class _Request:
    def __init__(self) -> None:
        self.results: list[dict] = []

    def set_result(self, result: dict) -> None:
        if self.results:
            raise ValueError("Cannot set the result of a request that is not pending")
        self.results.append(result)


def test_the_plugin_hook_fails_rather_than_continues(monkeypatch, tmp_path):
    from asyncpay.cln import plugin as p

    monkeypatch.setattr(p.plugin, "log", lambda *a, **k: None)
    flow = Flow(tmp_path)
    params = hook_params(flow)
    monkeypatch.setattr(p, "node", None)  # before init: a hold request cannot be served
    req = _Request()
    p.on_htlc_accepted(p.plugin, params["onion"], params["htlc"], req, peer_id=params["peer_id"])
    assert req.results == [FAIL]
    req = _Request()
    p.on_htlc_accepted(p.plugin, {"payload": "00"}, {}, req)
    assert req.results == [{"result": "continue"}]

    class Broken:
        def on_htlc_accepted(self, params, respond):
            raise RuntimeError("router broke")

    monkeypatch.setattr(p, "node", Broken())
    req = _Request()
    p.on_htlc_accepted(p.plugin, params["onion"], params["htlc"], req)
    assert req.results == [FAIL]


def test_every_hold_option_is_registered_documented_and_checked():
    from dataclasses import fields
    from pathlib import Path

    from asyncpay.cln import options as opts
    from asyncpay.cln import plugin as p

    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    for f in fields(HoldConfig):
        name = opts.option_name(f.name)
        assert name in p.plugin.options and f"| `{name}` |" in doc, name
        assert p.plugin.options[name].description.endswith("."), name
    [hold] = [c for c in opts.load({"asyncpay-hold-clients": "channel", "asyncpay-hold-check-seconds": "5"})
              if isinstance(c, HoldConfig)]
    assert (hold.hold_clients, hold.hold_check_seconds) == ("channel", 5)
    with pytest.raises(ValueError, match="asyncpay-hold-clients"):
        opts.load({"asyncpay-hold-clients": "everybody"})
    with pytest.raises(ValueError, match="asyncpay-hold-resend-max-interval"):
        opts.load({"asyncpay-hold-resend-first": 600, "asyncpay-hold-resend-max-interval": 60})
