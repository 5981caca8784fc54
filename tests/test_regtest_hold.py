"""Regtest, the whole four-node async payment (issue 8):

    S (asyncpay wallet) -- Ls (asyncpay) -- Lr (asyncpay) -- R (asyncpay wallet)

S-Ls and Lr-R are unannounced, Ls-Lr is public. S pays R's offer while R
sleeps; Ls holds S's HTLC (S may sleep too) until R wakes and releases it."""

from __future__ import annotations

import hashlib

from regtest import ASYNCPAY, require_binaries, wait_for

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from test_regtest_recipient import connect_to_server, ready_offer  # noqa: E402


def four_nodes(node_factory, s_opts=None, ls_opts=None):
    base = {"plugin": ASYNCPAY}
    ls = node_factory.get_node(options={**base, **(ls_opts or {})}, may_reconnect=True)
    lr, r = node_factory.get_nodes(2, opts=[{**base, "may_reconnect": True}, {**base, "may_reconnect": True}])
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
                    == "complete" and x, what="complete at S", timeout=90)
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
    wait_for(lambda: r.rpc.call("asyncpay-listreceived")["payments"], what="R claimed", timeout=60)
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


def test_recipient_never_returns_and_lsp_fails_back_at_its_margin(node_factory, bitcoind):
    s, ls, lr, r = four_nodes(node_factory, s_opts={"asyncpay-payer-hold-blocks": 40},
                              ls_opts={"asyncpay-hold-min-blocks": 20})
    pay = start_held_payment(s, ls, lr, r)
    [held] = ls.rpc.call("asyncpay-listheld")["held"]
    for _ in range(12):  # mine towards the margin, in steps lightningd can follow
        bitcoind.generate_block(10)
        if ls.rpc.call("asyncpay-listheld")["held"][0]["state"] == "failed":
            break
        sync = [s, ls, lr]
        wait_for(lambda sync=sync: all(n.rpc.getinfo()["blockheight"] == bitcoind.rpc.getblockcount()
                                       for n in sync), what="synced")
    [failed] = wait_for(lambda: [h for h in ls.rpc.call("asyncpay-listheld")["held"] if h["state"] == "failed"],
                        what="failed back")
    assert failed["reason"] == "cltv_budget" and failed["cltv_expiry"] == held["cltv_expiry"]
    res = wait_for(lambda: (x := s.rpc.call("asyncpay-listpays", {"id": pay["id"]})["pays"][0])["status"]
                   == "failed" and x, what="failed at S", timeout=60)
    assert res["reason"]
    for n in (s, ls, lr):
        assert {c["state"] for c in n.rpc.listpeerchannels()["channels"]} == {"CHANNELD_NORMAL"}
