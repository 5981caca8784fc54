"""Regtest: LSPS5 webhooks (bLIP-55) on a real lightningd.

    l1 (payer) -- l2 (LSP, asyncpay) -- l3 (client wallet, unannounced channel)

l3 registers a webhook with ``sendcustommsg``; a local HTTPS server with a
trustme CA (the LSP trusts it with asyncpay-lsps5-ca-file and lets it be on
127.0.0.1 with asyncpay-lsps5-allow-hosts) gets webhook_registered. l3
sleeps: a held_htlc_available queued for it yields onion_message_incoming;
an ordinary xpay to it is held at l2 until l3 wakes, then completes. Every
notification's signature is checked with CLN's own ``checkmessage``."""

from __future__ import annotations

import http.server
import json
import os
import ssl
import threading
import time

import pytest

from regtest import ASYNCPAY, HERE, RECORDER, _bound_to_this_python, inject, node_id, require_binaries, wait_for

require_binaries()

import trustme  # noqa: E402
from pyln.client import RpcError  # noqa: E402
from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from asyncpay.blinded_path import EncryptedData  # noqa: E402
from asyncpay.lsps import notifications as n  # noqa: E402
from asyncpay.onion_message import OnionMessagePayload, build_path  # noqa: E402
from asyncpay.onion_message.async_payments import HeldHtlcAvailable  # noqa: E402
from wallet import Wallet  # noqa: E402

LSPS_CLIENT = _bound_to_this_python(HERE / "plugins" / "lsps_client.py")
TIMEOUT = 180


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.got.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def push_service(tmp_path):
    """An HTTPS notification delivery service on 127.0.0.1 and its CA file."""
    ca = trustme.CA()
    ca_file = tmp_path / "push-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.got, srv.lock = [], threading.Lock()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv, str(ca_file)
    srv.shutdown()
    srv.server_close()


def calls(srv, method: str) -> list[tuple[str, dict, bytes]]:
    with srv.lock:
        return [g for g in srv.got if json.loads(g[2])["method"] == method]


def verified(checker, lsp, headers: dict, body: bytes) -> bool:
    """CLN's checkmessage over the spec's template, against the LSP's node id."""
    text = n.signed_text(headers["x-lsps5-timestamp"], body)
    return checker.rpc.checkmessage(text, headers["x-lsps5-signature"], lsp.info["id"])["verified"]


def lsps_request(client, lsp, method: str, params: dict) -> dict:
    rid = os.urandom(10).hex()  # LSPS0: at least 80 random bits
    msg = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode()
    client.rpc.sendcustommsg(lsp.info["id"], ((37913).to_bytes(2, "big") + msg).hex())

    def answer():
        for r in client.rpc.call("lsps-replies")["replies"]:
            if r["message"].get("id") == rid:
                return r["message"]
        return None

    return wait_for(answer, TIMEOUT, what=f"answer to {method}")


