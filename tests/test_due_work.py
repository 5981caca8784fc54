"""A timer pass or a block's work costs what is due, not what is stored
(issue 24): every statement such a pass runs is served by an index (no table
of state read in full, on SQLite and on PostgreSQL), and with many rows far
from due a pass reads none of them. Benchmarks of the same (bench/bench_scale.py)
give the figures; these tests keep the structure."""

from __future__ import annotations

import os
import time

import pytest

from asyncpay.crypto import pubkey_of
from asyncpay.endpoint import Endpoint
from asyncpay.hold import HoldConfig, Holder, HtlcToHold
from asyncpay.hold.records import HeldRow
from asyncpay.lsp import LspConfig, Mailbox
from asyncpay.lsps.config import Lsps5Config
from asyncpay.lsps.wake_hold import WakeCandidate, WakeHolder, WakeRow
from asyncpay.lsps.webhooks import ClientRow, WebhookService
from asyncpay.payer import Payer, PayerConfig
from asyncpay.payer.records import AWAITING_RELEASE, COMPLETE, PAYING, REQUESTING, PaymentRow
from asyncpay.payment.hold_request import HoldRequest
from asyncpay.recipient.claim import Claimer
from asyncpay.recipient.config import RecipientConfig
from asyncpay.recipient.records import Claim, Part
from asyncpay.store import MAILBOX_MIGRATIONS, Store
from query_plans import Recorder, full_scans

NOW, HEIGHT = 1_800_000_000, 800_000
FAR = NOW + 10**6
# The tables that grow with the LSP's load (the small ones: counters, versions, a recipient's own slots).
STATE = {"held_htlcs", "lsps5_wake_htlcs", "mailbox", "path_contexts", "issued_offer_paths", "invoices",
         "payer_payments", "recipient_payments", "recipient_issued_offers", "recipient_claims", "recipient_parts",
         "hold_counts", "lsps5_wake_counts", "recipients", "lsps5_clients", "lsps5_webhooks", "lsps5_cooldowns"}


def scans(store: Store, recorder: Recorder) -> dict[str, set[str]]:
    """Statement -> the tables of state it reads in full (only those with any)."""
    out = {}
    for sql, args in recorder.statements:
        if sql.lstrip().upper().startswith(("SELECT", "DELETE", "UPDATE", "INSERT")):
            full = full_scans(store, sql, args) & STATE
            if full:
                out[sql] = full
    return out


@pytest.fixture
def store(backend_store):
    return backend_store


def test_query_plans_see_a_full_scan(store):
    """The checker itself: a statement no index serves is reported."""
    store.migrate_component("mailbox", MAILBOX_MIGRATIONS)
    assert full_scans(store, "SELECT id FROM mailbox WHERE attempts > ?", (3,)) == {"mailbox"}
    assert full_scans(store, "SELECT id FROM mailbox WHERE received_at < ?", (3,)) == set()


def payer_of(store: Store) -> Payer:
    endpoint = Endpoint(store, pubkey_of(bytes([3]) * 32), bytes([4]) * 32, os.urandom)
    return Payer(store, endpoint, PayerConfig(), bytes(32), lambda intro: None)


def test_payer_timer_reads_only_due_payments(store):
    payer = payer_of(store)
    with store.tx():
        for i in range(300):  # the history, and open payments whose time has not come
            state = (COMPLETE, REQUESTING, AWAITING_RELEASE, PAYING)[i % 4]
            payer.records.put(PaymentRow(f"p{i}", state, "static", "lno1", b"o", 1000, b"n", b"r",
                                         next_at=FAR, expires_at=FAR, created_at=NOW))
        # due: a request out of attempts (fails), a hold past its deadline (fails)
        payer.records.put(PaymentRow("due-1", REQUESTING, None, "lno1", b"o", 1000, b"n", b"r",
                                     attempts=99, next_at=NOW - 1, expires_at=FAR, created_at=NOW))
        payer.records.put(PaymentRow("due-2", AWAITING_RELEASE, "static", "lno1", b"o", 1000, b"n", b"r",
                                     next_at=FAR, expires_at=NOW, created_at=NOW + 1))
    with Recorder(store) as rec:
        actions, failed = payer.tick(NOW)
    assert [r.id for r in failed] == ["due-1", "due-2"] and not actions
    assert rec.rows_returned <= 4  # the two due rows (each read by one query), never the 300 others
    assert scans(store, rec) == {}


def test_mailbox_expiry_deletes_through_the_index_and_keeps_the_totals(store):
    mb = Mailbox(store, LspConfig(mailbox_max_messages=10**6, mailbox_max_messages_per_peer=10**6,
                                  mailbox_max_messages_per_source_per_peer=10**6, mailbox_intake_burst=10**6))
    peers = [f"02{i:064x}" for i in range(5)]
    for i in range(60):
        assert mb.intake(peers[i % 5], peers[(i + 1) % 5], os.urandom(33), os.urandom(40 + i), NOW + i) is None
    ttl = mb.config.mailbox_ttl
    with Recorder(store) as rec:
        assert mb.expire(NOW + ttl + 20) == 20
    assert scans(store, rec) == {}
    assert not rec.reading("GROUP BY")  # the totals follow the deleted rows: no recount
    for peer_id, sources in mb.per_source.items():  # the cached breakdowns followed too
        assert {s: (n, b) for s, n, b in store.mailbox_sources_of(peer_id)} == {s: tuple(v) for s, v in sources.items()}
    kept = (mb.total, mb.per_peer, mb.source_total)
    mb._load_totals()
    assert (mb.total, mb.per_peer, mb.source_total) == kept
    assert mb.total[0] == 40


