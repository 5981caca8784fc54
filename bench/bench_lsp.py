"""LSP-role benchmarks: mailbox intake, flush scheduling, static-invoice
lookup and invoice_request handling, all in one process without CLN.
Stdlib timing only; run ``python bench/bench_lsp.py`` from the repository root.

Each figure prints the count, the median and 99th-percentile latency of one
operation (microseconds), the throughput over the whole timed loop, and the
goal next to it with whether it is met. A missed goal never changes the exit
status. SQLite files live in a temporary directory removed at exit.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Works from a checkout without installing the package (its deps still needed);
# the tests directory gives the wallet and the in-process LSP harness.
sys.path.insert(0, str(ROOT / "plugin"))
sys.path.insert(0, str(ROOT / "tests"))

from asyncpay.crypto import pubkey_of  # noqa: E402
from asyncpay.lsp import Flush, LspConfig, Mailbox  # noqa: E402
from asyncpay.lsp.mailbox import Send, Wait  # noqa: E402
from asyncpay.onion_message import OnionMessagePayload  # noqa: E402
from asyncpay.store import Store  # noqa: E402
from test_lsp_server import NOW, PEER_ID, Lsp, persisted  # noqa: E402
from wallet import Wallet  # noqa: E402

VECTORS = Path(os.environ.get("ASYNCPAY_VECTORS", ROOT.parent / "shared" / "vectors"))

# Nothing the benches do should be refused by a limit.
UNLIMITED_MAILBOX = dict(
    mailbox_max_messages=10**6, mailbox_max_bytes=10**10, mailbox_max_messages_per_peer=10**6,
    mailbox_max_bytes_per_peer=10**9, mailbox_intake_burst=10**9,
)

clock = time.perf_counter_ns


def pct(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile, in microseconds."""
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


def report(name: str, samples: list[int], total_ns: int, unit: str, goal: str = "", met: bool | None = None) -> dict:
    s = sorted(samples)
    p50, p99 = pct(s, 0.5), pct(s, 0.99)
    rate = len(s) / (total_ns / 1e9)
    verdict = "" if met is None else ("  [met]" if met else "  [NOT met]")
    print(f"{name}\n    count {len(s)}  p50 {p50:.1f} us  p99 {p99:.1f} us  max {s[-1] / 1000:.1f} us  "
          f"throughput {rate:,.0f} {unit}/s" + (f"\n    goal: {goal}{verdict}" if goal else ""))
    return {"p50": p50, "p99": p99, "rate": rate}


def bench_intake(tmp: Path, messages: int, peers: int, synchronous: str = "FULL") -> None:
    mb = Mailbox(Store(str(tmp / f"intake-{synchronous}.sqlite3"), synchronous), LspConfig(**UNLIMITED_MAILBOX))
    peer_ids = [pubkey_of(os.urandom(32)).hex() for _ in range(peers)]
    work = [(peer_ids[i % peers], peer_ids[(i + 1) % peers], pubkey_of(os.urandom(32)), os.urandom(1366))
            for i in range(messages)]
    gc.collect()
    samples = []
    start = clock()
    for peer, source, path_key, onion in work:
        t0 = clock()
        refused = mb.intake(peer, source, path_key, onion, NOW)
        samples.append(clock() - t0)
        assert refused is None, refused
    total = clock() - start
    assert mb.store.mailbox_totals() == (messages, messages * 1366)
    r = report(f"(a) mailbox intake, synchronous={synchronous}: {messages} x 1366-byte onions over {peers} peers "
               "(one commit each)",
               samples, total, "msg")
    print(f"    goal: >= 2,000 msg/s  [{'met' if r['rate'] >= 2000 else 'NOT met'}]")
    mb.store.close()


def bench_group_commit(tmp: Path, messages: int, peers: int) -> None:
    """Intake as the plugin does it: notification handlers queue, the writer
    thread commits each batch with one fsync (synchronous=FULL). Latency is
    from the handler's submit to the message's commit."""
    import threading
    import types

    from asyncpay.cln.lsp import IntakeWriter, LspRole

    store = Store(str(tmp / "group.sqlite3"), "FULL")
    committed_at: dict[bytes, int] = {}
    node = types.SimpleNamespace(lock=threading.RLock(), log=lambda *a, **k: None, notify=lambda *a: None)
    role = types.SimpleNamespace(node=node, mailbox=Mailbox(store, LspConfig(**UNLIMITED_MAILBOX)),
                                 flush_connected=lambda peers: None)  # every peer is offline here

    def commit(items):
        LspRole.commit_intake(role, items)
        t = clock()
        for item in items:
            committed_at[item[3][:16]] = t

    role.commit_intake = commit
    writer = IntakeWriter(role)
    peer_ids = [pubkey_of(os.urandom(32)).hex() for _ in range(peers)]
    work = [(peer_ids[i % peers], peer_ids[(i + 1) % peers], pubkey_of(os.urandom(32)), os.urandom(1366), NOW)
            for i in range(messages)]
    gc.collect()
    submitted_at = {}
    start = clock()
    for item in work:
        submitted_at[item[3][:16]] = clock()
        writer.submit(item)
    writer.drain()
    total = clock() - start
    assert store.mailbox_totals() == (messages, messages * 1366)
    samples = [committed_at[k] - t for k, t in submitted_at.items()]
    r = report(f"(a') mailbox intake with group commit, synchronous=FULL: {messages} x 1366-byte onions over "
               f"{peers} peers, submit -> on disk", samples, total, "msg")
    print(f"    goal: >= 2,000 msg/s  [{'met' if r['rate'] >= 2000 else 'NOT met'}]")
    store.close()


