"""The counts a hold's limits are read from (asyncpay/held_counts.py) always
equal a count of the held rows: through any sequence of writes, rollbacks
included, on both backends, and when an older database gets the counts
table by its migration."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncpay.held_counts import CHANNEL, PEER, TOTAL, incoming_channel
from asyncpay.hold import records as hold_records
from asyncpay.hold.records import HeldRow, HoldRecords
from asyncpay.lsps import wake_hold
from asyncpay.lsps.config import Lsps5Config
from asyncpay.lsps.wake_hold import WakeHolder, WakeRow
from asyncpay.store import Store

NOW = 1_800_000_000


class Rollback(Exception):
    pass


def counted(store: Store, table: str) -> dict[tuple[str, str], tuple[int, int]]:
    """The counts as a count of the rows would give them."""
    out: dict[tuple[str, str], list[int]] = {}
    for key, peer, amount in store.conn.execute(
            f"SELECT key, peer_id, amount_msat FROM {table} WHERE state = 'held'").fetchall():
        for scope in ((PEER, peer), (TOTAL, ""), (CHANNEL, incoming_channel(key))):
            entry = out.setdefault(scope, [0, 0])
            entry[0] += 1
            entry[1] += amount
    return {k: tuple(v) for k, v in out.items()}


def kept(store: Store, table: str, by_channel: bool = True) -> dict[tuple[str, str], tuple[int, int]]:
    rows = store.conn.execute(f"SELECT scope, id, held, amount_msat FROM {table}").fetchall()
    out = {(s, i): (n, a) for s, i, n, a in rows if not (s == TOTAL and n == 0)}
    assert all(n > 0 for (s, _), (n, _) in out.items() if s != TOTAL)  # no empty peer or channel row is kept
    return out


@pytest.fixture
def store(backend_store):
    return backend_store


OPS = st.lists(st.tuples(st.integers(0, 7), st.sampled_from(["held", "released", "failed"]),
                         st.sampled_from(["alice", "bob", "carol"]), st.integers(1, 9), st.booleans()),
               max_size=30)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(ops=OPS)
def test_counts_follow_the_rows_through_any_writes_and_rollbacks(store, ops):
    wake = WakeHolder(store, Lsps5Config())
    store.conn.execute("DELETE FROM lsps5_wake_htlcs")
    store.conn.execute("DELETE FROM lsps5_wake_counts")
    for i, state, peer, amount, rolled_back in ops:
        row = WakeRow(f"{i % 3}x1x1/{i}", peer, bytes(32), amount, 900, 800, NOW, NOW + 60, state)
        if rolled_back:
            with pytest.raises(Rollback), store.tx():
                wake.rows.put(row)
                raise Rollback
        else:
            wake.rows.put(row)
        assert kept(store, "lsps5_wake_counts") == counted(store, "lsps5_wake_htlcs")
    held = counted(store, "lsps5_wake_htlcs")
    assert wake.count_held() == held.get((TOTAL, ""), (0, 0))[0]
    for peer in ("alice", "bob", "carol"):
        assert wake.count_held(peer) == held.get((PEER, peer), (0, 0))[0]


def test_an_older_database_gets_its_counts_from_its_rows(store):
    """The hold and wake-hold tables as the previous versions left them: the
    migration fills the counts from the rows already held."""
    store.migrate_component("hold", hold_records.MIGRATIONS[:3])
    store.migrate_component("lsps5_wake", wake_hold.MIGRATIONS[:1])
    for i in range(12):
        state = "held" if i % 4 else "forwarded"
        store.conn.execute("INSERT INTO held_htlcs (key, payment_hash, amount_msat, cltv_expiry, outgoing_cltv, "
                           "peer_id, payload, state, since, updated_at) VALUES (?, ?, ?, 900, 800, ?, ?, ?, ?, ?)",
                           (f"1x1x1/{i}", os.urandom(32), 1000 + i, f"peer{i % 2}", b"p", state, NOW, NOW))
        store.conn.execute("INSERT INTO lsps5_wake_htlcs (key, peer_id, payment_hash, amount_msat, cltv_expiry, "
                           "outgoing_cltv, since, deadline, state, updated_at) VALUES (?, ?, ?, ?, 900, 800, ?, ?, "
                           "?, ?)", (f"{i % 3}x1x1/{i}", f"client{i % 2}", os.urandom(32), 10 + i, NOW, NOW + 60,
                                     state, NOW))
    holds, wake = HoldRecords(store), WakeHolder(store, Lsps5Config())
    assert holds.count_held() == 9 and holds.count_held("peer0") == 3 and holds.count_held("peer1") == 6
    assert kept(store, "lsps5_wake_counts") == counted(store, "lsps5_wake_htlcs")
    assert wake.count_held() == 9
    holds.put(HeldRow("1x1x1/0", bytes(32), 1000, 900, 800, "peer0", b"p", state="held"))  # and they go on
    assert holds.count_held("peer0") == 4 and holds.count_held() == 10
