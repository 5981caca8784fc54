"""Regtest, the whole four-node async payment (issue 8):

    S (asyncpay wallet) -- Ls (asyncpay) -- Lr (asyncpay) -- R (asyncpay wallet)

S-Ls and Lr-R are unannounced, Ls-Lr is public. S pays R's offer while R
sleeps; Ls holds S's HTLC (S may sleep too) until R wakes and releases it."""

from __future__ import annotations

import hashlib

from regtest import ASYNCPAY, require_binaries, wait_for

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403
from pyln.testing.utils import sync_blockheight  # noqa: E402

from test_regtest_recipient import connect_to_server, ready_offer  # noqa: E402


def four_nodes(node_factory, s_opts=None, ls_opts=None, r_opts=None, plugin=ASYNCPAY, lr_opts=None):
    base = {"plugin": plugin}
    ls = node_factory.get_node(options={**base, **(ls_opts or {})}, may_reconnect=True)
    lr, r = node_factory.get_nodes(2, opts=[{**base, **(lr_opts or {}), "may_reconnect": True},
                                            {**base, **(r_opts or {}), "may_reconnect": True}])
    s = node_factory.get_node(options={**base, "asyncpay-payer-lsp": ls.info["id"], **(s_opts or {})},
                              may_reconnect=True)
    for funder in (ls, s, lr):  # funds seen before join_nodes' own deposit (which can lag on a busy machine)
        funder.fundwallet(3_000_000)
    node_factory.join_nodes([ls, lr], wait_for_announce=True)
    node_factory.join_nodes([s, ls], announce_channels=False)
    node_factory.join_nodes([lr, r], announce_channels=False)
    wait_for(lambda: any((c.get("updates") or {}).get("remote")
                         for c in r.rpc.listpeerchannels(lr.info["id"])["channels"]), what="Lr's update at R")
    for n in (s, r):  # routes and replies go over the public channel
        wait_for(lambda n=n: n.rpc.listchannels(source=ls.info["id"])["channels"], what="gossip")
    connect_to_server(lr, r)
    return s, ls, lr, r


def start_held_payment(s, ls, lr, r, amount=40_000):
    offer = ready_offer(r, description="async")["bolt12"]
    r.stop()  # 1. R gets an offer and sleeps
    pay = s.rpc.call("asyncpay-pay", {"offer": offer, "amount_msat": amount, "timeout": 60})
    assert pay["status"] == "held" and pay["kind"] == "static", pay  # 2. Ls holds it
    [held] = ls.rpc.call("asyncpay-listheld")["held"]
    assert held["state"] == "held" and held["payment_hash"] == pay["payment_hash"]
    wait_for(lambda: lr.rpc.call("asyncpay-listmailbox")["messages"] >= 1, what="held_htlc_available at Lr")
    return pay


def assert_complete(s, r, pay):
    done = wait_for(lambda: (x := s.rpc.call("asyncpay-listpays", {"id": pay["id"]})["pays"][0])["status"]
                    == "complete" and x, what="complete at S")
    assert hashlib.sha256(bytes.fromhex(done["payment_preimage"])).hexdigest() == done["payment_hash"]
    got = {x["payment_hash"]: x for x in r.rpc.call("asyncpay-listreceived")["payments"]}
    assert got[done["payment_hash"]]["payment_preimage"] == done["payment_preimage"]


def wake(r, lr):
    r.start()
    r.rpc.connect(lr.info["id"], "localhost", lr.port)


def test_sender_and_recipient_both_asleep(node_factory):
    s, ls, lr, r = four_nodes(node_factory)
    pay = start_held_payment(s, ls, lr, r)
    s.stop()  # 2. S goes to sleep with its HTLC held at Ls
    assert ls.rpc.call("asyncpay-listheld")["held"][0]["state"] == "held"  # 3.
    wake(r, lr)  # 4. R releases, Ls forwards, R claims
    wait_for(lambda: r.rpc.call("asyncpay-listreceived")["payments"], what="R claimed")
    wait_for(lambda: ls.rpc.call("asyncpay-listheld")["held"][0]["state"] == "forwarded", what="forwarded")
    s.start()  # 5. S wakes: complete, with the preimage
    assert_complete(s, r, pay)


def test_lsp_restarts_while_holding(node_factory):
    s, ls, lr, r = four_nodes(node_factory)
    pay = start_held_payment(s, ls, lr, r)
    ls.restart()  # lightningd replays the held HTLC; the hold comes back from the store
    wait_for(lambda: ls.rpc.call("asyncpay-listheld")["held"][0]["state"] == "held", what="held again")
    ls.rpc.connect(lr.info["id"], "localhost", lr.port)
    s.rpc.connect(ls.info["id"], "localhost", ls.port)
    wake(r, lr)
    assert_complete(s, r, pay)


