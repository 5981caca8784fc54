"""Regtest, one async offer and two static invoice servers (issue 22):

    P (asyncpay payer) == L1 (asyncpay) -- R (asyncpay wallet)
                       == L2 (asyncpay) --

P's channels are public, R's unannounced. R's offer is registered at L1
and L2; L1 stops for good; R sleeps; P pays; R wakes reaching L2 only; the
payment completes."""

from __future__ import annotations

from regtest import ASYNCPAY, require_binaries, wait_for

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from asyncpay.offers import StaticInvoice  # noqa: E402
from test_regtest_hold import assert_channels_normal, assert_complete  # noqa: E402
from test_regtest_recipient import ready_offer  # noqa: E402


def redundant(node_factory):
    opts = {"plugin": ASYNCPAY, "may_reconnect": True}
    l1, l2, r, p = node_factory.get_nodes(4, opts=[opts, opts, opts, opts])
    for funder in (p, l1, l2):
        funder.fundwallet(3_000_000)
    node_factory.join_nodes([p, l1], wait_for_announce=True)
    node_factory.join_nodes([p, l2], wait_for_announce=True)
    node_factory.join_nodes([l1, r], announce_channels=False)
    node_factory.join_nodes([l2, r], announce_channels=False)
    for lsp in (l1, l2):
        wait_for(lambda lsp=lsp: any((c.get("updates") or {}).get("remote")
                                     for c in r.rpc.listpeerchannels(lsp.info["id"])["channels"]),
                 what="the LSP's update at R")
    paths = [x["hex"] for lsp in (l1, l2)
             for x in lsp.rpc.call("asyncpay-recipientpaths", {"recipient_id": r.info["id"]})["paths"]]
    out = r.rpc.call("asyncpay-setserver", {"paths": paths})
    assert out == {"paths": len(paths), "servers": [l1.info["id"], l2.info["id"]]}
    return p, l1, l2, r


def test_the_offer_survives_the_loss_of_one_lsp(node_factory):
    p, l1, l2, r = redundant(node_factory)
    offer = ready_offer(r, description="redundant")["bolt12"]
    servers = wait_for(lambda: (s := r.rpc.call("asyncpay-listoffers")["offers"][0]["servers"])
                       and all(x["confirmed"] for x in s) and s, what="both servers confirmed")
    assert {s["id"] for s in servers} == {l1.info["id"], l2.info["id"]}
    assert len(p.rpc.decode(offer)["offer_paths"]) == 2
    l1.stop()  # for good
    r.stop()  # R sleeps
    pay = p.rpc.call("asyncpay-pay", {"offer": offer, "amount_msat": 40_000, "timeout": 5})
    assert pay["status"] == "pending" and pay["kind"] == "static", pay  # L2 answered
    wait_for(lambda: l2.rpc.call("asyncpay-listmailbox")["messages"] >= 1, what="held_htlc_available at L2")
    r.start()  # R wakes, reaching L2 only
    r.rpc.connect(l2.info["id"], "localhost", l2.port)
    assert_complete(p, r, pay)
    assert_channels_normal(p, l2, r)


def stored_paths(lsp) -> int:
    [row] = lsp.rpc.call("asyncpay-listinvoices")["invoices"]
    return len(StaticInvoice.decode(bytes.fromhex(row["invoice"])).invoice_paths)


def test_a_closed_channel_refreshes_the_static_invoices_and_an_older_one_still_pays(node_factory, bitcoind):
    """P holds R's static invoice (paths through L1 and L2) when L1 closes
    its channel with the sleeping R. R wakes: L2's stored invoice is
    refreshed to the path that works, and P's payment over the older
    invoice goes through it."""
    p, l1, l2, r = redundant(node_factory)
    offer = ready_offer(r, description="channel set")["bolt12"]
    wait_for(lambda: stored_paths(l2) == 2, what="both paths at L2")
    r.stop()
    pay = p.rpc.call("asyncpay-pay", {"offer": offer, "amount_msat": 40_000, "timeout": 5})
    assert pay["status"] == "pending" and pay["kind"] == "static", pay
    wait_for(lambda: l2.rpc.call("asyncpay-listmailbox")["messages"] >= 1, what="held_htlc_available at L2")
    l1.rpc.close(r.info["id"], 1)  # R is away: L1 closes unilaterally
    bitcoind.generate_block(1, wait_for_mempool=1)
    wait_for(lambda: all(c["state"] != "CHANNELD_NORMAL" for c in l1.rpc.listpeerchannels(r.info["id"])["channels"]),
             what="L1's channel with R closing")
    r.start()  # R wakes reaching L2, sees its channel with L1 gone, re-serves
    r.rpc.connect(l2.info["id"], "localhost", l2.port)
    wait_for(lambda: stored_paths(l2) == 1, what="L2's invoice refreshed")
    assert_complete(p, r, pay)
    assert_channels_normal(p, l2)
