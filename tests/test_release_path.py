"""The recipient's release path (issue 15): a held_htlc_available is
answered without asking lightningd for a snapshot and without a write before the
release is sent; the counter reaches the disk on the next flush."""

from __future__ import annotations

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