def mine_to_the_margin(bitcoind, s, ls, lr) -> dict:
    """Mine towards the held HTLC's margin, in steps lightningd can follow,
    until Ls fails it back: the failed row."""
    for _ in range(12):
        bitcoind.generate_block(10)
        if ls.rpc.call("asyncpay-listheld")["held"][0]["state"] == "failed":
            break
        sync = [s, ls, lr]
        wait_for(lambda sync=sync: all(n.rpc.getinfo()["blockheight"] == bitcoind.rpc.getblockcount()
                                       for n in sync), what="synced")
    [failed] = wait_for(lambda: [h for h in ls.rpc.call("asyncpay-listheld")["held"] if h["state"] == "failed"],
                        what="failed back")
    return failed


def failed_at_sender(s, pay) -> dict:
    return wait_for(lambda: (x := s.rpc.call("asyncpay-listpays", {"id": pay["id"]})["pays"][0])["status"]
                    == "failed" and x, what="failed at S")


def assert_channels_normal(*nodes) -> None:
    for n in nodes:
        assert {c["state"] for c in n.rpc.listpeerchannels()["channels"]} == {"CHANNELD_NORMAL"}


def test_recipient_never_returns_and_lsp_fails_back_at_its_margin(node_factory, bitcoind):
    s, ls, lr, r = four_nodes(node_factory, s_opts={"asyncpay-payer-hold-blocks": 40},
                              ls_opts={"asyncpay-hold-min-blocks": 20})
    pay = start_held_payment(s, ls, lr, r)
    [held] = ls.rpc.call("asyncpay-listheld")["held"]
    failed = mine_to_the_margin(bitcoind, s, ls, lr)
    assert failed["reason"] == "cltv_budget" and failed["cltv_expiry"] == held["cltv_expiry"]
    assert failed_at_sender(s, pay)["reason"]
    assert_channels_normal(s, ls, lr)


def test_a_release_after_the_margin_is_failed_back_not_forwarded(node_factory, bitcoind):
    """R wakes and releases only after Ls's margin: the HTLC was failed back
    at the margin, the late release forwards nothing, no channel closes."""
    s, ls, lr, r = four_nodes(node_factory, s_opts={"asyncpay-payer-hold-blocks": 40},
                              ls_opts={"asyncpay-hold-min-blocks": 20})
    pay = start_held_payment(s, ls, lr, r)
    assert mine_to_the_margin(bitcoind, s, ls, lr)["reason"] == "cltv_budget"
    failed_at_sender(s, pay)
    wake(r, lr)  # R gets held_htlc_available from Lr's mailbox and releases, too late
    wait_for(lambda: r.rpc.call("asyncpay-status")["sent"].get("release_held_htlc", 0) >= 1, what="R released")
    wait_for(lambda: ls.rpc.call("asyncpay-status")["server"]["dropped"].get("release_too_late", 0) >= 1,
             what="the late release at Ls")
    assert [h["state"] for h in ls.rpc.call("asyncpay-listheld")["held"]] == ["failed"]
    assert r.rpc.call("asyncpay-listreceived")["payments"] == []
    assert s.rpc.call("asyncpay-listpays", {"id": pay["id"]})["pays"][0]["status"] == "failed"
    bitcoind.generate_block(60)  # past the HTLC's incoming CLTV: had it stayed, a channel would close now
    sync_blockheight(bitcoind, [s, ls, lr, r])
    assert_channels_normal(s, ls, lr, r)


def test_an_htlc_whose_expiry_is_near_is_not_held(node_factory):
    """S leaves a hold budget below Ls's margin: Ls fails the HTLC at once
    instead of holding it into its margin."""
    s, ls, lr, r = four_nodes(node_factory, s_opts={"asyncpay-payer-hold-blocks": 10},
                              ls_opts={"asyncpay-hold-min-blocks": 500})
    offer = ready_offer(r, description="async")["bolt12"]
    r.stop()
    pay = s.rpc.call("asyncpay-pay", {"offer": offer, "amount_msat": 40_000, "timeout": 60})
    assert failed_at_sender(s, pay)["reason"]
    assert ls.rpc.call("asyncpay-listheld")["held"] == []
    assert ls.rpc.call("asyncpay-status")["hold"]["refused"].get("cltv_budget", 0) >= 1
    assert_channels_normal(s, ls, lr)
