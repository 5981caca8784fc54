"""Cost of one operation as the LSP's state grows (issue 24): each role's hot
operations at 1,000, 10,000, 100,000 and 1,000,000 rows of state, on SQLite
(a file, WAL, ``synchronous=FULL``) and PostgreSQL (``synchronous_commit=on``),
each with the plugin's durable setting. An operation's cost must not grow
with how many others the LSP holds: the table gives p50/p99 at each size and
the ratio of the p50 at the largest size to the p50 at the smallest (goal:
<= 1.5 on every row).

The state is filled in bulk, straight into the tables (SQLite:
``executemany`` in one transaction; PostgreSQL: ``COPY``), never through the
roles: a million rows through ``Holder.accept`` would take hours and measure
nothing. The rows are valid but small (a 32-byte onion, a 64-byte invoice):
what grows is the number of rows, which is what the indexes must absorb.
Counts kept alongside the rows (the holds' counts tables) are rebuilt after
each fill, as a migration does; the mailbox's in-memory totals are loaded by
a new ``Mailbox``, as at start. One database per backend grows from one size
to the next, so the whole fill is 1,000,000 rows per table.

Operations (state: what grows; every row is far from due, so a timer pass
finds nothing to do, which is what most passes do):

* hold decision: ``Holder.accept`` of a new HTLC (held HTLCs);
* hold timer pass: ``Holder.tick`` (held HTLCs);
* wake-hold decision / timer pass: ``WakeHolder.accept`` / ``tick`` (HTLCs held for wake-up);
* mailbox intake: ``Mailbox.intake`` of a 1366-byte onion, one commit (queued messages, 10 a wallet);
* mailbox expiry pass: ``Mailbox.expire`` (queued messages);
* path-context purge: ``Store.purge_contexts``, run on every block (path contexts and issued offer paths);
* invoice_request at the LSP: ``endpoint.open`` + ``StaticInvoiceServer.answer`` of a distinct payer's
  request for one wallet among the sleeping wallets' invoices (bench_lsp.py's (d): peel, context, invoice,
  checks, the static invoice's onion; counters deferred as in the plugin);
* payer timer pass: ``Payer.tick`` (payments: the history, 1 % still open and not due);
* recipient MPP timer pass: ``Claimer.expire`` with 10 sets waiting (received payments);
* recipient refresh prune: ``prune_expected`` + ``prune_offers`` as each refresh runs them (received payments).

    python bench/bench_scale.py [--sizes 1000,10000,100000,1000000] [--iterations N] [--seconds S]
                                [--backends sqlite,postgresql]
    ASYNCPAY_BENCH_PG=postgresql://… python bench/bench_scale.py     # a cluster of yours

PostgreSQL as in bench_store.py: ``$ASYNCPAY_BENCH_PG`` or
``$ASYNCPAY_TEST_PG`` (a schema of this run's), else a throwaway cluster
started with ``.ci/postgres``; the column is skipped, saying why, without one.
An operation is timed ``--iterations`` times at each size, or for at most
``--seconds`` (at least 5 samples), so a slow one cannot stall the run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugin"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import bench_lsp  # noqa: E402
from bench_lsp import UNLIMITED_MAILBOX, pct  # noqa: E402
from bench_recipient import LSP, lsp_path  # noqa: E402
from bench_store import drop_fresh, fresh, hardware, postgres_target  # noqa: E402

from asyncpay.crypto import pubkey_of  # noqa: E402
from asyncpay.endpoint import Endpoint  # noqa: E402
from asyncpay.hold import HoldConfig, Holder, HtlcToHold  # noqa: E402
from asyncpay.hold import records as hold_records  # noqa: E402
from asyncpay.lsp import LspConfig, Mailbox  # noqa: E402
from asyncpay.lsps import wake_hold  # noqa: E402
from asyncpay.lsps.config import Lsps5Config  # noqa: E402
from asyncpay.lsps.wake_hold import WakeCandidate, WakeHolder  # noqa: E402
from asyncpay.payer.config import PayerConfig  # noqa: E402
from asyncpay.payer.payer import Payer  # noqa: E402
from asyncpay.payment import HopPayload  # noqa: E402
from asyncpay.payment.hold_request import HoldRequest  # noqa: E402
from asyncpay.recipient.claim import Claimer  # noqa: E402
from asyncpay.recipient.config import RecipientConfig  # noqa: E402
from asyncpay.recipient.records import Claim, Part  # noqa: E402
from asyncpay.store import Store  # noqa: E402
from test_lsp_server import LSP_ID, PEER_ID  # noqa: E402
from test_lsp_server import NOW as LSP_NOW  # noqa: E402

clock = time.perf_counter_ns
NOW, HEIGHT = int(time.time()), 800_000
FAR = NOW + 10**7  # a deadline no pass reaches
PEERS = 1000  # senders (holds) and clients (wake holds) the rows are spread over
MAIL_PER_WALLET = 10
# A million messages queued fills the bench_lsp.py limits: ten times more.
MAILBOX = LspConfig(**{**UNLIMITED_MAILBOX, "mailbox_max_messages": 10**8, "mailbox_max_bytes": 10**12})
PAYLOAD = HopPayload(amt_to_forward=10_000, outgoing_cltv_value=HEIGHT + 500, short_channel_id=7).encode()


def peer(i: int) -> str:
    return f"02{i:064x}"


# -- bulk fill ------------------------------------------------------------------


def bulk(store: Store, table: str, columns: tuple[str, ...], rows: Iterable[tuple]) -> None:
    """Insert rows straight into a table: SQLite ``executemany`` in one
    transaction, PostgreSQL ``COPY`` (then ``VACUUM ANALYZE``, as autovacuum
    would after a while: the planner knows the table's size)."""
    if store.kind == "sqlite":
        q = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        with store.tx():
            store.backend.conn.executemany(q, rows)
        return
    import psycopg

    with psycopg.connect(store.backend.dsn) as conn:
        with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(r)
        conn.commit()
        conn.autocommit = True
        # VACUUM too: autovacuum would otherwise visit the fresh rows during the
        # measurements (a new million rows is over its threshold) and set the
        # visibility map that index-only scans need.
        conn.execute(f"VACUUM ANALYZE {table}")


def fill(store: Store, start: int, end: int) -> None:
    """Rows ``start`` to ``end`` of every kind of state."""
    rnd = random.Random(start)
    b32 = lambda: rnd.randbytes(32)  # noqa: E731
    n = range(start, end)
    bulk(store, "held_htlcs",
         ("key", "payment_hash", "amount_msat", "cltv_expiry", "outgoing_cltv", "peer_id", "payload", "state",
          "since", "updated_at", "deadline", "sends", "next_send_at"),
         ((f"1x1x1/{i}", b32(), 10_100, HEIGHT + 5040, HEIGHT + 5000, peer(i % PEERS), PAYLOAD, "held",
           NOW, NOW, FAR, 1, FAR) for i in n))
    bulk(store, "lsps5_wake_htlcs",
         ("key", "peer_id", "payment_hash", "amount_msat", "cltv_expiry", "outgoing_cltv", "since", "deadline",
          "state", "updated_at"),
         ((f"1x1x1/{i}", peer(i % PEERS), b32(), 10_100, HEIGHT + 5040, HEIGHT + 5000, NOW, FAR, "held", NOW)
          for i in n))
    bulk(store, "mailbox", ("peer_id", "source", "path_key", "onion", "digest", "size", "received_at", "attempts"),
         ((peer(10**6 + i // MAIL_PER_WALLET), peer(i % PEERS), b"\x02" + b32(), b32(), b32(), 32, NOW, 0)
          for i in n))
    bulk(store, "path_contexts", ("path_id", "kind", "recipient_id", "invoice_slot", "expires_at", "created_at"),
         ((i.to_bytes(8, "big") + b32()[:24], "lsp:serve", peer(10**6 + i // 2), i % 2, FAR, NOW) for i in n))
    bulk(store, "issued_offer_paths", ("path", "recipient_id", "invoice_slot", "expires_at"),
         ((i.to_bytes(8, "big") + b32(), peer(10**6 + i // 2), i % 2, FAR) for i in n))
    bulk(store, "invoices", ("recipient_id", "invoice_slot", "invoice", "forward_path", "offer_id", "created_at",
                             "expires_at", "updated_at", "served"),
         ((peer(10**6 + i // 2), i % 2, b32() * 2, b32(), b32(), NOW, FAR, NOW, 0) for i in n))
    # The payer's history: complete payments, and 1 % still waiting (not due).
    bulk(store, "payer_payments", ("id", "state", "kind", "bolt12", "offer", "amount_msat", "nonce", "invreq",
                                   "attempts", "next_at", "expires_at", "created_at", "updated_at"),
         ((f"pay-{i}", "requesting" if i % 100 == 0 else "complete", "static", "lno1", b"o", 1000, b32(), b"r",
           1, FAR, FAR, NOW, NOW) for i in n))
    bulk(store, "recipient_payments", ("payment_hash", "payment_preimage", "amount_msat", "slot", "kind", "status",
                                       "received_at", "created_at"),
         ((hashlib.sha256(i.to_bytes(8, "big")).digest(), b32(), 1000, 0, "static", "received", NOW, NOW)
          for i in n))
    rebuild_counts(store)


def rebuild_counts(store: Store) -> None:
    """The counts kept beside the held rows, recomputed after a bulk fill (as the migration that made them does)."""
    for counts in (hold_records.HELD_COUNTS, wake_hold.HELD_COUNTS):
        counts.rebuild(store)


# -- the roles over the store -----------------------------------------------------


class Roles:
    def __init__(self, store: Store) -> None:
        self.store = store
        endpoint = Endpoint(store, pubkey_of(LSP), os.urandom(32), os.urandom)
        self.holder = Holder(store, endpoint, HoldConfig(hold_max_per_peer=10**7, hold_max_total=10**8),
                             lambda i: i.node_id)
        self.wake = WakeHolder(store, Lsps5Config(wake_max_per_peer=10**7, wake_max_total=10**8))
        self.payer = Payer(store, endpoint, PayerConfig(), os.urandom(32), lambda i: i.node_id)
        self.claimer = Claimer(store, RecipientConfig())
        self.mailbox = Mailbox(store, MAILBOX)
        self.request = HoldRequest(held_htlc_available_paths=[lsp_path()])
        self.seq = 0

    def started(self) -> None:
        """After a fill: what a start-up loads (the mailbox's totals)."""
        self.mailbox = Mailbox(self.store, MAILBOX)

    def next(self) -> int:
        self.seq += 1
        return self.seq

    # One call each; the key names the operation in the table.

    def hold_decision(self) -> None:
        i = self.next()
        h = HtlcToHold(f"2x2x2/{i}", os.urandom(32), 10_100, HEIGHT + 5040, HEIGHT + 5000, peer(i % PEERS),
                       PAYLOAD, self.request, (True,))
        assert type(self.holder.accept(h, HEIGHT, NOW)).__name__ == "Hold"

    def hold_tick(self) -> None:
        assert not self.holder.tick(HEIGHT, NOW).answers

    def wake_decision(self) -> None:
        i = self.next()
        h = WakeCandidate(f"3x3x3/{i}", peer(i % PEERS), os.urandom(32), 10_100, HEIGHT + 5040, HEIGHT + 5000,
                          incoming_slots=10**9)  # the per-channel bound is not what is measured
        assert self.wake.accept(h, False, True, HEIGHT, NOW) is not None

    def wake_tick(self) -> None:
        assert not self.wake.tick(HEIGHT, NOW)

    def mailbox_intake(self) -> None:
        i = self.next()
        assert self.mailbox.intake(peer(2 * 10**6 + i % 1000), peer(i % PEERS), pubkey_of(os.urandom(32)),
                                   os.urandom(1366), NOW) is None

    def mailbox_expire(self) -> None:
        assert self.mailbox.expire(NOW) == 0

    def purge_contexts(self) -> None:
        self.store.purge_contexts(NOW)

    def lsp_setup(self) -> None:
        """A real wallet's static invoice at the LSP (tests/test_lsp_server.py's harness over this store)."""
        from asyncpay.bookkeeping import Bookkeeping
        from asyncpay.lsp.server import StaticInvoiceServer
        from test_lsp_server import Lsp, persisted
        from wallet import Wallet

        lsp = Lsp.__new__(Lsp)
        lsp.store, lsp.config = self.store, LspConfig(serve_burst=10**9, persist_burst=10**9)
        lsp.endpoint = Endpoint(self.store, LSP_ID, bytes([0x43]) * 32, os.urandom)
        lsp.server = StaticInvoiceServer(self.store, lsp.endpoint, lsp.config, lambda intro: None,
                                         books=Bookkeeping(self.store))
        lsp.server.books.start()
        self.lsp, self.offer = lsp, persisted(lsp, Wallet(PEER_ID), 0, peer(3 * 10**6))[0]
        self.requests: list = []

    def invoice_request(self) -> None:
        if not self.requests:  # built untimed, a batch at a time (each request is a distinct payer's)
            self.requests = bench_lsp._invoice_requests(self.lsp, self.offer, 50)
            raise Untimed
        msg = self.requests.pop()
        actions = self.lsp.server.answer(self.lsp.endpoint.open(msg, LSP_NOW), LSP_NOW)
        assert actions[0].purpose == "static_invoice"

    def payer_tick(self) -> None:
        actions, failed = self.payer.tick(NOW)
        assert not actions and not failed

    def claim_expire(self) -> None:
        assert not self.claimer.expire(HEIGHT, NOW)

    def refresh_prune(self) -> None:
        self.claimer.records.prune_expected(NOW - 10 * 86400)
        self.claimer.records.prune_offers(NOW)

    def waiting_sets(self) -> None:
        """10 multi-part payments waiting for their other parts (bounded in the plugin)."""
        with self.store.tx():
            for k in range(10):
                h = os.urandom(32)
                self.claimer.records.claims.put(Claim(h, b"p", 0, "static", None, os.urandom(32), 2000, FAR, NOW))
                self.claimer.records.parts.put(Part(f"9x9x{k}", k, h, 1000, HEIGHT + 5000, NOW))


OPERATIONS: list[tuple[str, str]] = [
    ("hold decision (Holder.accept)", "hold_decision"),
    ("hold timer pass, nothing due (Holder.tick)", "hold_tick"),
    ("wake-hold decision (WakeHolder.accept)", "wake_decision"),
    ("wake-hold timer pass (WakeHolder.tick)", "wake_tick"),
    ("mailbox intake, one commit (Mailbox.intake)", "mailbox_intake"),
    ("mailbox expiry pass (Mailbox.expire)", "mailbox_expire"),
    ("per-block context purge (Store.purge_contexts)", "purge_contexts"),
    ("invoice_request at the LSP (open + answer)", "invoice_request"),
    ("payer timer pass (Payer.tick)", "payer_tick"),
    ("recipient MPP timer pass (Claimer.expire)", "claim_expire"),
    ("recipient refresh prune", "refresh_prune"),
]


class Untimed(Exception):
    """Raised by an operation that spent the call preparing its next samples."""


def measure(op: Callable[[], None], iterations: int, seconds: float) -> tuple[list[int], list[int]]:
    """(wall-clock samples, the thread's CPU-time samples), sorted, in ns. On a
    shared machine the wall clock also counts waiting for a core and for the
    disk (a commit's fsync); the CPU time does not."""
    samples: list[int] = []
    cpu: list[int] = []
    stop = time.monotonic() + seconds
    warm = False
    while len(samples) < iterations and (len(samples) < 5 or time.monotonic() < stop):
        t, c = clock(), time.thread_time_ns()
        try:
            op()
        except Untimed:
            continue
        if warm:
            samples.append(clock() - t)
            cpu.append(time.thread_time_ns() - c)
        warm = True  # the first call warms caches and prepared statements
    return sorted(samples), sorted(cpu)


def run_backend(kind: str, target: str, sizes: list[int], iterations: int, seconds: float,
                results: dict) -> None:
    store = Store(target, synchronous="FULL")
    roles = Roles(store)
    roles.waiting_sets()
    roles.lsp_setup()
    filled = 0
    for size in sizes:
        t0 = time.perf_counter()
        fill(store, filled, size)
        filled = size
        roles.started()
        print(f"  [{kind}] {size:,} rows of each kind: filled in {time.perf_counter() - t0:.1f} s "
              f"(not a figure; load {os.getloadavg()[0]:.1f})", flush=True)
        for label, name in OPERATIONS:
            s, c = measure(getattr(roles, name), iterations, seconds)
            results[(kind, name, size)] = (pct(s, 0.5), pct(s, 0.99), len(s), pct(c, 0.5))
            p50, p99, n, cpu = results[(kind, name, size)]
            print(f"    {label:48} p50 {p50:9.0f} us  p99 {p99:9.0f} us  CPU p50 {cpu:9.0f} us  ({n} samples)",
                  flush=True)
    store.close()


def table(kinds: list[str], sizes: list[int], results: dict) -> None:
    print()
    head = " | ".join(f"{s:,}" for s in sizes)
    print(f"| operation | backend | {head} (p50 / p99 us) | ratio p50 {sizes[-1]:,}/{sizes[0]:,} "
          "| ratio CPU p50 |")
    print("|---|---|" + "---|" * len(sizes) + "---|---|")
    worst = 0.0
    for label, name in OPERATIONS:
        for kind in kinds:
            cells = [results.get((kind, name, s)) for s in sizes]
            if None in cells:
                continue
            ratio = cells[-1][0] / max(cells[0][0], 1e-3)
            cpu_ratio = cells[-1][3] / max(cells[0][3], 1e-3)
            worst = max(worst, ratio)
            shown = " | ".join(f"{c[0]:.0f} / {c[1]:.0f}" for c in cells)
            mark = "" if ratio <= 1.5 else " (over 1.5)"
            print(f"| {label} | {'SQLite' if kind == 'sqlite' else 'PostgreSQL'} | {shown} | {ratio:.2f}{mark} "
                  f"| {cpu_ratio:.2f} |")
    print(f"\nworst ratio {worst:.2f} (goal: every row <= 1.5)")


# -- memory -------------------------------------------------------------------


def fill_memory(store: Store, wallets: int, messages: int, held: int) -> None:
    """The state of issue 24's memory figure: ``wallets`` sleeping wallets (a
    static invoice, its recipient row, an offer path and its contexts each),
    ``messages`` queued for them from 1,000 sources, ``held`` HTLCs held and
    as many held for wake-up."""
    rnd = random.Random(7)
    b32 = lambda: rnd.randbytes(32)  # noqa: E731
    w = range(wallets)
    bulk(store, "recipients", ("recipient_id", "created_at", "last_request_at"),
         ((peer(10**6 + i), NOW, NOW) for i in w))
    bulk(store, "invoices", ("recipient_id", "invoice_slot", "invoice", "forward_path", "offer_id", "created_at",
                             "expires_at", "updated_at", "served"),
         ((peer(10**6 + i), 0, rnd.randbytes(900), rnd.randbytes(300), b32(), NOW, FAR, NOW, 0) for i in w))
    bulk(store, "path_contexts", ("path_id", "kind", "recipient_id", "invoice_slot", "expires_at", "created_at"),
         ((b32(), kind, peer(10**6 + i), 0, FAR, NOW) for i in w for kind in ("lsp:offer", "lsp:serve")))
    bulk(store, "issued_offer_paths", ("path", "recipient_id", "invoice_slot", "expires_at"),
         ((rnd.randbytes(200), peer(10**6 + i), 0, FAR) for i in w))
    per = max(1, messages // wallets)
    bulk(store, "mailbox", ("peer_id", "source", "path_key", "onion", "digest", "size", "received_at", "attempts"),
         ((peer(10**6 + i // per), peer(i % PEERS), b"\x02" + b32(), rnd.randbytes(64), b32(), 1366, NOW, 0)
          for i in range(messages)))
    bulk(store, "held_htlcs",
         ("key", "payment_hash", "amount_msat", "cltv_expiry", "outgoing_cltv", "peer_id", "payload", "state",
          "since", "updated_at", "deadline", "sends", "next_send_at"),
         ((f"1x1x1/{i}", b32(), 10_100, HEIGHT + 5040, HEIGHT + 5000, peer(i % PEERS), PAYLOAD, "held",
           NOW, NOW, FAR, 1, FAR) for i in range(held)))
    bulk(store, "lsps5_wake_htlcs",
         ("key", "peer_id", "payment_hash", "amount_msat", "cltv_expiry", "outgoing_cltv", "since", "deadline",
          "state", "updated_at"),
         ((f"1x1x1/{i}", peer(10**6 + i % wallets), b32(), 10_100, HEIGHT + 5040, HEIGHT + 5000, NOW, FAR, "held",
           NOW) for i in range(held)))
    rebuild_counts(store)


def resident(target: str) -> None:
    """In a process of its own (``--rss-of``): open the store, start every role
    as the plugin does, run their passes a few times, answer a few requests;
    print the peak resident set (VmHWM)."""
    store = Store(target, synchronous="FULL")
    roles = Roles(store)
    roles.lsp_setup()
    for _ in range(3):
        roles.hold_tick()
        roles.wake_tick()
        roles.mailbox_expire()
        roles.purge_contexts()
        roles.payer_tick()
        roles.claim_expire()
        roles.refresh_prune()
        for _ in range(20):
            roles.mailbox_intake()
            roles.hold_decision()
            roles.wake_decision()
            try:
                roles.invoice_request()
            except Untimed:
                pass
    status = Path("/proc/self/status").read_text()
    peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    print(f"RSS {peak / 1024:.0f} MB")


def memory(kind: str, target: str, wallets: int, messages: int, held: int) -> float:
    import subprocess

    store = Store(target, synchronous="NORMAL")
    Roles(store)  # every role's tables
    t0 = time.perf_counter()
    fill_memory(store, wallets, messages, held)
    store.close()
    print(f"  [{kind}] memory state filled in {time.perf_counter() - t0:.0f} s (not a figure)", flush=True)
    out = subprocess.run([sys.executable, __file__, "--rss-of", target], capture_output=True, text=True, check=True)
    return float(out.stdout.split("RSS ")[1].split()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0, help="time cap per operation and size")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--memory", default="100000,1000000,100000",
                    help="wallets,messages,held for the memory figure ('' to skip it)")
    ap.add_argument("--rss-of", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_of:
        return resident(args.rss_of)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    wanted = args.backends.split(",")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        import sqlite3

        print(f"hardware: {hardware(tmp)}; load average {os.getloadavg()}")
        pg, how = None, "not asked for"
        cleanups: list = []
        if "postgresql" in wanted:
            pg, how, cleanups = postgres_target(tmp)
        print(f"SQLite {sqlite3.sqlite_version}: file in the temp dir, WAL, synchronous=FULL")
        print(f"PostgreSQL: {how}")
        kinds = [k for k in ("sqlite", "postgresql") if k in wanted and (k == "sqlite" or pg)]
        results: dict = {}
        rss: dict[str, float] = {}
        try:
            for kind in kinds:
                target = fresh(kind, tmp, pg, "scale")
                try:
                    run_backend(kind, target, sizes, args.iterations, args.seconds, results)
                finally:
                    drop_fresh(kind, pg, "scale")
                if args.memory:
                    if kind == "sqlite":
                        os.remove(target)
                    wallets, messages, held = (int(x) for x in args.memory.split(","))
                    target = fresh(kind, tmp, pg, "memory")
                    try:
                        rss[kind] = memory(kind, target, wallets, messages, held)
                    finally:
                        drop_fresh(kind, pg, "memory")
        finally:
            for cleanup in cleanups:
                cleanup()
    print(f"load average at the end {os.getloadavg()}")
    table(kinds, sizes, results)
    if rss:
        wallets, messages, held = (int(x) for x in args.memory.split(","))
        print(f"\nresident memory (peak, VmHWM) of a process that opens the store with {wallets:,} sleeping "
              f"wallets, {messages:,} queued messages, {held:,} held HTLCs and as many wake holds, starts every "
              f"role and runs their passes (goal <= 200 MB): "
              + ", ".join(f"{'SQLite' if k == 'sqlite' else 'PostgreSQL'} {v:.0f} MB" for k, v in rss.items()))


if __name__ == "__main__":
    main()