def test_webhooks_wake_a_sleeping_client(node_factory, push_service):
    srv, ca_file = push_service
    l1, l2, l3 = node_factory.get_nodes(3, opts=[
        {"plugin": RECORDER, "may_reconnect": True},
        {"plugin": ASYNCPAY, "may_reconnect": True, "asyncpay-lsps5-allow-hosts": "127.0.0.1",
         "asyncpay-lsps5-ca-file": ca_file},
        {"plugin": LSPS_CLIENT, "may_reconnect": True}])
    node_factory.join_nodes([l1, l2], wait_for_announce=True)  # the payer finds l2 in gossip
    node_factory.join_nodes([l2, l3], announce_channels=False)  # a wallet's channel: unannounced
    wait_for(lambda: any((c.get("updates") or {}).get("remote") for c in l3.rpc.listpeerchannels()["channels"]),
             TIMEOUT, what="l2's channel_update at l3 (for the invoice's route hint)")
    wait_for(lambda: l3.rpc.listchannels(source=l2.info["id"])["channels"], TIMEOUT, what="l2 public at l3")

    # 1. Registration over LSPS0, and webhook_registered at the push service.
    url = f"https://127.0.0.1:{srv.server_address[1]}/push?device=l3"
    reply = lsps_request(l3, l2, "lsps5.set_webhook", {"app_name": "regtest wallet", "webhook": url})
    assert reply["result"] == {"num_webhooks": 1, "max_webhooks": 5, "no_change": False}
    assert lsps_request(l3, l2, "lsps5.list_webhooks", {})["result"]["app_names"] == ["regtest wallet"]
    (path, headers, body), = wait_for(lambda: calls(srv, n.WEBHOOK_REGISTERED), TIMEOUT, what="webhook_registered")
    assert path == "/push?device=l3" and verified(l1, l2, headers, body)
    assert l2.rpc.call("asyncpay-listwebhooks", [l3.info["id"]])["webhooks"][0]["url"] == url
    wait_for(lambda: l2.rpc.call("asyncpay-listwebhooks")["webhooks"][0]["last_status"] == "200", TIMEOUT,
             what="the call recorded")

    inv = l3.rpc.invoice(50_000, "woken", "paid while asleep", cltv=40)["bolt11"]
    assert l3.rpc.decode(inv).get("routes"), "the invoice carries the route hint through l2"

    # 2. The client sleeps; a payer's held_htlc_available is queued for it.
    l3.stop()
    wait_for(lambda: not any(p["connected"] for p in l2.rpc.listpeers(l3.info["id"])["peers"]), TIMEOUT,
             what="l3 gone")
    wallet = Wallet(node_id(l3))
    dest = build_path(os.urandom(32), [
        (node_id(l2), EncryptedData(next_node_id=node_id(l3))),
        (node_id(l3), EncryptedData(next_node_id=wallet.endpoint)),
        (wallet.endpoint, EncryptedData(path_id=os.urandom(32))),
    ])
    inject(l1, Wallet(node_id(l1)).onion_to(dest, OnionMessagePayload(held_htlc_available=HeldHtlcAvailable())))
    (_, headers, body), = wait_for(lambda: calls(srv, n.ONION_MESSAGE_INCOMING), TIMEOUT,
                                   what="onion_message_incoming")
    assert verified(l1, l2, headers, body) and l2.rpc.call("asyncpay-listmailbox")["messages"] == 1

    # 3. An ordinary payment to the sleeping client is held until it wakes.
    result: dict = {}

    def pay():
        try:
            result["ok"] = l1.rpc.call("xpay", {"invstring": inv, "retry_for": TIMEOUT})
        except Exception as e:  # the assertion below shows it
            result["error"] = e

    payer = threading.Thread(target=pay, daemon=True)
    payer.start()
    wait_for(lambda: l2.rpc.call("asyncpay-status")["lsps5"]["held_for_wake"] == 1, TIMEOUT, what="held for wake-up")
    (_, headers, body), = wait_for(lambda: calls(srv, n.PAYMENT_INCOMING), TIMEOUT, what="payment_incoming")
    assert verified(l1, l2, headers, body)
    time.sleep(1)
    assert "ok" not in result and "error" not in result  # still held
    l3.start()
    l3.rpc.connect(l2.info["id"], "localhost", l2.port)
    payer.join(TIMEOUT)
    assert "ok" in result, result.get("error")
    assert l3.rpc.listinvoices("woken")["invoices"][0]["status"] == "paid"
    status = l2.rpc.call("asyncpay-status")["lsps5"]
    assert status["held_for_wake"] == 0 and status["counters"]["wake_released"] == 1
    assert status["counters"]["lsps5_sent_ok"] == 3
    assert l2.rpc.call("asyncpay-delwebhook", [l3.info["id"], "regtest wallet"])["deleted"]["app_name"] \
        == "regtest wallet"
    assert l2.rpc.call("asyncpay-listwebhooks")["webhooks"] == []


