"""The recipient's offers (issue 6): what they carry, compared with LDK's
bytes, and how they stay fresh without the user doing anything."""

from __future__ import annotations

import dataclasses
import time

from asyncpay.crypto import pubkey_of
from asyncpay.offers import Offer, StaticInvoice
from asyncpay.recipient import Snapshot
from asyncpay.recipient.recipient import offer_key
from asyncpay.recipient.records import MIGRATIONS, RecipientRecords, offer_id_of
from asyncpay.store import Store
from conftest import load_vector
from test_recipient_flow import Flow

LDK = load_vector("ldk/async-payments.json")


def served(flow) -> StaticInvoice:
    [row] = flow.lsp.store.list_invoices(flow.rnode.id)
    return StaticInvoice.decode(row["invoice"])


def test_offer_and_static_invoice_carry_ldks_tlv_set(tmp_path):
    flow = Flow(tmp_path)
    flow.setserver()
    offer = flow.offer(description="coffee", amount_msat=10_000)
    assert [t for t, _ in offer.to_records()] == LDK["offer"]["tlv_types"]
    inv = served(flow)
    ours = [t for t, _ in inv.to_records()]
    full, minimal = set(LDK["static_invoice"]["tlv_types"]), set(LDK["static_invoice_minimal"]["tlv_types"])
    assert minimal <= set(ours) <= full, ours
    inv.validate(int(time.time()))
    assert inv.signature_valid(offer.offer_issuer_id)
    # The issuer key is derived, never stored: the base secret and the nonce give it back.
    row = flow.r.recipient.core.records.offer(0)
    assert pubkey_of(offer_key(flow.r.recipient.core.key_base, row.nonce)) == offer.offer_issuer_id
    assert offer_key(flow.r.recipient.core.key_base, row.nonce).hex() not in repr(row)


def test_payment_path_uses_the_lsp_channel_and_its_fees(tmp_path):
    flow = Flow(tmp_path)
    flow.setserver()
    flow.offer()
    inv = served(flow)
    [info] = inv.invoice_blindedpay
    pol = flow.lnode.policy
    assert (info.fee_base_msat, info.fee_proportional_millionths) == (pol.fee_base_msat,
                                                                      pol.fee_proportional_millionths)
    assert info.cltv_expiry_delta == pol.cltv_expiry_delta + flow.r.recipient.config.recipient_final_cltv_delta
    assert inv.invoice_paths[0].introduction.node_id == flow.lnode.node_id
    assert inv.invoice_held_htlc_available_paths[0].introduction.node_id == flow.lnode.node_id


def test_same_offer_string_across_refreshes_and_restarts(tmp_path):
    flow = Flow(tmp_path)
    flow.setserver()
    offer = flow.offer()
    core = flow.r.recipient.core
    first = served(flow)
    # A forced refresh (start) re-serves a new invoice for the same offer.
    snap = flow.r.recipient.snapshot()
    flow.r.perform(core.refresh(int(time.time()) + 5, snap, force=True))
    second = served(flow)
    assert second.encode() != first.encode() and second.offer().encode() == offer.encode()
    # Asking again gives the same offer, without a new handshake.
    assert core.request_offer(0, "coffee", None, int(time.time())) == []
    assert flow.offer().encode() == offer.encode()


def test_channel_change_reissues_the_static_invoice(tmp_path):
    flow = Flow(tmp_path)
    flow.setserver()
    flow.offer()
    core = flow.r.recipient.core
    snap = flow.r.recipient.snapshot()
    assert core.refresh(int(time.time()), snap) == []  # nothing changed: nothing sent
    flow.lnode.policy = dataclasses.replace(flow.lnode.policy, fee_base_msat=2_000)
    later = int(time.time()) + flow.r.recipient.config.recipient_reserve_interval
    flow.r.perform(core.refresh(later, flow.r.recipient.snapshot()))
    assert served(flow).invoice_blindedpay[0].fee_base_msat == 2_000


def test_flapping_lsp_connection_does_not_grow_our_contexts(tmp_path):
    # Every re-serve mints contexts that live as long as the invoice: reconnects
    # and fee changes within recipient_reserve_interval of the last serve send nothing.
    flow = Flow(tmp_path)
    flow.setserver()
    flow.offer()
    core, cfg = flow.r.recipient.core, flow.r.recipient.config
    contexts = flow.r.store.conn.execute("SELECT COUNT(*) FROM path_contexts").fetchone()[0]
    now = int(time.time())
    for i in range(50):
        flow.lnode.policy = dataclasses.replace(flow.lnode.policy, fee_base_msat=1_000 + i)
        assert core.refresh(now + i, flow.r.recipient.snapshot(), reconnected=True) == []
    assert flow.r.store.conn.execute("SELECT COUNT(*) FROM path_contexts").fetchone()[0] == contexts
    # Past the interval the change is served once.
    actions = core.refresh(now + cfg.recipient_reserve_interval, flow.r.recipient.snapshot(), reconnected=True)
    assert [a.purpose for a in actions] == ["serve_static_invoice"]


