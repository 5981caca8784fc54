"""Regtest: the often-offline recipient role in a real lightningd (issue 6).

P is a stock CLN payer (plus the test recorder, to see replies for the test
wallet), L is the asyncpay LSP, R the asyncpay recipient with a private
channel from L."""

from __future__ import annotations

import hashlib
import os
import time

from regtest import ASYNCPAY, RECORDER, arrivals, inject, node_id, require_binaries, take, wait_for

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from asyncpay.blinded_path import BlindedPaymentPath  # noqa: E402
from asyncpay.cln.convert import parse_scid  # noqa: E402
from asyncpay.offers import CHAINS, Offer, StaticInvoice  # noqa: E402
from asyncpay.onion_message import HeldHtlcAvailable, OnionMessagePayload  # noqa: E402
from asyncpay.payment.route import RouteHop, blinded_payment_onion, to_introduction  # noqa: E402
from wallet import Wallet  # noqa: E402


def recipient_network(node_factory):
    opts = [{"plugin": RECORDER, "may_reconnect": True},
            {"plugin": ASYNCPAY, "may_reconnect": True},
            {"plugin": ASYNCPAY, "may_reconnect": True}]
    p, lsp, r = node_factory.get_nodes(3, opts=opts)
    node_factory.join_nodes([p, lsp], wait_for_announce=True)
    node_factory.join_nodes([lsp, r], announce_channels=False)
    # R builds its payment paths from the LSP's channel_update towards it.
    wait_for(lambda: any((c.get("updates") or {}).get("remote")
                         for c in r.rpc.listpeerchannels(lsp.info["id"])["channels"]), what="LSP's update")
    return p, lsp, r


def connect_to_server(lsp, r):
    res = lsp.rpc.call("asyncpay-recipientpaths", {"recipient_id": r.info["id"]})
    out = r.rpc.call("asyncpay-setserver", {"paths": [p["hex"] for p in res["paths"]]})
    assert lsp.info["id"] in out["servers"]


def ready_offer(r, **params) -> dict:
    r.rpc.call("asyncpay-offer", params)
    slot = params.get("slot", 0)
    return wait_for(lambda: next((o for o in r.rpc.call("asyncpay-listoffers")["offers"]
                                  if o["slot"] == slot and o["status"] == "ready"), None), what="offer ready")


def test_stock_cln_pays_online_recipient_then_lsp_serves_while_it_sleeps(node_factory):
    p, lsp, r = recipient_network(node_factory)
    connect_to_server(lsp, r)
    offer = ready_offer(r, description="coffee")
    again = r.rpc.call("asyncpay-offer", {"description": "coffee"})
    assert again["bolt12"] == offer["bolt12"] and again["status"] == "ready"
    decoded = p.rpc.decode(offer["bolt12"])
    assert decoded["valid"] and decoded["type"] == "bolt12 offer"

    # R online: a stock CLN payer fetches a BOLT 12 invoice from R (through
    # L's forward) and pays it over R's blinded path through L.
    inv = p.rpc.fetchinvoice(offer["bolt12"], amount_msat=25_000)
    paid = p.rpc.call("xpay", {"invstring": inv["invoice"]})
    got = wait_for(lambda: r.rpc.call("asyncpay-listreceived")["payments"], what="received")
    assert len(got) == 1
    [pay] = got
    assert pay["kind"] == "invoice" and pay["amount_msat"] >= 25_000 and pay["bolt12"] == offer["bolt12"]
    assert hashlib.sha256(bytes.fromhex(pay["payment_preimage"])).hexdigest() == pay["payment_hash"]
    assert paid["payment_preimage"] == pay["payment_preimage"]

    # R sleeps: L serves the static invoice that R published.
    before = offer["invoice_expires_at"]
    r.daemon.proc.kill()  # kill -9: nothing R acknowledged may be lost
    r.daemon.proc.wait()
    payer = Wallet(node_id(p))
    _, onion = payer.invoice_request(Offer.from_string(offer["bolt12"]), amount=30_000)
    inject(p, onion)
    static = StaticInvoice.decode(take(p, payer).static_invoice)
    static.validate(int(time.time()), CHAINS["regtest"])
    assert static.offer_issuer_id == Offer.from_string(offer["bolt12"]).offer_issuer_id

    # R wakes: the same offer, and a refreshed invoice persisted by L.
    time.sleep(1)  # the refreshed invoice has a later expiry
    r.start()

    def refreshed():
        [row] = r.rpc.call("asyncpay-listoffers")["offers"]
        stored = lsp.rpc.call("asyncpay-listinvoices", {"recipient_id": r.info["id"]})["invoices"]
        held = StaticInvoice.decode(bytes.fromhex(stored[0]["invoice"])).expires_at()
        return row if row["status"] == "ready" and held == row["invoice_expires_at"] > before else None

    row = wait_for(refreshed, what="refreshed invoice persisted")
    assert row["bolt12"] == offer["bolt12"]
    assert r.rpc.call("asyncpay-listreceived")["payments"] == got