def test_a_block_purges_contexts_through_their_expiry_index(store):
    with store.tx():
        for i in range(50):
            store.add_context(i.to_bytes(32, "big"), "lsp:serve", "r", 0, NOW + (i % 2) * FAR, NOW)
            store.add_issued_offer_path(i.to_bytes(40, "big"), "r", 0, NOW + (i % 2) * FAR)
    with Recorder(store) as rec:
        assert store.purge_contexts(NOW) == 25
    assert len(rec.statements) == 2 and scans(store, rec) == {}


def test_recipient_prunes_use_their_indexes(store):
    claimer = Claimer(store, RecipientConfig())
    records = claimer.records
    for i in range(40):
        records.expect_payment(i.to_bytes(32, "big"), bytes(32), 0, 1000, NOW - (i % 2) * 10 * 86400)
        records.received((1000 + i).to_bytes(32, "big"), bytes(32), 1000, 0, "static", NOW)
    with Recorder(store) as rec:
        assert records.prune_expected(NOW - 86400) == 20
        records.prune_offers(NOW)
    assert scans(store, rec) == {}


# -- holds: limits from maintained counts, timers through indexes ------------------


def hold_row(i: int, peer: str, **kw) -> HeldRow:
    fields = dict(cltv_expiry=HEIGHT + 5040, outgoing_cltv=HEIGHT + 5000, since=NOW, updated_at=NOW, deadline=FAR,
                  next_send_at=FAR, sends=1)
    return HeldRow(f"1x1x1/{i}", os.urandom(32), 10_000, peer_id=peer, payload=b"p", **{**fields, **kw})


def holder_of(store: Store) -> Holder:
    endpoint = Endpoint(store, pubkey_of(bytes([3]) * 32), bytes([4]) * 32, os.urandom)
    return Holder(store, endpoint, HoldConfig(hold_max_per_peer=1000, hold_max_total=10**6), lambda i: i.node_id)


def test_hold_timer_reads_only_due_holds(store):
    holder = holder_of(store)
    with store.tx():
        for i in range(200):
            holder.records.put(hold_row(i, f"peer{i % 7}"))
        holder.records.put(hold_row(900, "late", deadline=NOW - 1))  # past its hold_until
        holder.records.put(hold_row(901, "near", cltv_expiry=HEIGHT + 40, outgoing_cltv=HEIGHT + 5))  # budget
        holder.records.put(hold_row(902, "old", since=NOW - 10**6, deadline=0))  # held too long
    with Recorder(store) as rec:
        step = holder.tick(HEIGHT, NOW)
    assert sorted(a.key for a in step.answers) == ["1x1x1/900", "1x1x1/901", "1x1x1/902"]
    assert rec.rows_returned <= 3 * 5  # each due row, at most once per index it is due by
    assert scans(store, rec) == {}
    with Recorder(store) as rec:  # and once failed, a pass reads nothing
        assert not holder.tick(HEIGHT, NOW).answers
    assert rec.rows_returned == 0


def test_a_hold_with_no_send_left_stops_being_due(store):
    holder = holder_of(store)
    holder.records.put(hold_row(1, "p", next_send_at=NOW - 5, sends=99, request=None))
    holder.tick(HEIGHT, NOW)
    with Recorder(store) as rec:
        holder.tick(HEIGHT, NOW)
    assert rec.rows_returned == 0 and holder.records.get("1x1x1/1").state == "held"


def test_hold_decision_counts_nothing(store):
    holder = holder_of(store)
    with store.tx():
        for i in range(100):
            holder.records.put(hold_row(i, "busy"))
    h = HtlcToHold("2x2x2/1", os.urandom(32), 10_100, HEIGHT + 5040, HEIGHT + 5000, "busy", b"p",
                   HoldRequest(held_htlc_available_paths=[]), (True,))
    with Recorder(store) as rec:
        holder.accept(h, HEIGHT, NOW)
    assert not [q for q, _ in rec.statements if "COUNT(" in q.upper()]
    assert scans(store, rec) == {}
    assert holder.records.count_held("busy") == 100 and holder.records.count_held() == 100


def wake_row(i: int, peer: str, **kw) -> WakeRow:
    fields = dict(cltv_expiry=HEIGHT + 5040, outgoing_cltv=HEIGHT + 5000, since=NOW, deadline=FAR, updated_at=NOW)
    return WakeRow(f"{i % 3}x1x1/{i}", peer, os.urandom(32), 10_000, **{**fields, **kw})


