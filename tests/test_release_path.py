"""The recipient's release path (issue 15): a held_htlc_available is
answered without asking lightningd for a snapshot and without a write before the
release is sent; the counter reaches the disk on the next flush."""

from __future__ import annotations

import time

from asyncpay.offers import StaticInvoice
from asyncpay.onion_message import HeldHtlcAvailable, OnionMessagePayload
from test_recipient_flow import Flow


def test_release_asks_lightningd_nothing_and_writes_nothing_first(tmp_path):
    flow = Flow(tmp_path)
    flow.setserver()
    flow.offer()
    static = StaticInvoice.decode(flow.lsp.store.list_invoices(flow.rnode.id)[0]["invoice"])
    flow.r.books.start(3600)  # as Node.start does; only explicit flushes write
    calls: list[str] = []
    real_call = flow.r.rpc.call

    def call(method, params=None):
        calls.append(method)
        return real_call(method, params)

    flow.r.rpc.call = call
    seen_at_send: list[dict] = []
    real_inject = flow.r.inject

    def inject(action):
        if action.purpose == "release_held_htlc":
            seen_at_send.append(flow.r.store.counters())
        return real_inject(action)

    flow.r.inject = inject
    held = OnionMessagePayload(held_htlc_available=HeldHtlcAvailable(), reply_path=flow.payer.reply_path())
    flow.send(flow.payer.onion_to(static.invoice_held_htlc_available_paths[0], held))
    assert any(r.release_held_htlc is not None for r in (flow.inbox.take() for _ in range(len(flow.inbox.items))))
    # No snapshot (getinfo, listpeerchannels); only the walk to the payer's
    # reply path, which is no peer of ours (route_to, cached, before the lock).
    assert "getinfo" not in calls and "listpeerchannels" not in calls, calls
    assert len(seen_at_send) == 1 and "recipient_releases" not in seen_at_send[0]
    flow.r.books.flush()
    assert flow.r.store.counters()["recipient_releases"] == 1
    flow.r.books.stop()


def test_hold_release_is_on_disk_before_continue(tmp_path):
    """HoldRole.on_message: the released and forwarded marks are one commit,
    visible to another connection when ``continue`` is handed to lightningd."""
    import os
    import threading
    import types

    from asyncpay.bookkeeping import Bookkeeping
    from asyncpay.cln.hold import HoldRole
    from asyncpay.crypto import pubkey_of
    from asyncpay.endpoint import Delivered, Endpoint
    from asyncpay.hold import HoldConfig
    from asyncpay.hold.holder import RELEASE
    from asyncpay.hold.records import HeldRow
    from asyncpay.onion_message import ReleaseHeldHtlc
    from asyncpay.payment import HopPayload
    from asyncpay.store import Store
    from pg_cluster import other_connection

    height, now = 800_000, int(time.time())
    db = str(tmp_path / "hold.sqlite3")
    store = Store(db)
    node = types.SimpleNamespace(
        store=store, endpoint=Endpoint(store, pubkey_of(bytes([1]) * 32), os.urandom(32), os.urandom),
        lock=threading.RLock(), log=lambda *a, **k: None, perform=lambda actions: None,
        resolve_intro=lambda i: i.node_id, config_for=lambda cls: HoldConfig(), cltv_delta=34,
        height=height, current_height=lambda: height, saw_height=lambda h: None,
        rpc=types.SimpleNamespace(call=lambda *a, **k: {"configs": {"cltv-delta": {"value_int": 34}}}))
    node.books = Bookkeeping(store, node.lock)
    node.books.start(3600)
    role = HoldRole(node)
    payload = HopPayload(amt_to_forward=10_000, outgoing_cltv_value=height + 500, short_channel_id=7).encode()
    role.core.records.put(HeldRow("1x1x1/0", os.urandom(32), 10_100, height + 540, height + 500, "02" + "00" * 32,
                                  payload, since=now, updated_at=now))
    seen: list[tuple] = []

    def respond(answer):
        other = other_connection(store)  # SQLite or PostgreSQL (tests/pg_cluster.py)
        try:
            seen.append((answer["result"], other.execute("SELECT state FROM held_htlcs WHERE key = '1x1x1/0'")
                         .fetchone()[0]))
        finally:
            other.close()

    role.waiting.open("1x1x1/0", respond, role.core.answer_by(role.core.records.get("1x1x1/0")))
    role.on_message(Delivered(RELEASE, "1x1x1/0", None, OnionMessagePayload(release_held_htlc=ReleaseHeldHtlc()),
                              b""), now)
    assert seen == [("continue", "forwarded")] and not role.waiting
    node.books.stop()
    store.close()