def payer_lsp_wallet(node_factory, ca_file: str, lsp_opts: dict) -> tuple:
    """l1 (a payer) -- l2 (the LSP, asyncpay) -- l3 (a wallet with the LSPS
    client, unannounced channel), l2's channel_update known at l3."""
    l1, l2, l3 = node_factory.get_nodes(3, opts=[
        {"may_reconnect": True},
        {"plugin": ASYNCPAY, "may_reconnect": True, "asyncpay-lsps5-allow-hosts": "127.0.0.1",
         "asyncpay-lsps5-ca-file": ca_file, **lsp_opts},
        {"plugin": LSPS_CLIENT, "may_reconnect": True}])
    node_factory.join_nodes([l1, l2], wait_for_announce=True)
    node_factory.join_nodes([l2, l3], announce_channels=False)
    wait_for(lambda: any((c.get("updates") or {}).get("remote") for c in l3.rpc.listpeerchannels()["channels"]),
             TIMEOUT, what="l2's channel_update at l3")
    wait_for(lambda: l3.rpc.listchannels(source=l2.info["id"])["channels"], TIMEOUT, what="l2 public at l3")
    return l1, l2, l3


def test_a_client_that_never_wakes_gets_its_htlc_failed_at_the_timeout(node_factory, push_service):
    srv, ca_file = push_service
    l1, l2, l3 = payer_lsp_wallet(node_factory, ca_file, {"asyncpay-wake-timeout": 10})

    # LSPS0 on real CLN: what we answer besides lsps5.*.
    assert lsps_request(l3, l2, "lsps0.list_protocols", {})["result"] == {"protocols": [5]}
    assert lsps_request(l3, l2, "lsps1.get_info", {})["error"]["code"] == -32601
    bad = lsps_request(l3, l2, "lsps5.set_webhook", {"app_name": "w", "webhook": "http://e.org/"})
    assert bad["error"]["code"] == 502
    lsps_request(l3, l2, "lsps5.set_webhook", {"app_name": "w", "webhook": f"https://127.0.0.1:{srv.server_address[1]}/"})

    inv = l3.rpc.invoice(10_000, "never", "never woken", cltv=40)["bolt11"]
    l3.stop()
    wait_for(lambda: not any(p["connected"] for p in l2.rpc.listpeers(l3.info["id"])["peers"]), TIMEOUT,
             what="l3 gone")
    started = time.time()
    with pytest.raises(RpcError):
        l1.rpc.call("xpay", {"invstring": inv, "retry_for": 30})
    waited = time.time() - started
    status = l2.rpc.call("asyncpay-status")["lsps5"]
    assert status["held_for_wake"] == 0 and status["counters"]["wake_failed_wake_timeout"] >= 1
    assert waited >= 9  # held for the timeout, not failed at once (the deadline is kept in whole seconds)
    wait_for(lambda: calls(srv, n.PAYMENT_INCOMING), TIMEOUT, what="payment_incoming")
    # The channel is not closed by any of this.
    assert [c["state"] for c in l2.rpc.listpeerchannels(l3.info["id"])["channels"]] == ["CHANNELD_NORMAL"]


def raw_request(client, lsp, payload: bytes) -> None:
    client.rpc.sendcustommsg(lsp.info["id"], ((37913).to_bytes(2, "big") + payload).hex())


def null_id_errors(client) -> list[int]:
    return [r["message"]["error"]["code"] for r in client.rpc.call("lsps-replies")["replies"]
            if r["message"].get("id") is None and "error" in r["message"]]


