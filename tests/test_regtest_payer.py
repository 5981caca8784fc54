"""Regtest: the payer role in a real lightningd (issue 7).

P (asyncpay payer) -- L (asyncpay LSP) -- R (asyncpay recipient); P-L is
public, L-R unannounced."""

from __future__ import annotations

import hashlib

from regtest import ASYNCPAY, require_binaries, wait_for

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from test_regtest_recipient import connect_to_server, ready_offer  # noqa: E402


def payer_network(node_factory):
    opts = {"plugin": ASYNCPAY, "may_reconnect": True}
    p, lsp, r = node_factory.get_nodes(3, opts=[dict(opts), dict(opts), dict(opts)])
    node_factory.join_nodes([p, lsp], wait_for_announce=True)
    node_factory.join_nodes([lsp, r], announce_channels=False)
    wait_for(lambda: any((c.get("updates") or {}).get("remote")
                         for c in r.rpc.listpeerchannels(lsp.info["id"])["channels"]), what="LSP's update")
    # R answers P through L: R must know P's channel from gossip.
    wait_for(lambda: r.rpc.listchannels(source=p.info["id"])["channels"], what="gossip at R")
    connect_to_server(lsp, r)
    return p, lsp, r


def assert_paid(pay: dict, r) -> None:
    assert pay["status"] == "complete", pay
    assert hashlib.sha256(bytes.fromhex(pay["payment_preimage"])).hexdigest() == pay["payment_hash"]
    got = {x["payment_hash"]: x for x in r.rpc.call("asyncpay-listreceived")["payments"]}
    assert got[pay["payment_hash"]]["payment_preimage"] == pay["payment_preimage"]


def test_pay_online_recipient_and_a_stock_cln_offer(node_factory):
    p, lsp, r = payer_network(node_factory)
    offer = ready_offer(r, description="coffee")["bolt12"]
    # (a) R online: it answers with a normal invoice, paid by xpay.
    pay = p.rpc.call("asyncpay-pay", {"offer": offer, "amount_msat": 21_000})
    assert pay["kind"] == "invoice" and pay["amount_msat"] == 21_000
    assert_paid(pay, r)
    assert p.rpc.call("asyncpay-listpays", {"id": pay["id"]})["pays"] == [pay]
    # (c) a normal offer made by CLN's own offers plugin on L.
    stock = lsp.rpc.call("offer", {"amount": "5000msat", "description": "stock"})["bolt12"]
    pay = p.rpc.call("asyncpay-pay", {"offer": stock})
    assert pay["status"] == "complete" and pay["kind"] == "invoice" and pay["amount_msat"] == 5000
    assert lsp.rpc.listinvoices()["invoices"][0]["status"] == "paid"


def test_offline_recipient_releases_after_payer_restart(node_factory):
    p, lsp, r = payer_network(node_factory)
    offer = ready_offer(r, description="tea")["bolt12"]
    r.stop()
    # (b) R asleep: the payment waits for its release.
    pay = p.rpc.call("asyncpay-pay", {"offer": offer, "amount_msat": 33_000, "timeout": 5})
    assert pay["status"] == "pending" and pay["kind"] == "static"
    wait_for(lambda: lsp.rpc.call("asyncpay-listmailbox")["messages"] >= 2, what="held_htlc_available queued")
    # (d) P restarts while its payment is pending.
    p.restart()
    [still] = p.rpc.call("asyncpay-listpays")["pays"]
    assert still["status"] == "pending"
    r.start()
    r.rpc.connect(lsp.info["id"], "localhost", lsp.port)
    done = wait_for(lambda: (x := p.rpc.call("asyncpay-listpays", {"id": pay["id"]})["pays"][0])["status"]
                    == "complete" and x, what="payment complete")
    assert done["kind"] == "static"
    assert_paid(done, r)
    assert r.rpc.call("asyncpay-status")["recipient"]["releases"] >= 1
