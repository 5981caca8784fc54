"""Regtest benchmark (issue 24): static invoices served per second by one LSP
on real lightningd, next to the same lightningd answering invoice_requests
for its own offer (CLN's offers plugin), in one run. Needs lightningd and
bitcoind on PATH; pytest is only the harness (pyln-testing's node_factory)::

    PATH=/opt/regtest/bin:$PATH RUST=0 python -m pytest bench/regtest_served.py -s -q -p no:cacheprovider

Network: L (the LSP: asyncpay and bench/plugins/stamp.py), R (the wallets'
node, for the handshakes, then stopped: every wallet sleeps) and
``ASYNCPAY_BENCH_PAYERS`` (4) payer nodes, each connected to L (no channel:
onion messages need none). ``ASYNCPAY_BENCH_WALLETS`` (20) sleeping wallets
each leave a static invoice at L over R.

* asyncpay: every payer node sends invoice_requests from wallets of its own
  (a fresh payer key and reply path each) over the offer paths of the
  sleeping wallets in turn, injected at the payer node
  (``injectonionmessage``) on a fixed schedule; an answer is the static
  invoice reaching the payer node's stamp plugin (monotonic clock shared by
  the processes), checked byte for byte afterwards.
* native: the same payer nodes call ``fetchinvoice`` for an ``offer`` of L,
  on the same schedule (a thread per outstanding call): CLN's offers plugin
  at L answers with a fresh invoice (it signs it and stores it).

Both run open-loop at ``ASYNCPAY_BENCH_RATE`` (3.5) requests a second per
payer node for ``ASYNCPAY_BENCH_SECONDS`` (15) s, alternated
``ASYNCPAY_BENCH_ROUNDS`` (2) times so that a shared machine's load falls on
both alike. The rate per payer stays under connectd's limit of one incoming
onion message per 250 ms per peer (``connectd/connectd.h`` ONION_MSG_MSEC,
a burst of 4): L's replies count against the payer's limit the same way, so
a payer node alone can never be served more than 4 a second by anyone; the
total offered load is the rate times the payers. Printed: requests sent,
answered, served per second (answers over the phase, from the first send to
the last answer), p50/p99 latency, and the ratios to native; then 20
requests one at a time, split at L's stamp (when L's lightningd told its
plugins the request for V arrived). Only answers are asserted, never times.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from regtest import (  # noqa: E402
    ASYNCPAY,
    RECORDER,
    _bound_to_this_python,
    inject,
    node_id,
    require_binaries,
    take,
)

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from asyncpay.blinded_path import BlindedPath  # noqa: E402
from asyncpay.offers import CHAINS  # noqa: E402
from wallet import Wallet  # noqa: E402

STAMP = _bound_to_this_python(Path(__file__).resolve().parent / "plugins" / "stamp.py")
PAYERS = int(os.environ.get("ASYNCPAY_BENCH_PAYERS", "4"))
WALLETS = int(os.environ.get("ASYNCPAY_BENCH_WALLETS", "20"))
RATE = float(os.environ.get("ASYNCPAY_BENCH_RATE", "3.5"))  # requests per second per payer node
PACE = 0.3  # seconds between two messages R sends L in the set-up
SECONDS = float(os.environ.get("ASYNCPAY_BENCH_SECONDS", "15"))
ROUNDS = int(os.environ.get("ASYNCPAY_BENCH_ROUNDS", "2"))
GRACE = 10.0  # seconds after the last send for the last answers
# The LSP's own per-recipient limits are not what is measured here.
LIMITS = {"asyncpay-serve-rate": 1000, "asyncpay-serve-burst": 1000, "asyncpay-serve-source-rate": 1000,
          "asyncpay-serve-source-burst": 1000, "asyncpay-persist-burst": 1000, "asyncpay-persist-rate": 1000}


def leave_invoice(lsp, r, recipient_id: str):
    """tests/regtest.py's handshake for one more wallet behind R, under its own recipient id."""
    wallet = Wallet(node_id(r))
    res = lsp.rpc.call("asyncpay-recipientpaths", {"recipient_id": recipient_id})
    p_req = BlindedPath.decode(bytes.fromhex(res["paths"][0]["hex"]))
    time.sleep(PACE)  # R -> L stays under connectd's per-peer limit
    inject(r, wallet.offer_paths_request(p_req, 0))
    reply = take(r, wallet)
    offer = wallet.make_offer(reply.offer_paths.paths, chains=[CHAINS["regtest"]])
    invoice = wallet.make_static_invoice(offer, int(time.time()), node_id(lsp))
    time.sleep(PACE)
    inject(r, wallet.serve_static_invoice(reply.reply_path, invoice))
    assert take(r, wallet, 1).static_invoice_persisted is not None
    return offer, invoice


