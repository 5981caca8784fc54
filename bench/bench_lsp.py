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
    mailbox_max_bytes_per_peer=10**9, mailbox_intake_burst=10**9, mailbox_max_messages_per_source_per_peer=10**6,
)

clock = time.perf_counter_ns
cpu_clock = time.thread_time_ns


def pct(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile, in microseconds."""
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


def report(name: str, samples: list[int], total_ns: int, unit: str, goal: str = "", met: bool | None = None,
           cpu: list[int] | None = None) -> dict:
    s = sorted(samples)
    p50, p99 = pct(s, 0.5), pct(s, 0.99)
    rate = len(s) / (total_ns / 1e9)
    verdict = "" if met is None else ("  [met]" if met else "  [NOT met]")
    # CPU time of the thread: what the work costs when the machine is shared (waits on the disk excluded).
    cpu_note = f"  (CPU p50 {pct(sorted(cpu), 0.5):.1f} us)" if cpu else ""
    print(f"{name}\n    count {len(s)}  p50 {p50:.1f} us  p99 {p99:.1f} us  max {s[-1] / 1000:.1f} us  "
          f"throughput {rate:,.0f} {unit}/s{cpu_note}" + (f"\n    goal: {goal}{verdict}" if goal else ""))
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


def _invoice_requests(lsp: Lsp, offer, count: int) -> list:
    msgs = []
    for _ in range(count):
        payer = Wallet(PEER_ID)
        req, _ = payer.invoice_request(offer)
        payload = OnionMessagePayload(invoice_request=req.encode(), reply_path=payer.reply_path())
        msgs.append(lsp.to_v(payer, offer.offer_paths[0], payload))
    return msgs


def bench_invoice_request(tmp: Path, count: int) -> None:
    """The server's part of the payer's round trip, as the plugin runs it
    (counters and served marks accumulated, written by Bookkeeping's thread
    once a second; the forwarded copy built after the answer), next to the
    way it ran before (every counter and the served mark committed on the
    path with synchronous=FULL, the forward built before the answer left)."""
    from asyncpay.actions import Later
    from asyncpay.bookkeeping import Bookkeeping

    want = ["static_invoice", "forward_invoice_request"]
    # Before: StaticInvoiceServer.handle with its default Bookkeeping, which
    # writes through: open, checks, mark_served + bump (two fsyncs), both onions.
    (tmp / "before").mkdir()
    lsp = Lsp(tmp / "before", serve_burst=10**9, persist_burst=10**9)
    offer, inv, _ = persisted(lsp, Wallet(PEER_ID))
    msgs = _invoice_requests(lsp, offer, count)
    gc.collect()
    samples, cpu, results = [], [], []
    start = clock()
    for msg in msgs:
        t0, c0 = clock(), cpu_clock()
        actions = lsp.server.handle(msg, NOW)
        samples.append(clock() - t0)
        cpu.append(cpu_clock() - c0)
        results.append(actions)
    total = clock() - start
    assert all([a.purpose for a in acts] == want for acts in results), lsp.store.counters()
    assert lsp.store.list_invoices()[0]["served"] == count
    report(f"(d0) before: invoice_request -> both onions, counters + served mark committed on the path, {count} "
           f"distinct requests, {len(inv.encode())}-byte invoice", samples, total, "req", cpu=cpu)
    lsp.store.close()

    # Now: the answer is ready after open + answer(); the Later is built after it is sent.
    (tmp / "now").mkdir()
    lsp = Lsp(tmp / "now", serve_burst=10**9, persist_burst=10**9)
    books = lsp.server.books = Bookkeeping(lsp.store)
    offer, inv, _ = persisted(lsp, Wallet(PEER_ID))
    msgs = _invoice_requests(lsp, offer, count)
    books.start()
    gc.collect()
    to_answer, cpu, to_all, results = [], [], [], []
    start = clock()
    for msg in msgs:
        t0, c0 = clock(), cpu_clock()
        actions = lsp.server.answer(lsp.endpoint.open(msg, NOW), NOW)
        t1, c1 = clock(), cpu_clock()
        sent = [actions[0]] + [x for a in actions[1:] if isinstance(a, Later) for x in a.build()]
        to_answer.append(t1 - t0)
        cpu.append(c1 - c0)
        to_all.append(clock() - t0)
        results.append(sent)
    total = clock() - start
    books.stop()
    assert all([a.purpose for a in acts] == want for acts in results), lsp.store.counters()
    assert lsp.store.list_invoices()[0]["served"] == count and books.flushes >= 1
    r = report(f"(d) now: invoice_request -> the payer's static invoice onion (endpoint.open + server.answer), "
               f"{count} distinct requests; {books.flushes} bookkeeping flushes", to_answer, total, "req", cpu=cpu)
    print(f"    goal: p50 <= 1 ms  [{'met' if r['p50'] <= 1000 else 'NOT met'}]")
    report("(d) now, including the forwarded copy built after the answer", to_all, total, "req")
    lsp.store.close()


def bench_router(tmp: Path, count: int) -> None:
    """The real router (cln/node.py) over the emulated CLN: from the
    ``onionmessage_forward_fail`` for V handed to ``Node.on_forward_fail``
    until ``injectonionmessage`` is called with the payer's static invoice
    (peel, context, checks, onion; the emulated RPC costs no time)."""
    from test_lsp_flow import handshake, lsp_network

    net, lsp_node, rnode, pnode, node = lsp_network(tmp)
    node.lsp.server.serve_limits.burst = node.lsp.server.serve_source_limits.burst = 10**9
    _, _, offer, _ = handshake(lsp_node, rnode, node)
    net.disconnect(lsp_node, rnode)  # the recipient sleeps, as in the regtest figure
    for started in (False, True):
        if started:
            node.books.start()
        marks: list[tuple[int, int]] = []
        samples: list[int] = []
        cpu: list[int] = []
        real_fail, real_inject = node.on_forward_fail, node.inject

        def on_forward_fail(params, real_fail=real_fail, marks=marks):
            marks.append((clock(), cpu_clock()))
            real_fail(params)

        def inject(action, real_inject=real_inject, marks=marks, samples=samples, cpu=cpu):
            if action.purpose == "static_invoice":
                samples.append(clock() - marks[-1][0])
                cpu.append(cpu_clock() - marks[-1][1])
            return real_inject(action)

        node.on_forward_fail, node.inject = on_forward_fail, inject
        onions = []
        for _ in range(count):
            payer = Wallet(pnode.node_id)
            onions.append(payer.invoice_request(offer)[1])
        gc.collect()
        start = clock()
        for pk, pkt in onions:
            pnode.rpc.call("injectonionmessage", {"path_key": pk.hex(), "message": pkt.hex()})
            for n in net.nodes.values():  # the emulated connectd's per-peer rate limit is not measured here
                n.buckets.clear()
        total = clock() - start
        node.on_forward_fail, node.inject = real_fail, real_inject
        assert len(samples) == count, (len(samples), node.store.counters())
        label = ("now: counters in memory (Bookkeeping started, as in the plugin)" if started
                 else "counters written through (Bookkeeping not started, as before)")
        r = report(f"(f) router: forward_fail for V -> injectonionmessage of the static invoice, {count} requests, "
                   f"{label}", samples, total, "req", cpu=cpu)
        if started:
            print(f"    goal: p50 <= 1 ms  [{'met' if r['p50'] <= 1000 else 'NOT met'}]")
    node.stop()
    node.store.close()


def route_to_before(rpc, target: bytes) -> list[bytes]:
    """Node.route_to as it was before the audit (asyncpay ee3bf84), for comparison."""
    if any(p.get("connected") for p in rpc.call("listpeers", {"id": target.hex()}).get("peers", [])):
        return []
    peers = {p["id"] for p in rpc.call("listpeers").get("peers", []) if p.get("connected")}
    paths = {target.hex(): []}
    frontier = [target.hex()]
    for _ in range(2):
        nxt = []
        for node in frontier[:32]:
            for ch in rpc.call("listchannels", {"source": node}).get("channels", []):
                n = ch["destination"]
                if n in paths:
                    continue
                paths[n] = [node, *paths[node]]
                if n in peers:
                    return [bytes.fromhex(x) for x in [n, *paths[n]][:-1]]
                nxt.append(n)
        frontier = nxt
    return []


def bench_route_to(tmp: Path, mids: int, targets: int, messages: int, rpc_ms: float) -> None:
    """A stranger's reply paths over a large emulated graph: targets with 40
    channels into a mesh of ``mids`` nodes, none near our 50 hub peers, so
    every walk is the worst case (1 + 32 listchannels, no route). Each
    lightningd RPC (listpeers, listchannels) costs ``rpc_ms`` more, as a
    JSON-RPC round trip would."""
    import threading

    from asyncpay.blinded_path import EncryptedData
    from asyncpay.onion_message import build_path
    from emulated_cln import Network
    from test_lsp_flow import attach, handshake

    rng = random.Random(2)
    net = Network()
    mk = iter(range(1, 10**6))

    def node(name: str):
        return net.node(next(mk).to_bytes(32, "big"), name)

    lsp, rnode, pnode = node("lsp"), node("recipient"), node("payer")
    net.connect(lsp, rnode)
    net.connect(lsp, pnode)
    for _ in range(50):
        net.connect(lsp, node("hub"))
    mesh = [node("mid") for _ in range(mids)]
    for m in mesh:
        for other in rng.sample(mesh, 3):
            if other is not m:
                net.connect(m, other)
    far = [node("far") for _ in range(targets)]
    for t in far:
        for m in rng.sample(mesh, 40):
            net.connect(t, m)
    asyncpay = attach(lsp, tmp, serve_burst=10**9, serve_source_burst=10**9, persist_burst=10**9)
    asyncpay.store.conn.execute("PRAGMA synchronous=NORMAL")
    _, _, offer, _ = handshake(lsp, rnode, asyncpay)

    calls: list[float] = []
    real = lsp.rpc.call
    lock_rpc_ns = [0]

    def call(method, params=None):
        if method in ("listpeers", "listchannels"):
            t0 = clock()
            time.sleep(rpc_ms / 1000)
            out = real(method, params)
            calls.append(1)
            if asyncpay.lock._is_owned():  # the node lock held while lightningd answers
                lock_rpc_ns[0] += clock() - t0
            return out
        return real(method, params)

    lsp.rpc.call = call
    print(f"(e) route_to over an emulated graph of {len(net.nodes):,} nodes, "
          f"{sum(len(n.channels) for n in net.nodes.values()) // 2:,} channels, {rpc_ms} ms per lightningd RPC")
    for name, fn in (("before (listpeers x2 + walk, no cache)", lambda t: route_to_before(lsp.rpc, t)),
                     ("now, first time a target is named", asyncpay.route_to),
                     ("now, the same targets again", asyncpay.route_to)):
        samples, rpcs = [], []
        start = clock()
        for t in far:
            n0, t0 = len(calls), clock()
            assert fn(t.node_id) == []
            samples.append(clock() - t0)
            rpcs.append(len(calls) - n0)
        limited = asyncpay.store.counters().get("route_walks_limited", 0)
        report(f"    {name}: RPCs per call max {max(rpcs)}, mean {sum(rpcs) / len(rpcs):.1f}; "
               f"walks refused by the rate so far {limited}", samples, clock() - start, "calls")

    # The hook thread: a stranger's invoice_request whose reply path starts at
    # a far node, as pyln hands the notification over.
    stranger = Wallet(pnode.node_id)
    timed: list[int] = []
    real_fail = asyncpay.on_forward_fail

    def on_forward_fail(params):
        t0 = clock()
        real_fail(params)
        timed.append(clock() - t0)

    asyncpay.on_forward_fail = on_forward_fail
    now_route, now_prefetch = asyncpay.endpoint.route, asyncpay._prefetch_route
    for worker in (False, True):
        if worker:
            asyncpay.start_endpoint_worker()
            asyncpay.endpoint.route, asyncpay._prefetch_route = now_route, now_prefetch
        else:  # the code before the audit: the old walk, called under the node lock in the handler
            asyncpay.endpoint.route = lambda t: route_to_before(lsp.rpc, t)
            asyncpay._prefetch_route = lambda msg: None
        asyncpay._graph.clear()
        asyncpay._routes.clear()
        timed.clear()
        lock_rpc_ns[0] = 0
        n0 = len(calls)
        start = clock()
        for i in range(messages):
            target = far[i % len(far)]
            reply = build_path(os.urandom(32), [(target.node_id, EncryptedData(next_node_id=stranger.endpoint)),
                                                (stranger.endpoint, EncryptedData(path_id=os.urandom(32)))])
            req, _ = stranger.invoice_request(offer)
            pk, pkt = stranger.onion_to(offer.offer_paths[0], OnionMessagePayload(invoice_request=req.encode(),
                                                                                  reply_path=reply))
            pnode.rpc.call("injectonionmessage", {"path_key": pk.hex(), "message": pkt.hex()})
            lsp.buckets.clear()
        asyncpay.drain()
        total = clock() - start
        served = asyncpay.store.counters().get("invoices_served", 0)
        label = ("now: in the endpoint worker, cached, looked up before the lock" if worker
                 else "before: in the notification handler, no cache, under the lock")
        report(f"    {messages} stranger invoice_requests, reply paths from far nodes, {label}: time the hook "
               f"thread is busy per message; {len(calls) - n0} RPCs, {lock_rpc_ns[0] / 1e6:.0f} ms of them "
               "with the node lock held", timed, total, "msg")
        assert served and threading.active_count() > 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--intake-messages", type=int, default=20_000)
    ap.add_argument("--intake-peers", type=int, default=200)
    ap.add_argument("--flush-messages", type=int, default=1_000)
    ap.add_argument("--recipients", type=int, default=100_000)
    ap.add_argument("--lookups", type=int, default=20_000)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--route-mids", type=int, default=2_000)
    ap.add_argument("--route-targets", type=int, default=100)
    ap.add_argument("--route-messages", type=int, default=60)
    ap.add_argument("--rpc-ms", type=float, default=1.0)
    ap.add_argument("--router-requests", type=int, default=300)
    ap.add_argument("--only", choices=["a", "b", "c", "d", "e", "f"], help="run one section")
    args = ap.parse_args()
    print(f"python {platform.python_version()} ({platform.python_implementation()}), sqlite WAL "
          "synchronous=FULL (the plugin's setting) unless said, temp dir, one thread")
    with tempfile.TemporaryDirectory(prefix="asyncpay-bench-") as d:
        tmp = Path(d)
        for sub in ("a", "b", "c", "d", "e", "f"):
            (tmp / sub).mkdir()

        def run(section: str) -> bool:
            return args.only in (None, section)

        if run("a"):
            # FULL is what the plugin runs; NORMAL shows what the fsync per commit costs.
            bench_intake(tmp / "a", args.intake_messages, args.intake_peers, "NORMAL")
            bench_intake(tmp / "a", args.intake_messages, args.intake_peers, "FULL")
            bench_group_commit(tmp / "a", args.intake_messages, args.intake_peers)
        if run("b"):
            bench_flush(tmp / "b", args.flush_messages)
        if run("c"):
            bench_lookup(tmp / "c", args.recipients, args.lookups)
        if run("d"):
            bench_invoice_request(tmp / "d", args.requests)
        if run("e"):
            bench_route_to(tmp / "e", args.route_mids, args.route_targets, args.route_messages, args.rpc_ms)
        if run("f"):
            bench_router(tmp / "f", args.router_requests)


if __name__ == "__main__":
    main()
