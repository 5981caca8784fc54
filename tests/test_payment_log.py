"""Logs an operator can grep (issue 25): one ``info`` line per payment state
change, ``payment <hash> <role>: <state>``, and nothing at ``info`` per
onion message."""

from __future__ import annotations

import logging
import re
import time

import pytest

from asyncpay.offers import StaticInvoice
from asyncpay.onion_message import HeldHtlcAvailable, OnionMessagePayload
from test_hold import hook_params, release_of
from test_payer_flow import attach_payer, wait
from test_recipient_flow import Flow

LINE = re.compile(r"payment ([0-9a-f]{64}|-) (hold|payer|recipient|wake_hold): ([a-z_]+)( \(.*\))?")


def info_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and r.name.startswith("asyncpay")]


def changes(caplog, payment_hash: str | None = None) -> list[tuple[str, str]]:
    """(role, state) of every payment line, for one payment hash if given."""
    out = []
    for msg in info_lines(caplog):
        m = LINE.fullmatch(msg)
        if m and (payment_hash is None or m.group(1) == payment_hash):
            out.append((m.group(2), m.group(3)))
    return out


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG, logger="asyncpay")
    return caplog


def test_an_async_payments_life_is_one_info_line_per_state_change(tmp_path, logs):
    flow = Flow(tmp_path)
    flow.setserver()
    payer = attach_payer(flow, tmp_path, payer_invoice_grace=1)
    offer = flow.offer(description="coffee").to_string()
    flow.net.disconnect(flow.lnode, flow.rnode)
    res = payer.payer.pay(offer, 30_000, None, 0)
    payer.payer.tick(int(time.time()) + 2)
    flow.net.connect(flow.lnode, flow.rnode)
    flow.lsp.lsp.wait_flushes()
    wait(lambda: payer.payer.core.records.get(res["id"]).state == "complete")
    h = payer.payer.core.records.get(res["id"]).payment_hash.hex()
    wait(lambda: ("payer", "complete") in changes(logs, h))  # logged just after the state is written
    # The payer's states before the hash is known carry its id; then the hash.
    early = [m for m in info_lines(logs) if m.startswith("payment - payer:")]
    assert [LINE.fullmatch(m).group(3) for m in early] == ["requesting", "static", "awaiting_release"]
    assert all(f"id {res['id']}" in m for m in early)
    assert sorted(changes(logs, h)) == [("payer", "complete"), ("payer", "paying"), ("recipient", "claimed"),
                                        ("recipient", "received")]  # each once
    assert changes(logs, h).index(("payer", "paying")) < changes(logs, h).index(("payer", "complete"))
    assert changes(logs, h).index(("recipient", "received")) < changes(logs, h).index(("recipient", "claimed"))
    assert len([c for c in changes(logs, h) if c == ("payer", "complete")]) == 1


def test_a_held_htlc_logs_held_released_forwarded_then_failed_for_another(tmp_path, logs):
    flow = Flow(tmp_path)
    answers: list[dict] = []
    params = hook_params(flow)
    assert flow.lsp.hold.on_htlc(params, answers.append)
    h = params["htlc"]["payment_hash"]
    flow.lsp.hold.on_message(release_of("1x2x3/4"), int(time.time()))
    assert changes(logs, h) == [("hold", "held"), ("hold", "released"), ("hold", "forwarded")]
    [held] = [m for m in info_lines(logs) if LINE.fullmatch(m) and "held" in m and h in m and "released" not in m]
    assert f"from {flow.pnode.id}" in held
    other = hook_params(flow, n=5)
    assert flow.lsp.hold.on_htlc(other, answers.append)
    flow.lsp.hold.fail(bytes.fromhex(other["htlc"]["payment_hash"]))
    assert changes(logs, other["htlc"]["payment_hash"]) == [("hold", "held"), ("hold", "failed")]
    assert info_lines(logs)[-1].endswith("failed (failed_by_operator)")


def test_onion_messages_log_nothing_at_info(tmp_path, logs):
    """The recipient's handshake with its server, a payer's invoice_request
    answered with the static invoice while the recipient sleeps, and a
    held_htlc_available queued for it: debug lines and counters only."""
    flow = Flow(tmp_path)
    flow.setserver()
    offer = flow.offer()  # offer_paths_request, offer_paths, serve_static_invoice, static_invoice_persisted
    flow.net.disconnect(flow.lnode, flow.rnode)
    _req, onion = flow.payer.invoice_request(offer, amount=50_000)
    flow.send(onion)
    static = flow.inbox.take()
    assert static.static_invoice
    inv = StaticInvoice.decode(static.static_invoice)
    held = OnionMessagePayload(held_htlc_available=HeldHtlcAvailable(), reply_path=flow.payer.reply_path())
    flow.send(flow.payer.onion_to(inv.invoice_held_htlc_available_paths[0], held))
    flow.lsp.drain()
    assert flow.lsp.store.mailbox_totals(flow.rnode.id)[0] >= 1
    assert [r.getMessage() for r in logs.records if r.levelno >= logging.INFO] == []
    assert [line for node in (flow.lsp, flow.r) for line in node.logs if not line.startswith("debug:")] == []
    assert any(r.levelno == logging.DEBUG for r in logs.records)  # they are there, at debug


def test_every_payer_state_is_exported_from_zero():
    from asyncpay import payment_log
    from asyncpay.payer import records

    states = {v for k, v in vars(records).items() if k.isupper() and isinstance(v, str) and k in (
        "REQUESTING", "STATIC", "AWAITING_RELEASE", "PAYING", "HELD_AT_LSP", "COMPLETE", "FAILED")}
    assert set(payment_log.STATES[payment_log.PAYER]) == states
    fresh = payment_log.StateChanges()
    assert fresh.snapshot()[("hold", "failed")] == 0 and fresh.snapshot()[("payer", "complete")] == 0
    fresh.add("hold", "failed")
    assert fresh.snapshot()[("hold", "failed")] == 1
