"""Regtest: the LSP role hardened (issue 9) in a real lightningd: RPC errors
the CLN way, the wake-up notification, and an acknowledgement that survives
SIGKILL."""

from __future__ import annotations

import os
import sqlite3

import pytest

from regtest import ASYNCPAY, RECORDER, WAKEUP, handshake, inject, node_id, require_binaries, wait_for

require_binaries()

from pyln.client import RpcError  # noqa: E402
from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from asyncpay.blinded_path import EncryptedData  # noqa: E402
from asyncpay.onion_message import OnionMessagePayload, build_path  # noqa: E402
from wallet import Wallet  # noqa: E402


def network(node_factory, lsp_plugins=()):
    opts = [{"plugin": RECORDER, "may_reconnect": True},
            {"plugin": [ASYNCPAY, *lsp_plugins], "may_reconnect": True},
            {"plugin": RECORDER, "may_reconnect": True}]
    l1, l2, l3 = node_factory.get_nodes(3, opts=opts)
    node_factory.join_nodes([l1, l2], wait_for_announce=False)
    node_factory.join_nodes([l2, l3], wait_for_announce=False)
    return l1, l2, l3


BAD = [
    ("asyncpay-recipientpaths", {}, "missing required parameter recipient_id"),
    ("asyncpay-recipientpaths", {"recipient_id": "x", "colour": "red"}, "unknown parameter colour"),
    ("asyncpay-recipientpaths", {"recipient_id": "x", "count": "∞"}, "count must be an integer"),
    ("asyncpay-recipientpaths", {"recipient_id": "x", "count": 0}, "count must be between 1 and 16"),
    ("asyncpay-listinvoices", {"recipient_id": 7}, "recipient_id must be a string"),
    ("asyncpay-delinvoice", {"recipient_id": "ünï", "invoice_slot": -1}, "invoice_slot must be between"),
    ("asyncpay-flush", {"peer_id": "ß" * 66}, "peer_id must be a hex string"),
    ("asyncpay-status", {"x": 1}, "unknown parameter x"),
]


def test_rpc_errors_name_the_parameter_without_traceback(node_factory):
    l2 = node_factory.get_node(options={"plugin": ASYNCPAY})
    for method, params, message in BAD:
        with pytest.raises(RpcError) as e:
            l2.rpc.call(method, params)
        err = e.value.error
        assert err["code"] == -32602, (method, err)
        assert message in err["message"] and "\n" not in err["message"]
        assert "traceback" not in err and "Traceback" not in str(err)
    with pytest.raises(RpcError) as e:
        l2.rpc.call("asyncpay-delinvoice", {"recipient_id": "nobody", "invoice_slot": 0})
    assert e.value.error["code"] == 2301 and "traceback" not in e.value.error
    # The plugin is still there and well.
    assert "endpoint_id" in l2.rpc.call("asyncpay-status")


def test_help_and_options_read_well(node_factory):
    l2 = node_factory.get_node(options={"plugin": ASYNCPAY, "asyncpay-serve-rate": 7})
    [h] = l2.rpc.help("asyncpay-recipientpaths")["help"]
    assert "recipient_id" in h["command"] and "[count]" in h["command"], h
    configs = l2.rpc.listconfigs()["configs"]
    assert configs["asyncpay-serve-rate"]["value_int"] == 7  # a number, not a string
    with pytest.raises(RpcError) as e:
        l2.rpc.setconfig("asyncpay-serve-rate", "fast")
    assert "serve-rate" in str(e.value.error)


def test_mailbox_queued_notification_reaches_a_subscriber(node_factory):
    l1, l2, l3 = network(node_factory, lsp_plugins=[WAKEUP])
    l2.rpc.call("asyncpay-recipientpaths", {"recipient_id": l3.info["id"]})
    wallet, sender = Wallet(node_id(l3)), Wallet(node_id(l1))
    l3.stop()
    for i in range(3):
        dest = build_path(os.urandom(32), [
            (node_id(l2), EncryptedData(next_node_id=node_id(l3))),
            (node_id(l3), EncryptedData(next_node_id=wallet.endpoint)),
            (wallet.endpoint, EncryptedData(path_id=os.urandom(32))),
        ])
        inject(l1, sender.onion_to(dest, OnionMessagePayload(unknown={71: bytes([i])})))
    wait_for(lambda: l2.rpc.call("asyncpay-listmailbox")["messages"] == 3, what="mailbox")
    seen = wait_for(lambda: l2.rpc.call("wakeup-list")["notifications"], what="notification")
    assert len(seen) == 1  # three messages, one wake-up within the interval
    # CLN v26 passes the fields at the top level, again under the topic's
    # name, and adds the origin (docs/rpc.md).
    assert seen[0]["origin"] == "asyncpay", seen[0]
    body = seen[0]["asyncpay_mailbox_queued"]
    assert {k: seen[0][k] for k in body} == body
    assert body["peer_id"] == l3.info["id"] and body["messages"] >= 1 and body["bytes"] > 0
    assert isinstance(body["oldest"], int)


def test_static_invoice_persisted_survives_sigkill(node_factory):
    l1, l2, l3 = network(node_factory)
    _, _, invoice = handshake(l2, l3)  # returns once the recipient saw static_invoice_persisted
    l2.daemon.proc.kill()
    l2.daemon.proc.wait()
    db = os.path.join(l2.daemon.lightning_dir, "regtest", "asyncpay.sqlite3")
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT invoice FROM invoices").fetchall()
    conn.close()
    assert rows == [(invoice.encode(),)]
    l2.start()
    [row] = l2.rpc.call("asyncpay-listinvoices")["invoices"]
    assert row["invoice"] == invoice.encode().hex()
