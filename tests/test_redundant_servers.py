"""One async offer, two static invoice servers (issue 22) on the emulated
CLN: P (asyncpay payer) with channels to L1 and L2, R (asyncpay wallet)
with channels from both, R's offer registered at both. L1 goes away for
good, R sleeps, P pays, R wakes reaching L2 only: the payment completes."""

from __future__ import annotations

import dataclasses
import hashlib
import time

import pytest

from asyncpay.cln.node import Node
from asyncpay.cln.rpc_recipient import servers_view
from asyncpay.endpoint import Dropped
from asyncpay.lsp import LspConfig
from asyncpay.offers import Offer, StaticInvoice
from asyncpay.payer import PayerConfig
from asyncpay.recipient import RecipientConfig
from asyncpay.recipient.recipient import MAX_SERVERS
from emulated_cln import Network
from test_payer_flow import wait
from test_recipient_flow import attach


class Redundant:
    def __init__(self, tmp_path) -> None:
        self.net = net = Network()
        self.l1node = net.node(bytes([0x41]) * 32, "l1")
        self.l2node = net.node(bytes([0x42]) * 32, "l2")
        self.rnode = net.node(bytes([0x43]) * 32, "recipient")
        self.pnode = net.node(bytes([0x44]) * 32, "payer")
        for lsp in (self.l1node, self.l2node):
            net.connect(lsp, self.rnode)
            net.connect(lsp, self.pnode)
        self.l1, self.l2 = attach(self.l1node, tmp_path), attach(self.l2node, tmp_path)
        self.r = attach(self.rnode, tmp_path)
        self.p = Node(self.pnode.rpc, lambda msg, level="info": None, str(tmp_path / "payer.sqlite3"), LspConfig(),
                      RecipientConfig(), PayerConfig(payer_invoice_grace=1))
        self.pnode.listeners.append(lambda topic, params: topic == "onionmessage_forward_fail"
                                    and self.p.on_forward_fail(params["onionmessage_forward_fail"]))
        self.pnode.inject_wait = 10

    def paths_of(self, lsp: Node, node) -> list:
        return lsp.lsp.server.recipient_paths(self.rnode.id, 1, 3600, int(time.time()))

    def register_both(self) -> list[bytes]:
        paths = self.paths_of(self.l1, self.l1node) + self.paths_of(self.l2, self.l2node)
        return self.r.recipient.core.set_server(paths, int(time.time()))


@pytest.fixture
def red(tmp_path):
    return Redundant(tmp_path)


def test_one_offer_reaches_both_servers_and_each_confirms(red):
    assert red.register_both() == [red.l1node.node_id, red.l2node.node_id]
    row = red.r.recipient.offer(0, "coffee", None, 2)
    assert row.state == "ready"
    offer = Offer.from_string(row.bolt12)
    assert {p.introduction.node_id for p in offer.offer_paths} == {red.l1node.node_id, red.l2node.node_id}
    wait(lambda: all(s["confirmed"] for s in servers_view(red.r.recipient.core.records.servers_of(0))))
    assert {s["id"] for s in servers_view(red.r.recipient.core.records.servers_of(0))} == \
        {red.l1node.id, red.l2node.id}
    for lsp in (red.l1, red.l2):  # each server keeps the same static invoice
        [stored] = lsp.store.list_invoices()
        inv = StaticInvoice.decode(stored["invoice"] if isinstance(stored, dict) else stored.invoice)
        # payment and held paths through each LSP the wallet has a channel with
        assert {p.introduction.node_id for p in inv.invoice_paths} == {red.l1node.node_id, red.l2node.node_id}
        assert {p.introduction.node_id for p in inv.invoice_held_htlc_available_paths} == \
            {red.l1node.node_id, red.l2node.node_id}


def test_paths_from_one_server_replace_that_servers_paths_only(red):
    red.register_both()
    again = red.paths_of(red.l2, red.l2node) + red.paths_of(red.l2, red.l2node)
    assert red.r.recipient.core.set_server(again, int(time.time())) == [red.l1node.node_id, red.l2node.node_id]
    servers = red.r.recipient.core.servers()
    assert len(servers[red.l1node.node_id]) == 1 and [p.encode() for p in servers[red.l2node.node_id]] == \
        [p.encode() for p in again]


def test_more_servers_than_the_bound_are_refused_and_nothing_is_lost(red, tmp_path):
    red.register_both()
    before = red.r.recipient.core.records.server()
    others = []
    for i in range(MAX_SERVERS - 1):
        n = red.net.node(bytes([0x50 + i]) * 32, f"x{i}")
        red.net.connect(n, red.rnode)
        others += attach(n, tmp_path).lsp.server.recipient_paths(red.rnode.id, 1, 3600, int(time.time()))
    with pytest.raises(ValueError, match=f"at most {MAX_SERVERS}"):
        red.r.recipient.core.set_server(others, int(time.time()))
    assert red.r.recipient.core.records.server() == before


