"""Regtest: a multi-part static-invoice payment whose recipient's lightningd
restarts between the parts (recipient/claim.py). lightningd replays the
HTLC the plugin had not answered; the stored part counts once, the second
part completes the set, and both are resolved with the payer's preimage.

P is a stock CLN node the test pays from (injectpaymentonion, the project's
own onion code), L the asyncpay LSP, R the asyncpay recipient."""

from __future__ import annotations

import hashlib
import os
import threading

from regtest import ASYNCPAY, RECORDER, TIMEOUT, node_id, require_binaries, wait_for

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from asyncpay.blinded_path import BlindedPaymentPath  # noqa: E402
from asyncpay.cln.convert import parse_scid  # noqa: E402
from asyncpay.offers import Offer, StaticInvoice  # noqa: E402
from asyncpay.payment.route import RouteHop, blinded_payment_onion, to_introduction  # noqa: E402
from regtest import inject  # noqa: E402
from test_regtest_recipient import connect_to_server, ready_offer, replies  # noqa: E402
from wallet import Wallet  # noqa: E402


def test_restart_between_the_parts_of_a_payment_completes_the_claim(node_factory):
    opts = [{"plugin": RECORDER, "may_reconnect": True},
            {"plugin": ASYNCPAY, "may_reconnect": True},
            # The wait outlives the restart: the set must complete, not time out.
            {"plugin": ASYNCPAY, "may_reconnect": True, "asyncpay-recipient-mpp-timeout": 600}]
    p, lsp, r = node_factory.get_nodes(3, opts=opts)
    node_factory.join_nodes([p, lsp], wait_for_announce=True)
    node_factory.join_nodes([lsp, r], announce_channels=False)
    wait_for(lambda: any((c.get("updates") or {}).get("remote")
                         for c in r.rpc.listpeerchannels(lsp.info["id"])["channels"]), what="LSP's update")
    connect_to_server(lsp, r)
    offer = Offer.from_string(ready_offer(r, description="split")["bolt12"])
    payer = Wallet(node_id(p))
    req, onion = payer.invoice_request(offer, amount=40_000)
    inject(p, onion)
    [static] = [StaticInvoice.decode(g.static_invoice) for g in replies(p, payer, 2) if g.static_invoice]

    preimage = os.urandom(32)
    payment_hash = hashlib.sha256(preimage).digest()
    path = BlindedPaymentPath(static.invoice_paths[0], static.invoice_blindedpay[0])
    scid = parse_scid(p.rpc.listpeerchannels(lsp.info["id"])["channels"][0]["short_channel_id"])
    results: dict[int, dict] = {}

    def part(partid: int, amount: int) -> threading.Thread:
        height = p.rpc.getinfo()["blockheight"]
        a, c = to_introduction(path, amount, height)
        built = blinded_payment_onion(os.urandom(32), node_id(p), [RouteHop(scid, node_id(lsp), a, c)], path,
                                      amount, height, payment_hash, keysend_preimage=preimage,
                                      invoice_request=req.encode(), total_msat=40_000)

        def run() -> None:  # injectpaymentonion returns when the part is settled
            try:
                results[partid] = p.rpc.call("injectpaymentonion", {
                    "onion": built.onion.hex(), "payment_hash": payment_hash.hex(),
                    "amount_msat": built.amount_msat, "cltv_expiry": built.cltv_expiry,
                    "partid": partid, "groupid": 1})
            except Exception as e:  # the assertion below names it
                results[partid] = {"error": str(e)}

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    first = part(1, 15_000)
    wait_for(lambda: r.rpc.call("asyncpay-status")["recipient"]["pending_parts"] == 1, what="part 1 waiting")
    r.restart()  # lightningd replays part 1 to the restarted plugin
    r.rpc.connect(lsp.info["id"], "localhost", lsp.port)
    wait_for(lambda: all(c["state"] == "CHANNELD_NORMAL" and c.get("peer_connected")
                         for c in r.rpc.listpeerchannels(lsp.info["id"])["channels"]), what="channel back")
    assert r.rpc.call("asyncpay-status")["recipient"]["pending_parts"] == 1
    second = part(2, 25_000)
    for t in (first, second):
        t.join(timeout=TIMEOUT)
    assert results.get(1, {}).get("payment_preimage") == preimage.hex(), results
    assert results.get(2, {}).get("payment_preimage") == preimage.hex(), results
    [pay] = r.rpc.call("asyncpay-listreceived")["payments"]
    assert pay["payment_hash"] == payment_hash.hex() and pay["amount_msat"] >= 40_000
    status = r.rpc.call("asyncpay-status")["recipient"]
    assert status["pending_parts"] == 0 and status["payments_received"] == 1
