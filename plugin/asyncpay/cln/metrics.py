"""Prometheus metrics of a running node, served at ``/metrics`` by
prometheus-client's HTTP server when ``asyncpay-metrics-listen`` is set
(docs/metrics.md lists every metric).

A scrape never writes and never waits on the node: the figures come from
read-only aggregate queries on the store (its own connection lock, no node
lock; the counters' increments not yet written are added from
``Bookkeeping.pending_counts`` instead of being flushed), the in-memory
timings and payment state changes, and the two in-memory sizes (mailbox
flushes running, webhook calls queued) copied under the node lock only if
it is free within ``LOCK_WAIT`` seconds. Scrapes are serialised and one
taken within ``SNAPSHOT_MAX_AGE`` seconds of the last reuses its figures:
a scraper pointed at us in a loop costs the store at most one set of
queries a second. A store that cannot be read gives
``asyncpay_store_up 0`` (``asyncpay_store_lock_lost 1`` when another
process took the one-writer lock) and no store figures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..bookkeeping import Bookkeeping
from ..metrics import BUCKETS, HISTOGRAMS, TIMINGS, MetricsConfig, Timings, counter_families
from ..payment_log import STATE_CHANGES, StateChanges
from ..storage import StoreLocked
from ..store import Store

SNAPSHOT_MAX_AGE = 1.0  # seconds
LOCK_WAIT = 0.05  # seconds, at most, for the node lock (two in-memory sizes)
# One label per histogram that has one (its label values are our message purposes).
HISTOGRAM_LABELS = {"reply": "reply"}


class Observed(Protocol):
    """What a scrape reads of the node (``cln/node.py``'s ``Node``), never writing."""

    store: Store
    books: Bookkeeping
    lock: Any  # the node's re-entrant lock: waited for LOCK_WAIT at most
    lsp: Any  # .flushing: peers whose mail is being delivered
    lsps5: Any  # .outbox: webhook calls waiting

    def log(self, message: str, level: str = "info") -> None: ...


@dataclass
class Snapshot:
    taken_at: float = 0.0
    store_up: bool = False
    lock_lost: bool = False
    counters: dict[str, int] = field(default_factory=dict)
    held: tuple[int, int | None] = (0, None)  # (held HTLCs, since of the oldest)
    wake_held: tuple[int, int | None] = (0, None)
    mailbox_peers: list[dict] = field(default_factory=list)
    invoices: int = 0
    recipients: int = 0
    webhooks: int = 0
    flushing: frozenset[str] | None = None  # None: the node lock was busy
    webhook_queue: int | None = None


class NodeCollector(Collector):
    """Reads a node's figures for prometheus-client (``collect`` per scrape)."""

    def __init__(self, node: Observed, timings: Timings = TIMINGS, states: StateChanges = STATE_CHANGES,
                 clock=time.monotonic, wall=time.time) -> None:
        self.node, self.timings, self.states = node, timings, states
        self.clock, self.wall = clock, wall
        self._mu = threading.Lock()  # one scrape at a time
        self._last = Snapshot()

    def describe(self) -> list[Metric]:
        return []  # nothing read at registration

    # -- reading ---------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._mu:
            if self._last.taken_at and self.clock() - self._last.taken_at < SNAPSHOT_MAX_AGE:
                return self._last
            self._last = self._read()
            return self._last

    def _read(self) -> Snapshot:
        node, snap = self.node, Snapshot(taken_at=self.clock())
        store = node.store
        try:
            counters = store.counters()
            snap.held = _held(store, "held_htlcs")
            snap.wake_held = _held(store, "lsps5_wake_htlcs")
            snap.mailbox_peers = store.mailbox_peers()
            snap.invoices = store.row_count("invoices")
            snap.recipients = store.row_count("recipients")
            snap.webhooks = store.conn.execute("SELECT COUNT(*) FROM lsps5_webhooks").fetchone()[0]
            snap.store_up = True
            for name, by in node.books.pending_counts().items():
                counters[name] = counters.get(name, 0) + by
            snap.counters = counters
        except StoreLocked:
            snap.lock_lost = True
        except Exception as e:  # a StoreError, sqlite3's or psycopg's errors alike: the store is down
            node.log(f"metrics: cannot read the store: {e}", level="debug")
        if node.lock.acquire(timeout=LOCK_WAIT):
            try:
                snap.flushing = frozenset(node.lsp.flushing)
                snap.webhook_queue = len(node.lsps5.outbox)
            finally:
                node.lock.release()
        return snap

    # -- families ----------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        now = self.wall()
        yield _gauge("asyncpay_store_up", "1 when the last scrape could read asyncpay's store.", snap.store_up)
        yield _gauge("asyncpay_store_lock_lost",
                     "1 when another process holds the store's one-writer lock (asyncpay stopped writing).",
                     snap.lock_lost)
        # A store that cannot be read gives no counters (absent, not reset to what is pending).
        for metric, samples in (counter_families(snap.counters) if snap.store_up else {}).items():
            names = sorted({k for labels, _ in samples for k in labels})
            fam = CounterMetricFamily(metric, _counter_help(metric), labels=names)
            for labels, value in samples:
                fam.add_metric([labels.get(k, "") for k in names], value)
            yield fam
        fam = CounterMetricFamily("asyncpay_payment_state_changes",
                                  "Payment state changes since the plugin started, by role and new state "
                                  "(each is one info line of the log).", labels=["role", "state"])
        for (role, state), n in sorted(self.states.snapshot().items()):
            fam.add_metric([role, state], n)
        yield fam
        yield from self._histograms()
        if snap.store_up:
            yield from self._store_gauges(snap, now)
        if snap.flushing is not None:
            yield _gauge("asyncpay_mailbox_flushes", "Mailbox flushes running (peers connected, mail going out).",
                         len(snap.flushing))
        if snap.webhook_queue is not None:
            yield _gauge("asyncpay_webhook_calls_queued", "LSPS5 webhook calls waiting to be made.",
                         snap.webhook_queue)

    def _store_gauges(self, snap: Snapshot, now: float) -> Iterator[Metric]:
        for name, what, (count, since) in (("held_htlcs", "HTLCs held for a sleeping sender until their release",
                                            snap.held),
                                           ("wake_held_htlcs", "HTLCs held for an offline client to wake up (LSPS5)",
                                            snap.wake_held)):
            yield _gauge(f"asyncpay_{name}", f"{what}.", count)
            yield _gauge(f"asyncpay_{name}_oldest_age_seconds", f"Age of the oldest of the {what} (0: none).",
                         max(0.0, now - since) if since is not None else 0)
        flushing = snap.flushing or frozenset()
        by_state = {"sleeping": [0, 0], "flushing": [0, 0]}  # state -> [messages, peers]
        largest = oldest = 0
        total_bytes = 0
        for p in snap.mailbox_peers:
            state = by_state["flushing" if p["peer_id"] in flushing else "sleeping"]
            state[0] += p["messages"]
            state[1] += 1
            largest = max(largest, p["messages"])
            total_bytes += p["bytes"] or 0
            oldest = max(oldest, now - p["oldest_received_at"])
        msgs = GaugeMetricFamily("asyncpay_mailbox_messages",
                                 "Onion messages queued, by their peer's state: sleeping (offline) or flushing "
                                 "(connected, being delivered).", labels=["state"])
        peers = GaugeMetricFamily("asyncpay_mailbox_peers",
                                  "Peers with queued mail, by state; sleeping: wallets asleep with mail waiting.",
                                  labels=["state"])
        for state, (m, n) in by_state.items():
            msgs.add_metric([state], m)
            peers.add_metric([state], n)
        yield msgs
        yield peers
        yield _gauge("asyncpay_mailbox_bytes", "Bytes of onion messages queued.", total_bytes)
        yield _gauge("asyncpay_mailbox_peer_messages_max", "Messages queued for the peer with the most.", largest)
        yield _gauge("asyncpay_mailbox_oldest_age_seconds", "Age of the oldest queued message (0: none).", oldest)
        yield _gauge("asyncpay_static_invoices", "Static invoices stored for recipients.", snap.invoices)
        yield _gauge("asyncpay_recipients", "Recipients this static invoice server knows.", snap.recipients)
        yield _gauge("asyncpay_webhooks", "LSPS5 webhooks registered.", snap.webhooks)

    def _histograms(self) -> Iterator[Metric]:
        snap = self.timings.snapshot()
        for name, what in HISTOGRAMS.items():
            label = HISTOGRAM_LABELS.get(name)
            fam = HistogramMetricFamily(f"asyncpay_{name}_seconds", what, labels=[label] if label else None)
            seen = sorted((k[1], h) for k, h in snap.items() if k[0] == name)
            if label is None and not seen:
                seen = [("", None)]  # an unlabelled histogram is shown before its first observation
            for value, h in seen:
                buckets = h.cumulative() if h is not None else [(b, 0) for b in _bounds()]
                fam.add_metric([value] if label else [], buckets, h.sum if h is not None else 0.0)
            yield fam


def _bounds() -> list[str]:
    return [*[repr(b) for b in BUCKETS], "+Inf"]


def _held(store, table: str) -> tuple[int, int | None]:
    row = store.conn.execute(f"SELECT COUNT(*), MIN(since) FROM {table} WHERE state = ?", ("held",)).fetchone()
    return int(row[0]), row[1]


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def _counter_help(metric: str) -> str:
    return f"asyncpay-status counter ({metric.removeprefix('asyncpay_').removesuffix('_total')}); docs/metrics.md."


# -- the server ---------------------------------------------------------------------


def serve(node: Observed, config: MetricsConfig) -> tuple[object, NodeCollector] | None:
    """Start the HTTP server when ``asyncpay-metrics-listen`` is set (the
    address was checked by ``MetricsConfig.validate``). Returns (server,
    collector), or None when no address is set; OSError if it cannot bind."""
    address = config.listen()
    if address is None:
        return None
    registry = CollectorRegistry(auto_describe=False)
    collector = NodeCollector(node)
    registry.register(collector)
    ProcessCollector(registry=registry)  # the plugin process: memory, CPU, open files
    server, _thread = start_http_server(address.port, addr=address.host, registry=registry)
    return server, collector