def replies(node, wallet: Wallet, count: int) -> list:
    onions = wait_for(lambda: (a := arrivals(node, wallet.endpoint)) and len(a) >= count and a, what="replies")
    return [wallet.open(o) for o in onions]


def test_static_invoice_payment_is_released_and_claimed(node_factory):
    """Design §8 on a real node: R releases a held HTLC, then claims a blinded
    keysend HTLC (5482373484 and 77777 in its final payload, even and unknown
    to lightningd) through htlc_accepted. The payer here is the test, with
    the project's own onion code and CLN's injectpaymentonion."""
    p, lsp, r = recipient_network(node_factory)
    connect_to_server(lsp, r)
    offer = Offer.from_string(ready_offer(r, description="tea")["bolt12"])
    payer = Wallet(node_id(p))
    req, onion = payer.invoice_request(offer, amount=40_000)
    inject(p, onion)
    # L answers with the static invoice; R, online, with an invoice too.
    got = replies(p, payer, 2)
    [static] = [StaticInvoice.decode(g.static_invoice) for g in got if g.static_invoice]
    assert [g for g in got if g.invoice]

    held = OnionMessagePayload(held_htlc_available=HeldHtlcAvailable(), reply_path=payer.reply_path())
    inject(p, payer.onion_to(static.invoice_held_htlc_available_paths[0], held))
    assert replies(p, payer, 3)[2].release_held_htlc is not None

    preimage = os.urandom(32)
    payment_hash = hashlib.sha256(preimage).digest()
    path = BlindedPaymentPath(static.invoice_paths[0], static.invoice_blindedpay[0])
    final_cltv = p.rpc.getinfo()["blockheight"]
    amount, cltv = to_introduction(path, 40_000, final_cltv)
    scid = parse_scid(p.rpc.listpeerchannels(lsp.info["id"])["channels"][0]["short_channel_id"])
    built = blinded_payment_onion(os.urandom(32), node_id(p), [RouteHop(scid, node_id(lsp), amount, cltv)], path,
                                  40_000, final_cltv, payment_hash, keysend_preimage=preimage,
                                  invoice_request=req.encode())
    res = p.rpc.call("injectpaymentonion", {
        "onion": built.onion.hex(), "payment_hash": payment_hash.hex(), "amount_msat": built.amount_msat,
        "cltv_expiry": built.cltv_expiry, "partid": 0, "groupid": 1})
    assert res["payment_preimage"] == preimage.hex()
    [pay] = r.rpc.call("asyncpay-listreceived")["payments"]
    assert pay["kind"] == "static" and pay["payment_hash"] == payment_hash.hex() and pay["amount_msat"] >= 40_000
    assert r.rpc.call("asyncpay-status")["recipient"]["releases"] == 1
