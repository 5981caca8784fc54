"""Regtest: counters and served marks are kept off the payer's path
(asyncpay/bookkeeping.py) and still reach the disk: at once for what the
operator reads, and at a clean stop of lightningd (the plugin subscribes to
``shutdown``)."""

from __future__ import annotations

import os

from regtest import handshake, inject, lsp_network, node_id, require_binaries, take, wait_for

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from asyncpay.store import Store  # noqa: E402
from wallet import Wallet  # noqa: E402

REQUESTS = 3


def test_counters_reach_the_disk_at_a_clean_stop(node_factory):
    # An interval no test waits for: only the stop and the RPCs write.
    l1, l2, l3 = lsp_network(node_factory, **{"asyncpay-counters-interval-ms": 3_600_000})
    _, offer, invoice = handshake(l2, l3)
    l3.stop()  # the recipient sleeps: only the LSP answers
    payer = Wallet(node_id(l1))
    for i in range(REQUESTS):
        inject(l1, payer.invoice_request(offer)[1])
        assert take(l1, payer, i).static_invoice == invoice.encode()
    # The served marks and counters are still in memory: a clean stop writes
    # them before the plugin exits.
    l2.stop()
    store = Store(os.path.join(l2.daemon.lightning_dir, "regtest", "asyncpay.sqlite3"))
    try:
        counters = store.counters()
        assert counters["invoices_served"] == REQUESTS, counters
        assert counters["sent_static_invoice"] == REQUESTS, counters
        assert store.list_invoices(l3.info["id"])[0]["served"] == REQUESTS
    finally:
        store.close()

    # What the operator reads is written first, whatever the interval.
    l2.start()
    l1.rpc.connect(l2.info["id"], "localhost", l2.port)
    wait_for(lambda: l2.info["id"] in {p["peer_id"] for p in l1.rpc.listpeerchannels()["channels"]
                                       if p.get("peer_connected") and p["state"] == "CHANNELD_NORMAL"},
             what="l1 and l2 reconnected")
    inject(l1, payer.invoice_request(offer)[1])
    assert take(l1, payer, REQUESTS).static_invoice == invoice.encode()
    status = l2.rpc.call("asyncpay-status")
    assert status["server"]["invoices_served"] == REQUESTS + 1, status
    served = l2.rpc.call("asyncpay-listinvoices", {"recipient_id": l3.info["id"]})["invoices"][0]["served"]
    assert served == REQUESTS + 1
