"""The LSP adapter over the emulated CLN: the wake-up notification and the
channel-peer cache (issue 9)."""

from __future__ import annotations

from test_lsp_flow import net, queue_for  # noqa: F401  (the fixture)
from wallet import Wallet


def test_mailbox_queued_wakes_the_wallet_once_per_interval(net):  # noqa: F811
    net_, lsp, rnode, pnode, asyncpay = net
    sent: list[tuple[str, dict]] = []
    asyncpay.notify = lambda topic, params: sent.append((topic, params))
    net_.disconnect(lsp, rnode)
    queue_for(lsp, rnode, pnode, Wallet(rnode.node_id), 3)
    assert asyncpay.store.mailbox_totals(rnode.id)[0] == 3
    # Three messages within the interval: one notification, sent after the
    # first message was on disk.
    assert [t for t, _ in sent] == ["asyncpay_mailbox_queued"]
    params = sent[0][1]
    assert params["peer_id"] == rnode.id and params["messages"] == 1 and params["bytes"] > 0
    assert isinstance(params["oldest"], int)
    # Once the interval has passed, the next message notifies again with the totals.
    asyncpay.lsp.mailbox.last_wakeup[rnode.id] -= asyncpay.config.mailbox_notify_interval
    queue_for(lsp, rnode, pnode, Wallet(rnode.node_id), 1)
    assert len(sent) == 2 and sent[1][1]["messages"] == 4


def test_channel_peers_are_cached_until_a_channel_event(net):  # noqa: F811
    net_, lsp, rnode, pnode, asyncpay = net
    calls = []
    real = lsp.rpc.call

    def counting(method, params=None):
        calls.append(method)
        return real(method, params)

    lsp.rpc.call = counting
    net_.disconnect(lsp, rnode)
    asyncpay.channels_changed()
    queue_for(lsp, rnode, pnode, Wallet(rnode.node_id), 5)
    assert asyncpay.store.mailbox_totals(rnode.id)[0] == 5
    assert calls.count("listpeerchannels") == 1  # not one per message
    asyncpay.channels_changed()  # e.g. channel_state_changed
    queue_for(lsp, rnode, pnode, Wallet(rnode.node_id), 1)
    assert calls.count("listpeerchannels") == 2
