"""LSPS5 through the router (cln/node.py) over the emulated CLN: a client's
custom message in and the answer out, the mailbox's notification waking
the client, and an HTLC to the sleeping client held by the router's roles
until it connects."""

from __future__ import annotations

import json

from asyncpay.lsps import lsps0
from asyncpay.lsps import notifications as n
from emulated_cln import scid_str
from test_lsp_flow import net, queue_for  # noqa: F401  (the fixture)
from wallet import Wallet


def wire(net_, lsp, rnode, asyncpay) -> list[dict]:
    """The LSP's custommsg hook goes to the node; the client records what it gets."""
    got: list[dict] = []
    lsp.listeners.append(lambda t, p: asyncpay.on_custommsg(p["peer_id"], p["payload"]) if t == "custommsg" else None)
    rnode.listeners.append(lambda t, p: got.append(json.loads(lsps0.unframe(bytes.fromhex(p["payload"]))))
                           if t == "custommsg" else None)
    return got


def send(rnode, lsp, method: str, params: dict) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": method, "method": method, "params": params}).encode()
    rnode.rpc.call("sendcustommsg", {"node_id": lsp.id, "msg": lsps0.frame(body).hex()})


def test_a_client_registers_and_is_woken_for_mail_and_for_a_payment(net):  # noqa: F811
    net_, lsp, rnode, pnode, asyncpay = net
    got = wire(net_, lsp, rnode, asyncpay)
    send(rnode, lsp, "lsps0.list_protocols", {})
    send(rnode, lsp, "lsps5.set_webhook", {"app_name": "w", "webhook": "https://push.example.org/x"})
    assert got == [{"jsonrpc": "2.0", "id": "lsps0.list_protocols", "result": {"protocols": [5]}},
                   {"jsonrpc": "2.0", "id": "lsps5.set_webhook",
                    "result": {"num_webhooks": 1, "max_webhooks": 5, "no_change": False}}]
    box = asyncpay.lsps5.outbox
    assert [c.method for c in box.due(float("inf"))] == [n.WEBHOOK_REGISTERED]

    # Asleep: mail for it wakes it (the asyncpay_mailbox_queued path).
    net_.disconnect(lsp, rnode)
    queue_for(lsp, rnode, pnode, Wallet(rnode.node_id), 1)
    assert [c.method for c in box.due(float("inf"))] == [n.ONION_MESSAGE_INCOMING]

    # An HTLC to forward to it: the router's roles hold it (no answer yet).
    answers: list[dict] = []
    height = net_.height
    params = {"onion": {"short_channel_id": scid_str(lsp.channels[rnode.id]), "outgoing_cltv_value": height + 100,
                        "forward_msat": 1000, "payload": "00"},
              "htlc": {"short_channel_id": scid_str(lsp.channels[pnode.id]), "id": 7, "amount_msat": 1100,
                       "cltv_expiry": height + 200, "cltv_expiry_relative": 200, "payment_hash": "ab" * 32}}
    asyncpay.on_htlc_accepted(params, answers.append)
    assert answers == [] and [c.method for c in box.due(float("inf"))] == [n.PAYMENT_INCOMING]
    net_.connect(lsp, rnode)  # the client wakes: the router's connect releases it
    assert answers == [{"result": "continue"}]
    # Connected, the next HTLC is not held.
    asyncpay.on_htlc_accepted({**params, "htlc": {**params["htlc"], "id": 8}}, answers.append)
    assert answers[-1] == {"result": "continue"} and asyncpay.lsps5.wake.count_held() == 0