def test_the_payment_completes_through_the_server_left_when_the_other_is_gone(red):
    red.register_both()
    offer = red.r.recipient.offer(0, "coffee", None, 2).bolt12
    for peer in (red.rnode, red.pnode):  # L1 is gone for good
        red.net.disconnect(red.l1node, peer)
    red.net.disconnect(red.l2node, red.rnode)  # R sleeps
    res = red.p.payer.pay(offer, 30_000, None, 0)
    wait(lambda: red.p.payer.core.records.get(res["id"]).state == "static")  # L2 answered
    red.p.payer.tick(int(time.time()) + 2)  # held_htlc_available: over L1's path it cannot go, L2 keeps it
    assert red.l2.store.mailbox_totals(red.rnode.id)[0] >= 1
    red.net.connect(red.l2node, red.rnode)  # R wakes, reaching L2 only
    red.l2.lsp.wait_flushes()
    wait(lambda: red.p.payer.core.records.get(res["id"]).state in ("complete", "failed"))
    done = red.p.payer.core.records.get(res["id"]).view()
    assert done["status"] == "complete", done
    assert hashlib.sha256(bytes.fromhex(done["payment_preimage"])).hexdigest() == done["payment_hash"]
    [got] = red.r.recipient.core.records.payments()
    assert got["payment_hash"] == done["payment_hash"]


def test_a_server_stores_an_invoice_carrying_other_servers_paths_but_not_one_without_its_own(red):
    red.register_both()
    red.r.recipient.offer(0, "coffee", None, 2)
    assert len(red.l1.store.list_invoices()) == 1
    with pytest.raises(Dropped):
        red.r.recipient.core._serve(red.r.recipient.core.records.offer(0), int(time.time()),
                                    red.r.recipient.snapshot(), only="ff" * 33)


def _stored(lsp: Node) -> StaticInvoice:
    [row] = lsp.store.list_invoices()
    return StaticInvoice.decode(row["invoice"] if isinstance(row, dict) else row.invoice)


def test_a_closed_channel_refreshes_the_invoices_and_an_older_invoice_still_pays(red):
    """Issue 22 part 3: R's channel with L1 closes while P waits on the static
    invoice issued before (paths through L1 and L2). Both servers get a
    fresh invoice at once, with L2's path only; P's payment goes through
    the path that still works."""
    red.register_both()
    offer = red.r.recipient.offer(0, "coffee", None, 2).bolt12
    red.net.disconnect(red.l1node, red.rnode)
    red.net.disconnect(red.l2node, red.rnode)  # R sleeps
    res = red.p.payer.pay(offer, 30_000, None, 0)
    wait(lambda: red.p.payer.core.records.get(res["id"]).state == "static")
    old = StaticInvoice.decode(red.p.payer.core.records.get(res["id"]).invoice)
    assert len(old.invoice_paths) == 2
    red.p.payer.tick(int(time.time()) + 2)  # held_htlc_available waits at both servers
    del red.l1node.channels[red.rnode.id], red.rnode.channels[red.l1node.id]  # the channel closes
    red.net.connect(red.l2node, red.rnode)  # R wakes (reaching L2), sees one channel fewer
    red.l2.lsp.wait_flushes()
    red.r.recipient.refresh()  # what the channel_state_changed notification starts
    wait(lambda: len(_stored(red.l2).invoice_paths) == 1)
    assert _stored(red.l2).invoice_paths[0].introduction.node_id == red.l2node.node_id
    wait(lambda: red.p.payer.core.records.get(res["id"]).state in ("complete", "failed"))
    assert red.p.payer.core.records.get(res["id"]).view()["status"] == "complete"


def test_a_fee_change_waits_for_the_reserve_interval_but_a_closed_channel_does_not(red):
    red.register_both()
    red.r.recipient.offer(0, "coffee", None, 2)
    first = _stored(red.l2).encode()
    red.l1node.policy = dataclasses.replace(red.l1node.policy, fee_base_msat=2000)  # L1's update towards R
    red.r.recipient.refresh()
    assert _stored(red.l2).encode() == first
    del red.l1node.channels[red.rnode.id], red.rnode.channels[red.l1node.id]
    red.r.recipient.refresh()
    wait(lambda: _stored(red.l2).encode() != first)
    assert len(_stored(red.l2).invoice_paths) == 1


def test_a_server_that_never_answers_delays_the_offer_only_until_the_wait(red, monkeypatch):
    """L1 is down when R asks for offer paths: the offer is built with L2's
    paths alone once SERVERS_WAIT seconds have passed."""
    import asyncpay.cln.recipient as adapter
    import asyncpay.recipient.recipient as core
    monkeypatch.setattr(adapter, "SERVERS_WAIT", 1)
    monkeypatch.setattr(core, "SERVERS_WAIT", 1)
    red.register_both()
    for peer in (red.rnode, red.pnode):  # L1 is down
        red.net.disconnect(red.l1node, peer)
    red.r.recipient.offer(0, "coffee", None, 0)
    wait(lambda: (row := red.r.recipient.core.records.offer(0)) is not None and row.bolt12 is not None)
    row = red.r.recipient.core.records.offer(0)
    assert [p.introduction.node_id for p in Offer.from_string(row.bolt12).offer_paths] == [red.l2node.node_id]
