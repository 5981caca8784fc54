"""Regtest, one LSP serving both wallets (issue 22):

    S (asyncpay wallet) -- L (asyncpay) -- R (asyncpay wallet)

both channels unannounced; L is S's holding LSP and R's static invoice
server, so L's hop of S's payment is the introduction node of R's blinded
payment path. S pays R's offer while R sleeps, S sleeps, R wakes and
releases, L forwards, S wakes to a complete payment."""

from __future__ import annotations

from regtest import ASYNCPAY, require_binaries, wait_for

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from test_regtest_hold import assert_channels_normal, assert_complete, failed_at_sender  # noqa: E402
from test_regtest_recipient import connect_to_server, ready_offer  # noqa: E402


def one_lsp(node_factory, s_opts=None, l_opts=None):
    base = {"plugin": ASYNCPAY}
    lsp = node_factory.get_node(options={**base, **(l_opts or {})}, may_reconnect=True)
    r = node_factory.get_node(options=base, may_reconnect=True)
    s = node_factory.get_node(options={**base, "asyncpay-payer-lsp": lsp.info["id"], **(s_opts or {})},
                              may_reconnect=True)
    for funder in (lsp, s):
        funder.fundwallet(3_000_000)
    node_factory.join_nodes([s, lsp], announce_channels=False)
    node_factory.join_nodes([lsp, r], announce_channels=False)
    wait_for(lambda: any((c.get("updates") or {}).get("remote")
                         for c in r.rpc.listpeerchannels(lsp.info["id"])["channels"]), what="L's update at R")
    connect_to_server(lsp, r)
    return s, lsp, r


def test_one_lsp_holds_for_the_sender_and_serves_the_recipient(node_factory):
    s, lsp, r = one_lsp(node_factory)
    offer = ready_offer(r, description="one lsp")["bolt12"]
    r.stop()  # 1. R sleeps
    pay = s.rpc.call("asyncpay-pay", {"offer": offer, "amount_msat": 40_000, "timeout": 60})
    assert pay["status"] == "held" and pay["kind"] == "static", pay  # 2. L holds it
    [held] = lsp.rpc.call("asyncpay-listheld")["held"]
    assert held["state"] == "held" and held["payment_hash"] == pay["payment_hash"]
    wait_for(lambda: lsp.rpc.call("asyncpay-listmailbox")["messages"] >= 1, what="held_htlc_available at L")
    s.stop()  # 3. S sleeps too
    r.start()  # 4. R wakes, gets held_htlc_available from L's mailbox, releases; L forwards
    r.rpc.connect(lsp.info["id"], "localhost", lsp.port)
    wait_for(lambda: r.rpc.call("asyncpay-listreceived")["payments"], what="R claimed")
    wait_for(lambda: lsp.rpc.call("asyncpay-listheld")["held"][0]["state"] == "forwarded", what="forwarded")
    s.start()  # 5. S wakes: complete, with the preimage
    assert_complete(s, r, pay)
    wait_for(lambda: not any(c.get("htlcs") for n in (s, lsp, r) for c in n.rpc.listpeerchannels()["channels"]),
             what="no HTLC left")
    assert_channels_normal(s, lsp, r)


def test_an_lsp_that_refuses_the_hold_fails_the_payment_at_the_sender(node_factory):
    """S leaves L less hold budget than L's margin: L reads the request in
    its blinded hop, refuses it and fails the HTLC back at once."""
    s, lsp, r = one_lsp(node_factory, s_opts={"asyncpay-payer-hold-blocks": 10},
                        l_opts={"asyncpay-hold-min-blocks": 500})
    offer = ready_offer(r, description="refused")["bolt12"]
    r.stop()
    pay = s.rpc.call("asyncpay-pay", {"offer": offer, "amount_msat": 40_000, "timeout": 60})
    assert failed_at_sender(s, pay)["reason"]
    assert lsp.rpc.call("asyncpay-listheld")["held"] == []
    assert lsp.rpc.call("asyncpay-status")["hold"]["refused"].get("cltv_budget", 0) >= 1
    assert_channels_normal(s, lsp)


def test_the_lsp_of_both_restarts_while_holding_and_still_forwards(node_factory):
    """lightningd replays the held HTLC after L restarts; L's hop is still
    the blinded introduction (no path key is stored for it, it is in the
    payload), so the hold comes back and the release forwards it."""
    s, lsp, r = one_lsp(node_factory)
    offer = ready_offer(r, description="restart")["bolt12"]
    r.stop()
    pay = s.rpc.call("asyncpay-pay", {"offer": offer, "amount_msat": 40_000, "timeout": 60})
    assert pay["status"] == "held", pay
    lsp.restart()
    wait_for(lambda: lsp.rpc.call("asyncpay-listheld")["held"][0]["state"] == "held", what="held again")
    s.rpc.connect(lsp.info["id"], "localhost", lsp.port)
    r.start()
    r.rpc.connect(lsp.info["id"], "localhost", lsp.port)
    assert_complete(s, r, pay)
    wait_for(lambda: not any(c.get("htlcs") for n in (s, lsp, r) for c in n.rpc.listpeerchannels()["channels"]),
             what="no HTLC left")
    assert_channels_normal(s, lsp, r)