def test_wake_hold_timer_reads_only_due_holds(store):
    wake = WakeHolder(store, Lsps5Config())
    with store.tx():
        for i in range(200):
            wake.rows.put(wake_row(i, f"client{i % 7}"))
        wake.rows.put(wake_row(900, "late", deadline=NOW))
        wake.rows.put(wake_row(901, "near", cltv_expiry=HEIGHT + 40, outgoing_cltv=HEIGHT + 5))
        wake.rows.put(wake_row(902, "gone", state="failed", updated_at=NOW - 10**6))  # answered long ago
    with Recorder(store) as rec:
        answers = wake.tick(HEIGHT, NOW)
    assert sorted(a.key for a in answers) == ["0x1x1/900", "1x1x1/901"]
    assert rec.rows_returned <= 2 * 3
    assert scans(store, rec) == {}
    assert wake.get("0x1x1/902") is None
    assert wake.count_held() == 200 and wake.count_held("client0") == 29


def test_recipient_mpp_timer_reads_only_due_sets(store):
    claimer = Claimer(store, RecipientConfig())
    records = claimer.records
    margin = claimer.margin
    with store.tx():
        for k in range(50):  # waiting, neither late nor near their expiry
            h = k.to_bytes(32, "big")
            records.claims.put(Claim(h, b"p", 0, "static", None, bytes(32), 2000, FAR, NOW))
            records.parts.put(Part("1x1x1", k, h, 1000, HEIGHT + 500, NOW))
        late, near = b"\xaa" * 32, b"\xbb" * 32
        records.claims.put(Claim(late, b"p", 0, "static", None, bytes(32), 2000, NOW, NOW))
        records.parts.put(Part("2x2x2", 1, late, 1000, HEIGHT + 500, NOW))
        records.claims.put(Claim(near, b"p", 0, "static", None, bytes(32), 2000, FAR, NOW))
        records.parts.put(Part("2x2x2", 2, near, 1000, HEIGHT + margin, NOW))
    with Recorder(store) as rec:
        failed = claimer.expire(HEIGHT, NOW)
    assert sorted((k, f.reason) for k, f in failed) == [(("2x2x2", 1), "mpp_timeout"),
                                                         (("2x2x2", 2), "mpp_expiry_near")]
    assert rec.rows_returned <= 2 * 2 + 2  # the two due sets and their parts
    assert scans(store, rec) == {}


def test_wake_hold_decision_counts_nothing(store):
    """Per client, per incoming channel and in all, and the amount held for the client: all from the counts."""
    wake = WakeHolder(store, Lsps5Config(wake_max_per_peer=1000, wake_max_total=10**6))
    with store.tx():
        for i in range(60):
            wake.rows.put(wake_row(i, "sleepy"))
    h = WakeCandidate("1x1x1/999", "sleepy", os.urandom(32), 10_000, HEIGHT + 5040, HEIGHT + 5000,
                      incoming_slots=10**4, receivable_msat=10**9)
    with Recorder(store) as rec:
        assert wake.accept(h, False, True, HEIGHT, NOW) is not None
    assert not [q for q, _ in rec.statements if "COUNT(" in q.upper() or "SUM(" in q.upper()]
    assert scans(store, rec) == {}
    assert wake.count_held_on_channel("1x1x1") == 21 and wake.held_amount("sleepy") == 61 * 10_000


def test_a_block_looks_only_at_clients_whose_channel_came_or_went(store):
    svc = WebhookService(store, Lsps5Config())
    peers = [f"02{i:064x}" for i in range(60)]
    with store.tx():
        for p in peers:
            svc.clients.put(ClientRow(p, NOW - 100, 0))
    assert svc.retain(set(peers), NOW) == []  # the first pass after a start looks at every client
    with Recorder(store) as rec:
        assert svc.retain(set(peers[1:]), NOW + 1) == []  # one channel gone
    assert rec.rows_returned == 1 and scans(store, rec) == {}
    assert svc.clients.get(peers[0]).no_channel_since == NOW + 1
    with Recorder(store) as rec:
        assert svc.retain(set(peers[1:]), NOW + 1 + svc.config.lsps5_retention) == [peers[0]]
    assert scans(store, rec) == {}


def test_the_hold_adapter_reads_its_open_calls_rows_only_after_a_store_failure(tmp_path, monkeypatch):
    """Each held HTLC has an open call: answering them from their rows on every pass
    would cost what is held. Only a pass after a failed commit does it."""
    from store_faults import LOCK_LOST, faulty
    from test_store_down import KEY, held

    flow, answers = held(tmp_path)
    role, seen = flow.lsp.hold, []
    real = role.core.tick
    monkeypatch.setattr(role.core, "tick", lambda h, n, open_calls=(): seen.append(set(open_calls)) or real(
        h, n, open_calls))
    now = int(time.time())
    role.tick(now)
    assert seen == [set()]
    faulty(flow.lsp.store).down = LOCK_LOST
    role.tick(now)  # fails: the next pass settles every open call
    faulty(flow.lsp.store).down = None
    role.tick(now)
    role.tick(now)
    assert seen == [set(), {KEY}, set()] and answers == []