def test_invoice_renewed_before_it_expires(tmp_path):
    flow = Flow(tmp_path)
    flow.setserver()
    flow.offer()
    core, cfg = flow.r.recipient.core, flow.r.recipient.config
    row = core.records.offer(0)
    later = row.invoice_expires_at - cfg.recipient_refresh_margin + 1
    actions = core.refresh(later, flow.r.recipient.snapshot())
    assert [a.purpose for a in actions] == ["serve_static_invoice"]


def test_offer_paths_renewed_before_they_expire(tmp_path):
    flow = Flow(tmp_path)
    flow.setserver()
    offer = flow.offer()
    core, cfg = flow.r.recipient.core, flow.r.recipient.config
    row = core.records.offer(0)
    assert row.paths_expires_at is not None
    later = row.paths_expires_at - cfg.recipient_refresh_margin + 1
    actions = core.refresh(later, flow.r.recipient.snapshot())
    assert [a.purpose for a in actions] == ["offer_paths_request"]
    # Until the new paths come, the old offer is kept.
    assert Offer.from_string(core.records.offer(0).bolt12).encode() == offer.encode()


def test_no_channel_no_invoice(tmp_path):
    flow = Flow(tmp_path)
    flow.setserver()
    flow.offer()
    core = flow.r.recipient.core
    later = int(time.time()) + flow.r.recipient.config.recipient_reserve_interval
    assert core.refresh(later, Snapshot(None, flow.net.height), force=True) == []
    assert flow.r.store.counters()["dropped_no_lsp_channel"] == 1


def test_unpaid_invoices_are_forgotten(tmp_path):
    flow = Flow(tmp_path)
    flow.setserver()
    offer = flow.offer(amount_msat=1_000, description="x")
    for _ in range(2):
        _, onion = flow.payer.invoice_request(offer)
        flow.send(onion)
    records = flow.r.recipient.core.records
    count = "SELECT COUNT(*) FROM recipient_payments WHERE status = 'expected'"
    assert flow.r.store.conn.execute(count).fetchone()[0] == 2
    flow.r.recipient.core.refresh(int(time.time()) + 2 * 86400, flow.r.recipient.snapshot())
    assert flow.r.store.conn.execute(count).fetchone()[0] == 0
    assert records.payments() == []


def test_upgrade_keeps_offers_payable_and_history(tmp_path):
    """A database from before the claim tables: migrating records the slot's offer as issued
    (so its contexts, named by slot, and new ones, named by offer, both pay) and keeps payments."""
    store = Store(str(tmp_path / "old.sqlite3"))
    store.migrate_component("recipient", MIGRATIONS[:1])
    offer = Offer(offer_description="old", offer_issuer_id=pubkey_of(bytes([7]) * 32))
    store.conn.execute("INSERT INTO recipient_offers (slot, state, nonce, offer, bolt12, invoice_expires_at, "
                       "created_at, updated_at) VALUES (0, 'ready', ?, ?, ?, ?, 1, 1)",
                       (bytes(16), offer.encode(), offer.to_string(), 2_000_000_000))
    store.conn.execute("INSERT INTO recipient_payments (payment_hash, payment_preimage, amount_msat, slot, kind, "
                       "status, received_at, created_at) VALUES (?, ?, 5, 0, 'static', 'received', 3, 3)",
                       (bytes(32), bytes(32)))
    records = RecipientRecords(store)
    issued = records.issued_offer(offer_id_of(offer.encode()))
    assert issued is not None and issued.slot == 0 and issued.expires_at == 2_000_000_000 + 86400
    [pay] = records.payments()
    assert pay["bolt12"] == offer.to_string() and pay["amount_msat"] == 5
    assert records.pending_counts() == (0, 0)


def test_start_reserve_waits_for_the_lsp_connection(tmp_path):
    # Our serve_static_invoice is not kept for an offline LSP: the re-serve of our
    # start waits for the connection, and then goes with the start's (unlimited) rule.
    flow = Flow(tmp_path)
    flow.setserver()
    flow.offer()
    role = flow.r.recipient
    first = served(flow)
    flow.net.disconnect(flow.lnode, flow.rnode)
    role._start_serve_due = True  # as after a restart
    role.refresh_due()
    assert role._start_serve_due and served(flow).encode() == first.encode()
    flow.net.connect(flow.lnode, flow.rnode)
    assert not role._start_serve_due  # the reconnect carries it out
    role.refresh(force=True)
    assert served(flow).encode() != first.encode()