def pct(ms: list[float], q: float) -> float:
    s = sorted(ms)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


class Phase:
    """One open-loop phase: what was sent when, what came back when."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent = 0
        self.latency: list[float] = []  # seconds, answered requests only
        self.first = self.last = 0.0

    @property
    def served_per_s(self) -> float:
        return len(self.latency) / (self.last - self.first) if self.latency else 0.0


def schedule(start: float, k: int) -> None:
    delay = start + k / RATE - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def asyncpay_phase(payers, offers, invoices) -> Phase:
    """Every payer node, on the schedule, injects a fresh wallet's invoice_request."""
    count = int(RATE * SECONDS)
    work = []  # per payer: [(wallet, onion, wallet index)], built before the clock starts
    for p in payers:
        mine = []
        for k in range(count):
            w = Wallet(node_id(p))
            i = (k * len(payers) + len(work)) % len(offers)
            mine.append((w, w.invoice_request(offers[i])[1], i))
        work.append(mine)
    seen = [len(p.rpc.call("stamp-list")["stamps"]) for p in payers]
    sent: list[dict[str, tuple[float, Wallet, int]]] = [{} for _ in payers]
    start = time.monotonic() + 0.5

    def run(j: int) -> None:
        for k, (w, onion, i) in enumerate(work[j]):
            schedule(start, k)
            sent[j][w.endpoint.hex()] = (time.monotonic(), w, i)
            inject(payers[j], onion)

    threads = [threading.Thread(target=run, args=(j,)) for j in range(len(payers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    phase = Phase("asyncpay (static invoice of a sleeping wallet)")
    phase.first, phase.sent = start, sum(len(s) for s in sent)
    deadline = time.monotonic() + GRACE
    answers: dict[str, dict] = {}
    while time.monotonic() < deadline and len(answers) < phase.sent:
        time.sleep(0.5)
        for j, p in enumerate(payers):
            for s in p.rpc.call("stamp-list", {"since": seen[j]})["stamps"]:
                if s.get("next_node_id") in sent[j]:
                    answers[s["next_node_id"]] = (j, s)
    for key, (j, s) in answers.items():
        t0, w, i = sent[j][key]
        # Checked outside the timing: the answer is that wallet's stored static invoice.
        assert w.open(bytes.fromhex(s["outgoing"])).static_invoice == invoices[i].encode()
        phase.latency.append(s["at"] - t0)
        phase.last = max(phase.last, s["at"])
    return phase


def split(lsp, payer, offers, invoices, n: int = 20) -> tuple[list[float], list[float]]:
    """One request at a time from one payer (so that stamps pair up): (payer
    -> L: the request's way to L's lightningd, as L's stamp plugin is told;
    L -> payer: from there to the static invoice at the payer: the
    notification to asyncpay, its handler, injectonionmessage and the way
    back), in seconds."""
    v = lsp.rpc.call("asyncpay-status")["endpoint_id"]
    to_lsp, back = [], []
    for k in range(n):
        w = Wallet(node_id(payer))
        _, onion = w.invoice_request(offers[k % len(offers)])
        seen_l, seen_p = (len(x.rpc.call("stamp-list")["stamps"]) for x in (lsp, payer))
        start = time.monotonic()
        inject(payer, onion)
        deadline = start + GRACE
        while time.monotonic() < deadline:
            got = [s for s in payer.rpc.call("stamp-list", {"since": seen_p})["stamps"]
                   if s.get("next_node_id") == w.endpoint.hex()]
            if got:
                at_l = [s["at"] for s in lsp.rpc.call("stamp-list", {"since": seen_l})["stamps"]
                        if s.get("next_node_id") == v]
                assert w.open(bytes.fromhex(got[0]["outgoing"])).static_invoice == invoices[k % len(offers)].encode()
                to_lsp.append(at_l[0] - start)
                back.append(got[0]["at"] - at_l[0])
                break
            time.sleep(0.002)
        time.sleep(PACE)
    return to_lsp, back


def native_phase(payers, bolt12: str) -> Phase:
    """Every payer node, on the schedule, calls fetchinvoice for L's own offer."""
    count = int(RATE * SECONDS)
    phase = Phase("CLN offers plugin (fetchinvoice of L's offer)")
    lock = threading.Lock()
    start = time.monotonic() + 0.5
    phase.first = start

    def one(p) -> None:
        t0 = time.monotonic()
        try:
            res = p.rpc.call("fetchinvoice", {"offer": bolt12, "timeout": int(GRACE)})
        except Exception:
            return  # no answer in time: counted as sent, not answered
        t1 = time.monotonic()
        assert res.get("invoice", "").startswith("lni1"), res
        with lock:
            phase.latency.append(t1 - t0)
            phase.last = max(phase.last, t1)

    def run(p, pool) -> None:
        for k in range(count):
            schedule(start, k)
            pool.submit(one, p)

    with ThreadPoolExecutor(max_workers=int(RATE * GRACE) * len(payers) + 4) as pool:
        threads = [threading.Thread(target=run, args=(p, pool)) for p in payers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    phase.sent = count * len(payers)
    return phase


def merged(phases: list[Phase]) -> tuple[int, int, float, float, float]:
    """(sent, answered, served/s, p50 ms, p99 ms) over several phases of one kind."""
    ms = [x * 1000 for p in phases for x in p.latency]
    rate = statistics.mean(p.served_per_s for p in phases)
    return sum(p.sent for p in phases), len(ms), rate, pct(ms, 0.5), pct(ms, 0.99)


def test_served_per_second_next_to_native(node_factory):
    # A message over connectd's limit is dropped with a warning: counted as not answered, not an error.
    opts = [{"plugin": [ASYNCPAY, STAMP], "may_reconnect": True, "allow_warning": True, **LIMITS},
            {"plugin": RECORDER, "may_reconnect": True, "allow_warning": True}] + \
        [{"plugin": STAMP, "allow_warning": True} for _ in range(PAYERS)]
    lsp, r, *payers = node_factory.get_nodes(2 + PAYERS, opts=opts)
    for n in [r, *payers]:
        n.rpc.connect(lsp.info["id"], "localhost", lsp.port)
    offers, invoices = [], []
    for i in range(WALLETS):  # each wallet has a recipient id of its own at the LSP
        offer, invoice = leave_invoice(lsp, r, f"wallet-{i}")
        offers.append(offer)
        invoices.append(invoice)
    r.stop()  # every wallet sleeps: only the LSP can answer
    bolt12 = lsp.rpc.call("offer", {"amount": "1000msat", "description": "native bench"})["bolt12"]
    for p in payers:  # warm-up, not counted: each payer's first fetchinvoice
        p.rpc.call("fetchinvoice", {"offer": bolt12, "timeout": int(GRACE)})
    load = [os.getloadavg()[0]]
    ours, theirs = [], []
    for _ in range(ROUNDS):
        ours.append(asyncpay_phase(payers, offers, invoices))
        load.append(os.getloadavg()[0])
        theirs.append(native_phase(payers, bolt12))
        load.append(os.getloadavg()[0])
    to_lsp, back = split(lsp, payers[0], offers, invoices)
    served = lsp.rpc.call("asyncpay-status")["server"]["invoices_served"]
    a, n = merged(ours), merged(theirs)
    assert a[1] > 0 and n[1] > 0, (a, n)
    assert served >= a[1]
    print(f"\n{PAYERS} payer nodes x {RATE}/s offered, {SECONDS:.0f} s a phase, {ROUNDS} rounds alternated; "
          f"{WALLETS} sleeping wallets; load average during the run {min(load):.1f}-{max(load):.1f} "
          f"on {os.cpu_count()} cores")
    print(f"{'':52} {'sent':>5} {'answered':>8} {'served/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for label, (sent, got, rate, p50, p99) in ((ours[0].name, a), (theirs[0].name, n)):
        print(f"{label:52} {sent:5} {got:8} {rate:9.2f} {p50:8.1f} {p99:8.1f}")
    print(f"asyncpay / native: served rate {a[2] / n[2]:.2f}x (aim >= 1.0), "
          f"p50 {a[3] / n[3]:.2f}x, p99 {a[4] / n[4]:.2f}x (aim <= 2)")
    ms = lambda xs: f"p50 {statistics.median(xs) * 1000:.1f} ms, max {max(xs) * 1000:.1f} ms"  # noqa: E731
    print(f"one at a time ({len(back)}): payer -> L's lightningd {ms(to_lsp)}; from there to the static "
          f"invoice at the payer (notification to asyncpay, its handler, injectonionmessage, the way back) "
          f"{ms(back)}")