def bench_flush(tmp: Path, messages: int) -> None:
    mb = Mailbox(Store(str(tmp / "flush.sqlite3")), LspConfig(**UNLIMITED_MAILBOX))
    peer = pubkey_of(os.urandom(32)).hex()
    with mb.store.tx():  # filling is not timed
        for _ in range(messages):
            mb.intake(peer, None, pubkey_of(os.urandom(32)), os.urandom(1366), NOW)
    now = 0.0
    flush = Flush(mb, peer, now)
    assert len(flush.queue) == messages
    gc.collect()
    samples = []
    start = clock()
    while True:
        # One message: the Wait (fake clock jumps past it), the Send, the
        # faked injection (True) and result(), which deletes the row.
        t0 = clock()
        step = flush.poll(now)
        if step is None:
            break
        if isinstance(step, Wait):
            now += step.seconds
            step = flush.poll(now)
        assert isinstance(step, Send)
        flush.result(step.row, True, now)
        samples.append(clock() - t0)
    total = clock() - start
    assert flush.sent == messages and mb.store.mailbox_totals() == (0, 0)
    report(f"(b) flush scheduling, RPC faked: {messages} queued messages for one peer "
           "(poll + result incl. DB delete)", samples, total, "msg")
    mb.store.close()


def invoice_blob() -> bytes:
    path = VECTORS / "ldk" / "async-payments.json"
    if path.exists():
        return bytes.fromhex(json.loads(path.read_text())["static_invoice"]["hex"])
    return os.urandom(1800)  # the store does not parse it


def bench_lookup(tmp: Path, recipients: int, lookups: int) -> None:
    store = Store(str(tmp / "lookup.sqlite3"))
    blob = invoice_blob()
    forward = Wallet(PEER_ID).reply_path().encode()
    ids = [pubkey_of(os.urandom(32)).hex() for _ in range(recipients)]
    t0 = clock()
    batch = 10_000
    for i in range(0, recipients, batch):
        with store.tx():
            for rid in ids[i:i + batch]:
                for slot in (0, 1):
                    store.put_invoice(rid, slot, blob, forward, os.urandom(32), NOW, NOW + 86400, NOW)
    fill_s = (clock() - t0) / 1e9
    rows = store.conn.execute("SELECT COUNT(*) FROM invoices").fetchone()[0]
    print(f"(c) filled {rows:,} invoices ({len(blob)}-byte blob) in {fill_s:.1f} s "
          f"({rows / fill_s:,.0f} rows/s; not the figure)")
    rng = random.Random(1)
    keys = [(rng.choice(ids), rng.randrange(2)) for _ in range(lookups)]
    gc.collect()
    samples = []
    start = clock()
    for rid, slot in keys:
        t = clock()
        row = store.invoice(rid, slot)
        samples.append(clock() - t)
        assert row is not None and row[0] == blob
    total = clock() - start
    r = report(f"(c) static-invoice lookup Store.invoice(), {recipients:,} recipients x 2 slots, random keys",
               samples, total, "lookups")
    print(f"    goal: p99 <= 1 ms  [{'met' if r['p99'] <= 1000 else 'NOT met'}]")
    store.close()


def bench_invoice_request(tmp: Path, count: int) -> None:
    lsp = Lsp(tmp, serve_burst=10**9, persist_burst=10**9)
    recipient = Wallet(PEER_ID)
    offer, inv, _ = persisted(lsp, recipient)
    msgs = []
    for _ in range(count):
        payer = Wallet(PEER_ID)
        req, _ = payer.invoice_request(offer)
        payload = OnionMessagePayload(invoice_request=req.encode(), reply_path=payer.reply_path())
        msgs.append(lsp.to_v(payer, offer.offer_paths[0], payload))
    gc.collect()
    samples, results = [], []
    start = clock()
    for msg in msgs:
        t0 = clock()
        actions = lsp.server.handle(msg, NOW)
        samples.append(clock() - t0)
        results.append(actions)
    total = clock() - start
    want = ["static_invoice", "forward_invoice_request"]
    assert all([a.purpose for a in acts] == want for acts in results), lsp.store.counters()
    assert lsp.store.list_invoices()[0]["served"] == count
    r = report(f"(d) invoice_request in -> 2 reply onions out (server.handle), {count} distinct requests, "
               f"{len(inv.encode())}-byte invoice", samples, total, "req")
    print(f"    goal: p50 <= 3 ms  [{'met' if r['p50'] <= 3000 else 'NOT met'}]")
    lsp.store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--intake-messages", type=int, default=20_000)
    ap.add_argument("--intake-peers", type=int, default=200)
    ap.add_argument("--flush-messages", type=int, default=1_000)
    ap.add_argument("--recipients", type=int, default=100_000)
    ap.add_argument("--lookups", type=int, default=20_000)
    ap.add_argument("--requests", type=int, default=500)
    args = ap.parse_args()
    print(f"python {platform.python_version()} ({platform.python_implementation()}), sqlite WAL "
          "synchronous=FULL (the plugin's setting) unless said, temp dir, one thread")
    with tempfile.TemporaryDirectory(prefix="asyncpay-bench-") as d:
        tmp = Path(d)
        for sub in ("a", "b", "c", "d"):
            (tmp / sub).mkdir()
        # FULL is what the plugin runs; NORMAL shows what the fsync per commit costs.
        bench_intake(tmp / "a", args.intake_messages, args.intake_peers, "NORMAL")
        bench_intake(tmp / "a", args.intake_messages, args.intake_peers, "FULL")
        bench_group_commit(tmp / "a", args.intake_messages, args.intake_peers)
        bench_flush(tmp / "b", args.flush_messages)
        bench_lookup(tmp / "c", args.recipients, args.lookups)
        bench_invoice_request(tmp / "d", args.requests)


if __name__ == "__main__":
    main()
