"""Regtest: the LSP role in a real lightningd (issue: static invoice server
and mailbox). l1 pays, l2 is the LSP running asyncpay, l3 hosts the
recipient wallet; wallets are played by tests/wallet.py."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest

from regtest import handshake, inject, lsp_network, node_id, require_binaries, take, wait_for

require_binaries()

from pyln.client import RpcError  # noqa: E402
from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from asyncpay.blinded_path import EncryptedData  # noqa: E402
from asyncpay.offers import CHAINS, StaticInvoice  # noqa: E402
from asyncpay.onion_message import OnionMessagePayload, build_path  # noqa: E402
from wallet import Wallet  # noqa: E402


def test_handshake_and_static_invoice_while_recipient_offline(node_factory):
    l1, l2, l3 = lsp_network(node_factory)
    recipient, offer, invoice = handshake(l2, l3)
    stored = l2.rpc.call("asyncpay-listinvoices", {"recipient_id": l3.info["id"]})["invoices"]
    assert [i["invoice"] for i in stored] == [invoice.encode().hex()]

    l3.stop()  # the wallet's node goes to sleep
    payer = Wallet(node_id(l1))
    req, onion = payer.invoice_request(offer)
    inject(l1, onion)
    got = take(l1, payer)
    assert got.static_invoice == invoice.encode()
    StaticInvoice.decode(got.static_invoice).validate(int(time.time()), CHAINS["regtest"])
    # The request forwarded to the sleeping recipient is not kept: the payer
    # has the static invoice (lightningdevkit/rust-lightning#4114).
    wait_for(lambda: l2.rpc.call("asyncpay-status")["lsp"]["mailbox_not_queued"].get("forward_invoice_request")
             == 1, what="forward not kept")
    status = l2.rpc.call("asyncpay-status")
    assert status["server"]["invoices_served"] == 1 and status["server"]["invoices_stored"] == 1
    assert l2.rpc.call("asyncpay-listmailbox")["messages"] == 0
    # Awake, the recipient gets the next one forwarded.
    l3.start()
    l3.rpc.connect(l2.info["id"], "localhost", l2.port)
    wait_for(lambda: any(p["connected"] for p in l2.rpc.listpeers(l3.info["id"])["peers"]), what="reconnect")
    req, onion = payer.invoice_request(offer)
    inject(l1, onion)
    fwd = take(l3, recipient)
    assert fwd.invoice_request == req.encode()


def test_mail_survives_lsp_restart(node_factory):
    l1, l2, l3 = lsp_network(node_factory)
    l2.rpc.call("asyncpay-recipientpaths", {"recipient_id": l3.info["id"]})  # registers l3
    wallet = Wallet(node_id(l3))
    l3.stop()
    dest = build_path(os.urandom(32), [
        (node_id(l2), EncryptedData(next_node_id=node_id(l3))),
        (node_id(l3), EncryptedData(next_node_id=wallet.endpoint)),
        (wallet.endpoint, EncryptedData(path_id=os.urandom(32))),
    ])
    sender = Wallet(node_id(l1))
    inject(l1, sender.onion_to(dest, OnionMessagePayload(unknown={71: b"kept across restarts"})))
    wait_for(lambda: l2.rpc.call("asyncpay-listmailbox")["messages"] == 1, what="queued")
    l2.restart()
    assert l2.rpc.call("asyncpay-listmailbox")["messages"] == 1
    l3.start()
    l3.rpc.connect(l2.info["id"], "localhost", l2.port)
    assert take(l3, wallet).unknown == {71: b"kept across restarts"}


def _scid(text: str) -> int:
    block, tx, out = (int(x) for x in text.split("x"))
    return (block << 40) | (tx << 16) | out


def test_scid_named_next_hop_reaches_the_mailbox(node_factory):
    """LDK names private-channel hops by scid; CLN then reports only
    next_short_channel_id_dir, which we map to the peer with listpeerchannels."""
    l1, l2, l3 = lsp_network(node_factory)
    [chan] = [c for c in l2.rpc.call("listpeerchannels")["channels"] if c["peer_id"] == l3.info["id"]]
    scid = _scid(chan["alias"]["local"])  # connectd always knows our local alias
    wallet = Wallet(node_id(l3))
    l3.stop()
    dest = build_path(os.urandom(32), [
        (node_id(l2), EncryptedData(short_channel_id=scid)),
        (node_id(l3), EncryptedData(next_node_id=wallet.endpoint)),
        (wallet.endpoint, EncryptedData(path_id=os.urandom(32))),
    ])
    inject(l1, Wallet(node_id(l1)).onion_to(dest, OnionMessagePayload(unknown={71: b"by scid"})))
    wait_for(lambda: l2.rpc.call("asyncpay-listmailbox")["messages"] == 1, what="queued by scid")
    l3.start()
    l3.rpc.connect(l2.info["id"], "localhost", l2.port)
    assert take(l3, wallet).unknown == {71: b"by scid"}


def test_sigkill_mid_burst_loses_nothing_reported(node_factory):
    l1, l2, l3 = lsp_network(node_factory, **{"asyncpay-mailbox-intake-burst": 10_000,
                                              "asyncpay-mailbox-max-messages-per-source-per-peer": 100})
    l2.rpc.call("asyncpay-recipientpaths", {"recipient_id": l3.info["id"]})
    wallet, sender = Wallet(node_id(l3)), Wallet(node_id(l1))
    l3.stop()
    onions = []
    for i in range(60):
        dest = build_path(os.urandom(32), [
            (node_id(l2), EncryptedData(next_node_id=node_id(l3))),
            (node_id(l3), EncryptedData(next_node_id=wallet.endpoint)),
            (wallet.endpoint, EncryptedData(path_id=os.urandom(32))),
        ])
        onions.append(sender.onion_to(dest, OnionMessagePayload(unknown={71: bytes([i])})))

    def burst():
        for onion in onions:
            try:
                inject(l1, onion)
            except Exception:
                return  # l2 is gone
            time.sleep(0.26)  # under l2's per-peer limit, so l2 sees every one

    def logged() -> int:
        l2.daemon.logs_catchup()
        return sum("queued a message for" in line for line in l2.daemon.logs)

    sender_thread = threading.Thread(target=burst)
    sender_thread.start()
    wait_for(lambda: logged() >= 15, what="a burst under way")
    l2.daemon.proc.kill()  # SIGKILL lightningd mid-burst (its plugins die with it)
    l2.daemon.proc.wait()
    sender_thread.join()
    reported = logged()
    db = os.path.join(l2.daemon.lightning_dir, "regtest", "asyncpay.sqlite3")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = conn.execute("SELECT COUNT(*) FROM mailbox").fetchone()[0]
    conn.close()
    assert 15 <= reported <= rows < len(onions)
    l2.start()
    assert l2.rpc.call("asyncpay-listmailbox")["messages"] == rows


def test_operator_rpcs(node_factory):
    l1, l2, l3 = lsp_network(node_factory)
    _, offer, invoice = handshake(l2, l3)
    rid = l3.info["id"]
    assert [r["recipient_id"] for r in l2.rpc.call("asyncpay-listrecipients")["recipients"]] == [rid]
    [row] = l2.rpc.call("asyncpay-listinvoices")["invoices"]
    assert (row["recipient_id"], row["invoice_slot"], row["expired"]) == (rid, 0, False)
    assert row["offer_description"] == offer.offer_description and row["node_id"] == invoice.invoice_node_id.hex()
    status = l2.rpc.call("asyncpay-status")
    assert status["server"]["invoices"] == 1 and status["sent"]["offer_paths"] == 1
    assert l2.rpc.call("asyncpay-flush", {"peer_id": rid}) == {"peer_id": rid, "queued": 0, "started": False}
    for method, params, message in [
        ("asyncpay-delinvoice", {"recipient_id": rid, "invoice_slot": "x"}, "invoice_slot must be an integer"),
        ("asyncpay-recipientpaths", {"recipient_id": rid, "count": 99}, "count must be between 1 and 16"),
        ("asyncpay-flush", {"peer_id": "zz"}, "peer_id must be a hex string"),
    ]:
        with pytest.raises(RpcError, match=message):
            l2.rpc.call(method, params)
    assert l2.rpc.call("asyncpay-delinvoice", {"recipient_id": rid, "invoice_slot": 0})["deleted"]["invoice_slot"] == 0
    with pytest.raises(RpcError, match="no invoice stored"):
        l2.rpc.call("asyncpay-delinvoice", {"recipient_id": rid, "invoice_slot": 0})
    assert l2.rpc.call("asyncpay-listinvoices")["invoices"] == []
