"""The store on both backends, side by side in one run (issue 17): SQLite
(a file, WAL, ``synchronous=FULL``) and PostgreSQL (``synchronous_commit=on``,
over a Unix socket), each with the plugin's durable setting.

* static-invoice lookup: ``Store.invoice(recipient, slot)`` at random among
  ``--recipients`` (1,000,000) recipients x 2 slots of the 1797-byte LDK
  vector invoice; the fill is bulk and not the figure;
* mailbox intake: ``Mailbox.intake`` of 1366-byte onions, one commit each,
  and ``Mailbox.intake_batch`` of 64 (the plugin's group commit: one commit
  per batch), limits raised so none is refused;
* hold decision: ``Holder.accept`` of a new HTLC with ``--held`` (100,000)
  HTLCs already held: limits, CLTV budget, the row committed, the reply path
  minted, the ``held_htlc_available`` onion built.

PostgreSQL: ``$ASYNCPAY_BENCH_PG`` or ``$ASYNCPAY_TEST_PG`` (a schema of this
run's is made and dropped), else a throwaway cluster started with
``.ci/postgres``; skipped, saying why, when there is none.

    python bench/bench_store.py [--recipients N] [--lookups N] [--intake N] [--held N] [--decisions N]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugin"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_lsp import UNLIMITED_MAILBOX, invoice_blob, pct  # noqa: E402
from bench_recipient import LSP, lsp_path  # noqa: E402

from asyncpay.crypto import pubkey_of  # noqa: E402
from asyncpay.endpoint import Endpoint  # noqa: E402
from asyncpay.hold import HoldConfig, Holder, HtlcToHold  # noqa: E402
from asyncpay.hold.records import HeldRow  # noqa: E402
from asyncpay.lsp import LspConfig, Mailbox  # noqa: E402
from asyncpay.payment import HopPayload  # noqa: E402
from asyncpay.payment.hold_request import HoldRequest  # noqa: E402
from asyncpay.store import Store  # noqa: E402

clock = time.perf_counter_ns
NOW, HEIGHT = int(time.time()), 800_000
PEERS = [f"02{i:064x}" for i in range(100)]
COLUMNS = ("recipient_id", "invoice_slot", "invoice", "forward_path", "offer_id", "created_at", "expires_at",
           "updated_at", "served")


def fill_invoices(target: str, recipients: int) -> list[str]:
    """``recipients`` x 2 invoices, 250 rows a statement (the relaxed setting: the fill is not measured)."""
    store = Store(target, synchronous="NORMAL")
    blob, forward = invoice_blob(), os.urandom(420)
    ids = [f"02{i:064x}" for i in range(recipients)]
    per = 250
    one = "(" + ", ".join("?" * len(COLUMNS)) + ")"
    t0 = time.perf_counter()
    for start in range(0, recipients, 20_000):
        with store.tx():
            chunk = [(rid, slot) for rid in ids[start:start + 20_000] for slot in (0, 1)]
            for i in range(0, len(chunk), per):
                rows = chunk[i:i + per]
                args = [v for rid, slot in rows for v in (rid, slot, blob, forward, os.urandom(32), NOW,
                                                          NOW + 86400, NOW, 0)]
                store.conn.execute(f"INSERT INTO invoices ({', '.join(COLUMNS)}) VALUES "
                                   + ", ".join([one] * len(rows)), args)
    if store.kind == "postgresql":
        store.conn.execute("ANALYZE invoices")
    rows = store.row_count("invoices")
    print(f"  [{store.kind}] filled {rows:,} invoices ({len(blob)}-byte blob) in {time.perf_counter() - t0:.0f} s",
          flush=True)
    store.close()
    return ids


def lookups(target: str, ids: list[str], n: int) -> tuple[float, float]:
    store = Store(target)
    rng = random.Random(1)
    keys = [(rng.choice(ids), rng.randrange(2)) for _ in range(n)]
    samples = []
    for rid, slot in keys:
        t = clock()
        row = store.invoice(rid, slot)
        samples.append(clock() - t)
        assert row is not None
    store.close()
    s = sorted(samples)
    return pct(s, 0.5), pct(s, 0.99)


def intake(target: str, messages: int, batch: int) -> tuple[float, float, float]:
    """(msg/s, p50 us, p99 us) per message (per batch when ``batch`` > 1)."""
    store = Store(target)
    mb = Mailbox(store, LspConfig(**UNLIMITED_MAILBOX))
    work = [(PEERS[i % 100], PEERS[(i + 1) % 100], pubkey_of(os.urandom(32)), os.urandom(1366))
            for i in range(messages)]
    samples = []
    start = clock()
    for i in range(0, messages, batch):
        t = clock()
        if batch == 1:
            assert mb.intake(*work[i], NOW) is None
        else:
            assert mb.intake_batch(work[i:i + batch], NOW) == [None] * len(work[i:i + batch])
        samples.append(clock() - t)
    total = clock() - start
    assert store.mailbox_totals()[0] == messages
    store.close()
    s = sorted(samples)
    return messages / (total / 1e9), pct(s, 0.5), pct(s, 0.99)


def hold_decisions(target: str, held: int, n: int) -> tuple[float, float]:
    store = Store(target, synchronous="NORMAL")
    endpoint = Endpoint(store, pubkey_of(LSP), os.urandom(32), os.urandom)
    cfg = HoldConfig(hold_max_per_peer=10**7, hold_max_total=10**8)
    holder = Holder(store, endpoint, cfg, lambda i: i.node_id)
    payload = HopPayload(amt_to_forward=10_000, outgoing_cltv_value=HEIGHT + 500, short_channel_id=7).encode()
    for start in range(0, held, 10_000):
        with store.tx():
            for i in range(start, min(held, start + 10_000)):
                holder.records.put(HeldRow(f"1x1x1/{i}", os.urandom(32), 10_100, HEIGHT + 540, HEIGHT + 500,
                                           PEERS[i % len(PEERS)], payload, since=NOW, updated_at=NOW))
    if store.kind == "postgresql":
        store.conn.execute("ANALYZE held_htlcs")
    store.close()
    store = Store(target)  # the durable setting for the figure
    endpoint = Endpoint(store, pubkey_of(LSP), os.urandom(32), os.urandom)
    holder = Holder(store, endpoint, cfg, lambda i: i.node_id)
    request = HoldRequest(held_htlc_available_paths=[lsp_path()])
    samples = []
    for i in range(n):
        h = HtlcToHold(f"2x2x2/{i}", os.urandom(32), 10_100, HEIGHT + 540, HEIGHT + 500, PEERS[i % len(PEERS)],
                       payload, request, (True,))
        t = clock()
        holder.accept(h, HEIGHT, NOW)
        samples.append(clock() - t)
    assert holder.records.count_held() == held + n
    store.close()
    s = sorted(samples)
    return pct(s, 0.5), pct(s, 0.99)


def postgres_target(tmp: Path) -> tuple[str | None, str, list]:
    """(URI of a fresh schema, how it was found, cleanups)."""
    dsn = os.environ.get("ASYNCPAY_BENCH_PG") or os.environ.get("ASYNCPAY_TEST_PG")
    cleanups: list = []
    how = "given"
    if not dsn:
        script = ROOT / ".ci" / "postgres"
        try:
            dsn = subprocess.run([str(script), "start", str(tmp / "pg")], capture_output=True, text=True,
                                 check=True).stdout.strip()
        except (subprocess.CalledProcessError, OSError) as e:
            return None, f"skipped: no ASYNCPAY_BENCH_PG and no cluster could be started ({e})", cleanups
        how = "throwaway cluster (.ci/postgres)"
        cleanups.append(lambda: subprocess.run([str(script), "stop", str(tmp / "pg")], capture_output=True))
    try:
        import psycopg
    except ImportError:
        return None, "skipped: psycopg is not installed (pip install '.[postgresql]')", cleanups
    from pg_cluster import with_schema

    schema = f"bench_{os.getpid()}"
    admin = psycopg.connect(dsn, autocommit=True)
    admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    admin.execute(f"CREATE SCHEMA {schema}")
    settings = {k: admin.execute(f"SHOW {k}").fetchone()[0]
                for k in ("server_version", "synchronous_commit", "fsync", "wal_sync_method", "shared_buffers")}
    how += ", " + ", ".join(f"{k}={v}" for k, v in settings.items())

    def drop() -> None:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()

    cleanups.insert(0, drop)
    return with_schema(dsn, schema), how, cleanups


def fresh(kind: str, tmp: Path, pg: str | None, name: str) -> str:
    """A new, empty database for one figure."""
    if kind == "sqlite":
        return str(tmp / f"{name}.sqlite3")
    import psycopg

    from pg_cluster import with_schema

    schema = f"bench_{os.getpid()}_{name}"
    with psycopg.connect(pg, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.execute(f"CREATE SCHEMA {schema}")
    return with_schema(pg, schema)


def drop_fresh(kind: str, pg: str | None, name: str) -> None:
    if kind == "postgresql":
        import psycopg

        with psycopg.connect(pg, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS bench_{os.getpid()}_{name} CASCADE")


def hardware(tmp: Path) -> str:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    disk = shutil.disk_usage(tmp)
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; temp dir {tmp} ({disk.free / 2**30:.0f} GiB free)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipients", type=int, default=1_000_000)
    ap.add_argument("--lookups", type=int, default=20_000)
    ap.add_argument("--intake", type=int, default=2_000, help="messages committed one by one")
    ap.add_argument("--batched", type=int, default=20_000, help="messages committed 64 at a time")
    ap.add_argument("--held", type=int, default=100_000)
    ap.add_argument("--decisions", type=int, default=1_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        import sqlite3

        print(f"hardware: {hardware(tmp)}")
        pg, how, cleanups = postgres_target(tmp)
        print(f"SQLite {sqlite3.sqlite_version}: file in the temp dir, WAL, synchronous=FULL")
        print(f"PostgreSQL: {how}" + (", over a Unix socket" if pg and "host=/" in pg else ""))
        kinds = ["sqlite"] + (["postgresql"] if pg else [])
        results: dict[str, dict[str, str]] = {k: {} for k in kinds}
        try:
            for kind in kinds:
                target = fresh(kind, tmp, pg, "lookup")
                ids = fill_invoices(target, args.recipients)
                p50, p99 = lookups(target, ids, args.lookups)
                results[kind]["lookup"] = f"p50 {p50:.0f} us, p99 {p99:.0f} us"
                drop_fresh(kind, pg, "lookup")
                if kind == "sqlite":
                    os.remove(target)
                target = fresh(kind, tmp, pg, "intake")
                rate, p50, p99 = intake(target, args.intake, 1)
                results[kind]["intake"] = f"{rate:,.0f} msg/s (p50 {p50:.0f} us, p99 {p99:.0f} us)"
                target = fresh(kind, tmp, pg, "batched")
                rate, p50, p99 = intake(target, args.batched, 64)
                results[kind]["batched"] = f"{rate:,.0f} msg/s (batch p50 {p50 / 1000:.1f} ms)"
                target = fresh(kind, tmp, pg, "hold")
                p50, p99 = hold_decisions(target, args.held, args.decisions)
                results[kind]["hold"] = f"p50 {p50:.0f} us, p99 {p99:.0f} us"
                for name in ("intake", "batched", "hold"):
                    drop_fresh(kind, pg, name)
        finally:
            for cleanup in cleanups:
                cleanup()
    rows = [("static-invoice lookup, " f"{args.recipients:,} recipients x 2 slots", "lookup"),
            ("mailbox intake, one commit per message", "intake"),
            ("mailbox intake, group commit (64 a commit)", "batched"),
            (f"hold decision, {args.held:,} held", "hold")]
    print()
    print("| figure | " + " | ".join("SQLite" if k == "sqlite" else "PostgreSQL" for k in kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for label, key in rows:
        print(f"| {label} | " + " | ".join(results[k][key] for k in kinds) + " |")
    if not pg:
        print(f"(PostgreSQL {how})")


if __name__ == "__main__":
    main()