def test_only_a_usable_channel_counts_and_bad_requests_get_their_errors(node_factory, bitcoind, push_service):
    """On real CLN: a channel whose funding is unconfirmed does not let its
    peer register (LDK's is_usable); once locked in it does. A request with an
    integer of 5,000 digits or an id of 60 KB gets its JSON-RPC error, and a
    webhook on port 6379 is refused."""
    srv, ca_file = push_service
    l2, l3 = node_factory.get_nodes(2, opts=[
        {"plugin": ASYNCPAY, "may_reconnect": True, "asyncpay-lsps5-allow-hosts": "127.0.0.1",
         "asyncpay-lsps5-ca-file": ca_file, "asyncpay-lsps0-server": "on"},
        {"plugin": LSPS_CLIENT, "may_reconnect": True}])
    l3.rpc.connect(l2.info["id"], "localhost", l2.port)
    l2.fundwallet(10**7)
    l2.rpc.fundchannel(l3.info["id"], 10**6)
    wait_for(lambda: [c["state"] for c in l2.rpc.listpeerchannels(l3.info["id"])["channels"]]
             == ["CHANNELD_AWAITING_LOCKIN"], TIMEOUT, what="funding sent, not confirmed")
    url = f"https://127.0.0.1:{srv.server_address[1]}/push?device=l3"
    reply = lsps_request(l3, l2, "lsps5.set_webhook", {"app_name": "w", "webhook": url})
    assert reply["error"]["code"] == 1003  # no usable channel yet

    bitcoind.generate_block(6)
    wait_for(lambda: [c["state"] for c in l2.rpc.listpeerchannels(l3.info["id"])["channels"]]
             == ["CHANNELD_NORMAL"], TIMEOUT, what="channel locked in")
    reply = lsps_request(l3, l2, "lsps5.set_webhook", {"app_name": "w", "webhook": url})
    assert reply["result"]["num_webhooks"] == 1
    wait_for(lambda: calls(srv, n.WEBHOOK_REGISTERED), TIMEOUT, what="webhook_registered")

    bad_port = lsps_request(l3, l2, "lsps5.set_webhook", {"app_name": "x", "webhook": "https://push.example.org:6379/"})
    assert bad_port["error"]["code"] == 501 and "port 6379" in bad_port["error"]["message"]

    raw_request(l3, l2, b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"lsps0.list_protocols","params":{}}')
    wait_for(lambda: null_id_errors(l3) == [-32700], TIMEOUT, what="-32700 for a 5,000-digit integer")
    raw_request(l3, l2, json.dumps({"jsonrpc": "2.0", "id": "x" * 60_000, "method": "lsps0.list_protocols",
                                    "params": {}}).encode())
    wait_for(lambda: null_id_errors(l3) == [-32700, -32600], TIMEOUT, what="-32600 for a 60 KB id")
    assert not l2.daemon.is_in_log("Traceback")


def test_a_sleeping_client_holds_only_its_share_of_an_incoming_channels_slots(node_factory, push_service):
    """On real CLN: the incoming channel's slots are lightningd's own
    max_accepted_htlcs (here max-concurrent-htlcs=4, so a 25% share is one):
    a second HTLC from that channel for the sleeping client is not held."""
    srv, ca_file = push_service
    l1, l2, l3 = payer_lsp_wallet(node_factory, ca_file, {"asyncpay-wake-timeout": 20, "max-concurrent-htlcs": 4})
    (incoming,) = l2.rpc.listpeerchannels(l1.info["id"])["channels"]
    assert incoming["max_accepted_htlcs"] == 4
    lsps_request(l3, l2, "lsps5.set_webhook", {"app_name": "w", "webhook": f"https://127.0.0.1:{srv.server_address[1]}/"})
    invs = [l3.rpc.invoice(10_000, f"share{i}", "share", cltv=40)["bolt11"] for i in range(2)]
    l3.stop()
    wait_for(lambda: not any(p["connected"] for p in l2.rpc.listpeers(l3.info["id"])["peers"]), TIMEOUT,
             what="l3 gone")
    results: dict[int, object] = {}

    def pay(i):
        try:
            results[i] = l1.rpc.call("xpay", {"invstring": invs[i], "retry_for": 5})
        except RpcError as e:
            results[i] = e

    first = threading.Thread(target=pay, args=(0,), daemon=True)
    first.start()
    wait_for(lambda: l2.rpc.call("asyncpay-status")["lsps5"]["held_for_wake"] == 1, TIMEOUT, what="first held")
    pay(1)  # the channel's share is taken: not held, lightningd fails it (l3 is offline)
    assert isinstance(results[1], RpcError)
    status = l2.rpc.call("asyncpay-status")["lsps5"]
    assert status["held_for_wake"] == 1 and status["counters"]["wake_not_held_channel_slots"] >= 1
    first.join(TIMEOUT)
    assert isinstance(results[0], RpcError)  # nobody woke l3: failed at the wake timeout
