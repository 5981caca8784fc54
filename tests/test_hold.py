"""The hold state machine without a daemon (issue 8): every HTLC gets a clear
verdict, and none is left without one past its margin."""

from __future__ import annotations

import os

import pytest

from asyncpay.blinded_path import EncryptedData, IntroductionNode
from asyncpay.crypto import CryptoError, pubkey_of
from asyncpay.endpoint import Delivered, Dropped, Endpoint
from asyncpay.hold import Forward, Hold, HoldConfig, Holder, HtlcToHold, Refuse
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


def htlc(n: int = 0, peer: str = "02" + "aa" * 32, outgoing_cltv: int = HEIGHT + 500, **req) -> HtlcToHold:
    payload = HopPayload(amt_to_forward=10_000, outgoing_cltv_value=outgoing_cltv, short_channel_id=7)
    return HtlcToHold(f"1x1x1/{n}", os.urandom(32), 10_100, outgoing_cltv + 40, outgoing_cltv, peer,
                      payload.encode(), HoldRequest(held_htlc_available_paths=[held_path()], **req))


def release_for(holder: Holder, key: str) -> Delivered:
    return Delivered(RELEASE, key, None, OnionMessagePayload(release_held_htlc=ReleaseHeldHtlc()), os.urandom(32))


def test_hold_then_release_then_forward(holder):
    h = htlc()
    verdict = holder.accept(h, HEIGHT, NOW)
    assert isinstance(verdict, Hold)
    [msg] = verdict.actions
    assert msg.purpose == "held_htlc_available" and msg.first_hop == pubkey_of(RECIPIENT_LSP)
    row = holder.release(release_for(holder, h.key), HEIGHT + 10, NOW + 60)
    assert row.state == "released" and row.payload == h.payload
    holder.forwarded(h.key, NOW + 61)
    assert holder.records.get(h.key).state == "forwarded"


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
    failed = holder.expire(h.outgoing_cltv - blocks_left, NOW)
    assert (failed == []) is held
    assert holder.records.get(h.key).state == ("held" if held else "failed")
    if not held:
        assert failed[0].reason == "cltv_budget"
        with pytest.raises(Dropped, match="release_too_late"):
            holder.release(release_for(holder, h.key), h.outgoing_cltv - blocks_left, NOW)


def test_no_budget_no_hold(holder):
    h = htlc(outgoing_cltv=HEIGHT + 35)
    assert holder.accept(h, HEIGHT, NOW) == Refuse("cltv_budget")
    assert holder.records.get(h.key) is None


def test_release_with_the_budget_spent_is_not_forwarded(holder):
    h = htlc()
    holder.accept(h, HEIGHT, NOW)
    with pytest.raises(Dropped, match="release_too_late"):
        holder.release(release_for(holder, h.key), h.outgoing_cltv - 10, NOW)  # blocks came, no block_added yet
    assert holder.records.get(h.key).state == "failed"


def test_held_too_long(holder):
    h = htlc()
    holder.accept(h, HEIGHT, NOW)
    [row] = holder.expire(HEIGHT, NOW + 3600)
    assert row.reason == "held_too_long"


def test_replay_after_restart_answers_from_the_store(holder, tmp_path):
    h, r, f = htlc(1), htlc(2), htlc(3, peer="03" + "bb" * 32)
    for x in (h, r, f):
        holder.accept(x, HEIGHT, NOW)
    holder.release(release_for(holder, r.key), HEIGHT, NOW)
    holder.fail(f.payment_hash, NOW)
    # A new Holder over the same file: lightningd restarted and replays its HTLCs.
    again = Holder(holder.store, holder.endpoint, holder.config, lambda i: i.node_id)
    assert again.accept(h, HEIGHT + 1, NOW + 5) == Hold([])
    assert again.accept(r, HEIGHT + 1, NOW + 5) == Forward(r.payload)
    assert again.accept(f, HEIGHT + 1, NOW + 5) == Refuse("failed_by_operator")
    assert holder.store.counters()["hold_replayed"] == 3
    # A release after the restart still works for the one still held.
    assert again.release(release_for(again, h.key), HEIGHT + 1, NOW + 6).state == "released"


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
                         (pubkey_of(RECIPIENT), EncryptedData(path_id=os.urandom(32)))])]))
    # An introduction node named by an scid we cannot resolve.
    p = bad.request.held_htlc_available_paths[0]
    bad.request.held_htlc_available_paths[0] = type(p)(IntroductionNode(scid=5, direction=0), p.first_path_key,
                                                       p.hops)
    verdict = unresolvable.accept(bad, HEIGHT, NOW)
    assert isinstance(verdict, Refuse) and "no usable" in verdict.reason


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
    flow.lsp.hold.on_message(d, NOW)
    [answer] = answers
    assert answer["result"] == "continue"
    assert HOLD_REQUEST not in HopPayload.decode(bytes.fromhex(answer["payload"])).unknown
    assert flow.lsp.hold.core.records.get("1x2x3/4").state == "forwarded"
