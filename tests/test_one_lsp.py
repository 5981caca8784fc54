"""One LSP serving both wallets (issue 22): S -- L -- R on the emulated CLN,
L the sender's holding LSP and the recipient's static invoice server, so
L's hop of S's payment is the introduction node of R's blinded path."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from asyncpay.blinded_path import BlindedPayInfo, BlindedPaymentPath, EncryptedData, PaymentRelay
from asyncpay.crypto import pubkey_of
from asyncpay.onion_message import build_path
from asyncpay.payment import peel_payment_onion
from asyncpay.payment.blinded_forward import BlindedForwardError, blinded_forward
from asyncpay.payment.hold_request import HOLD_REQUEST
from asyncpay.payment.route import RouteHop, blinded_payment_onion, to_introduction
from test_payer_flow import attach_payer, wait
from test_recipient_flow import Flow


@pytest.fixture
def one_lsp(tmp_path):
    flow = Flow(tmp_path)
    flow.setserver()
    payer = attach_payer(flow, tmp_path, payer_invoice_grace=1, payer_lsp=flow.lnode.id)
    flow.pnode.inject_wait = 30  # injectpaymentonion blocks while L holds the HTLC, as lightningd's does
    return flow, payer


def test_the_lsp_of_both_wallets_holds_then_forwards_over_the_recipients_path(one_lsp):
    flow, payer = one_lsp
    offer = flow.offer(description="coffee").to_string()
    flow.net.disconnect(flow.lnode, flow.rnode)  # R sleeps
    res = payer.payer.pay(offer, 30_000, None, 0)
    payer.payer.tick(int(time.time()) + 2)  # the grace is over: the HTLC goes to L with the hold request
    wait(lambda: payer.payer.core.records.get(res["id"]).state == "held_at_lsp")
    [row] = flow.lsp.hold.core.records.by_state("held")
    assert row.payment_hash.hex() == payer.payer.core.records.get(res["id"]).payment_hash.hex()
    [call] = flow.lnode.forward_hook_calls
    assert "short_channel_id" not in call["onion"]  # lightningd could not parse L's hop: the hold request
    wait(lambda: flow.lsp.store.mailbox_totals(flow.rnode.id)[0] >= 1)  # held_htlc_available waits for R
    flow.net.connect(flow.lnode, flow.rnode)  # R wakes, releases; L forwards over R's blinded path
    flow.lsp.lsp.wait_flushes()
    wait(lambda: payer.payer.core.records.get(res["id"]).state == "complete")
    done = payer.payer.core.records.get(res["id"]).view()
    assert hashlib.sha256(bytes.fromhex(done["payment_preimage"])).hexdigest() == done["payment_hash"]
    [got] = flow.r.recipient.core.records.payments()
    assert got["payment_hash"] == done["payment_hash"]
    assert flow.lsp.hold.core.records.get(row.key).state == "forwarded"


def test_without_the_lsps_forward_fields_the_release_goes_nowhere(one_lsp, monkeypatch):
    """What lightningd does with a bare ``continue`` of a hop it could not
    parse: no channel to forward to, so the HTLC fails; the continue must
    carry ``forward_to`` and the next path key."""
    flow, payer = one_lsp
    monkeypatch.setattr("asyncpay.payment.blinded_forward.BlindedForward.hook_fields", lambda self, cid: {})
    offer = flow.offer(description="coffee").to_string()
    flow.net.disconnect(flow.lnode, flow.rnode)
    res = payer.payer.pay(offer, 30_000, None, 0)
    payer.payer.tick(int(time.time()) + 2)
    wait(lambda: payer.payer.core.records.get(res["id"]).state == "held_at_lsp")
    flow.net.connect(flow.lnode, flow.rnode)
    flow.lsp.lsp.wait_flushes()
    wait(lambda: payer.payer.core.records.get(res["id"]).state == "failed")
    assert "unknown_next_peer" in payer.payer.core.records.get(res["id"]).reason


# -- the sender's side: the hold request reaches the LSP's own hop, or nothing is sent


def _path(intro_secret: bytes, final_secret: bytes) -> BlindedPaymentPath:
    path = build_path(os.urandom(32), [
        (pubkey_of(intro_secret), EncryptedData(short_channel_id=7, payment_relay=PaymentRelay(40, 100, 1000))),
        (pubkey_of(final_secret), EncryptedData(path_id=os.urandom(32))),
    ])
    return BlindedPaymentPath(path, BlindedPayInfo(1000, 100, 40, 1, 10**9, b""))


def test_the_hold_request_goes_in_the_introduction_hop_when_the_lsp_is_it():
    us, lsp, rec = os.urandom(32), os.urandom(32), os.urandom(32)
    path = _path(lsp, rec)
    amount, cltv = to_introduction(path, 10_000, 800_100)
    route = [RouteHop(1, pubkey_of(lsp), amount, cltv)]
    built = blinded_payment_onion(os.urandom(32), pubkey_of(us), route, path, 10_000, 800_100, b"\x11" * 32,
                                  extra={pubkey_of(lsp): {HOLD_REQUEST: b"\x01\x00"}})
    _, mine = peel_payment_onion(us, built.onion, b"\x11" * 32)
    theirs, _ = peel_payment_onion(lsp, mine.next_packet, b"\x11" * 32)
    assert theirs.current_path_key is not None and theirs.unknown == {HOLD_REQUEST: b"\x01\x00"}


def test_a_record_for_a_node_the_onion_reaches_only_blinded_is_refused_not_lost():
    """The bug of issue 22: the record was silently dropped, and the payer
    said ``held`` while nothing held the HTLC."""
    us, lsp, intro, rec = (os.urandom(32) for _ in range(4))
    path = _path(intro, rec)
    amount, cltv = to_introduction(path, 10_000, 800_100)
    route = [RouteHop(1, pubkey_of(intro), amount, cltv)]
    with pytest.raises(ValueError, match="records would be lost"):
        blinded_payment_onion(os.urandom(32), pubkey_of(us), route, path, 10_000, 800_100, b"\x11" * 32,
                              extra={pubkey_of(lsp): {HOLD_REQUEST: b"\x01\x00"}})


def test_blinded_forward_follows_lightningds_formula():
    data = EncryptedData(short_channel_id=9, payment_relay=PaymentRelay(40, 100, 1000))
    fwd = blinded_forward(data, b"\x02" * 33, 11_001, 800_200)
    assert (fwd.amount_msat, fwd.outgoing_cltv, fwd.short_channel_id) == (10_000, 800_160, 9)
    assert fwd.hook_fields("ab" * 32)["extra_tlvs"] == "0021" + "02" * 33
    with pytest.raises(BlindedForwardError, match="no channel"):
        blinded_forward(EncryptedData(path_id=b"\x00" * 32), b"\x02" * 33, 11_002, 800_200)


def test_held_is_reported_on_the_lsps_word_not_on_the_lock_in(one_lsp, monkeypatch):
    """The HTLC is locked in and held at L, but L's confirmation is lost:
    the payment stays ``paying`` (never ``held``) until it completes."""
    flow, payer = one_lsp
    monkeypatch.setattr(flow.lsp.hold, "_confirm", lambda peer, payment_hash: None)
    offer = flow.offer(description="coffee").to_string()
    flow.net.disconnect(flow.lnode, flow.rnode)
    res = payer.payer.pay(offer, 30_000, None, 0)
    payer.payer.tick(int(time.time()) + 2)
    wait(lambda: flow.lsp.hold.core.records.by_state("held"))
    assert flow.pnode.rpc.call("listpeerchannels")["channels"][0]["htlcs"]  # locked in on our channel
    assert payer.payer.core.records.get(res["id"]).state == "paying"
    flow.net.connect(flow.lnode, flow.rnode)
    flow.lsp.lsp.wait_flushes()
    wait(lambda: payer.payer.core.records.get(res["id"]).state == "complete")


def test_a_refused_hold_is_never_reported_held(one_lsp, monkeypatch):
    flow, payer = one_lsp
    flow.lsp.hold.core.config.hold_min_blocks = 10_000  # L refuses every hold (cltv_budget)
    said_held = []
    monkeypatch.setattr(payer.payer.core, "held", lambda *a: said_held.append(a))
    offer = flow.offer(description="coffee").to_string()
    flow.net.disconnect(flow.lnode, flow.rnode)
    res = payer.payer.pay(offer, 30_000, None, 0)
    payer.payer.tick(int(time.time()) + 2)
    wait(lambda: payer.payer.core.records.get(res["id"]).state == "failed")
    assert said_held == [] and flow.lsp.store.counters().get("hold_refused_cltv_budget") == 1


def test_a_hold_confirmation_from_another_peer_is_ignored(one_lsp):
    flow, payer = one_lsp
    from asyncpay.payment.hold_request import hold_confirmed
    offer = flow.offer(description="coffee").to_string()
    flow.net.disconnect(flow.lnode, flow.rnode)
    res = payer.payer.pay(offer, 30_000, None, 0)
    row = payer.payer.core.records.get(res["id"])
    payer.payer.on_custommsg(flow.rnode.id, hold_confirmed(os.urandom(32)).hex())
    payer.payer.on_custommsg("02" + "ab" * 32, hold_confirmed(row.payment_hash or b"\x00" * 32).hex())
    assert payer.payer.core.records.get(res["id"]).state != "held_at_lsp"
