"""LSPS5 webhooks and hold for wake-up in one process, without CLN (issue
16): SQLite store in a temporary directory with the plugin's settings (WAL,
synchronous=FULL), already holding ``--clients`` clients with webhooks.

* set_webhook: ``WebhookService.handle`` of a new registration: params, URL
  parse and guard, limits, the row committed (fsync) before the answer;
* notify: ``WebhookService.notify`` of one client with 5 webhooks: cooldown
  read and written, 5 signed-to-be bodies;
* wake decision: ``WakeHolder.accept`` of an HTLC for an offline client
  (limits, budget, row committed), then ``connected`` releasing it;
* webhook call: ``Lsps5Role.deliver`` to a local HTTPS server (trustme CA):
  URL guard, timestamp, signature (coincurve, as CLN's signmessage would),
  a fresh TLS connection, the POST and its status. Each sender thread makes
  these one after another, so this bounds its calls per second
  (bench_lsps5_fairness.py: the wait of an honest client under attack).

Run ``python bench/bench_lsps5.py [--clients N] [--iterations N]``.
"""

from __future__ import annotations

import argparse
import http.server
import os
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugin"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_lsp import report  # noqa: E402

from asyncpay.lsps import lsps0  # noqa: E402
from asyncpay.lsps import notifications as n  # noqa: E402
from asyncpay.lsps.config import Lsps5Config  # noqa: E402
from asyncpay.lsps.wake_hold import WakeCandidate, WakeHolder  # noqa: E402
from asyncpay.lsps.webhooks import WebhookService  # noqa: E402
from asyncpay.store import Store  # noqa: E402

NOW, HEIGHT = int(time.time()), 800_000


def peer(i: int) -> str:
    return f"02{i:064x}"


def set_request(i: int, app: str = "w") -> lsps0.Request:
    return lsps0.Request(f"r{i}", "lsps5.set_webhook", {"app_name": app, "webhook": f"https://push.example.org/{i}"})


def bench_service(d: str, clients: int, iterations: int) -> None:
    store = Store(os.path.join(d, "lsps5.sqlite3"), synchronous="FULL")
    cfg = Lsps5Config(lsps5_max_clients=10**7, lsps5_set_burst=10**6)
    svc = WebhookService(store, cfg)
    t = time.perf_counter()
    with store.tx():
        for i in range(clients):
            svc.handle(peer(i), set_request(i), NOW, True)
    print(f"registered {clients:,} clients in {time.perf_counter() - t:.1f} s (not the figure)")
    samples, t0 = [], time.perf_counter_ns()
    for i in range(iterations):
        s = time.perf_counter_ns()
        svc.handle(peer(clients + i), set_request(i), NOW, True)
        samples.append(time.perf_counter_ns() - s)
    report(f"set_webhook with {clients:,} clients (checks, guard, commit before the answer)", samples,
           time.perf_counter_ns() - t0, "registrations", "p50 < 5 ms", sorted(samples)[len(samples) // 2] < 5e6)
    for k in range(4):
        svc.handle(peer(0), set_request(0, f"app{k}"), NOW, True)
    samples, t0 = [], time.perf_counter_ns()
    for i in range(iterations):
        svc.connected(peer(0))
        s = time.perf_counter_ns()
        svc.notify(peer(0), n.PAYMENT_INCOMING, NOW + i)
        samples.append(time.perf_counter_ns() - s)
    report("notify one client with 5 webhooks (cooldown read and written, 5 calls)", samples,
           time.perf_counter_ns() - t0, "notifications", "p50 < 2 ms", sorted(samples)[len(samples) // 2] < 2e6)
    holder = WakeHolder(store, Lsps5Config(wake_max_per_peer=10**6, wake_max_total=10**7))
    samples, t0 = [], time.perf_counter_ns()
    for i in range(iterations):
        h = WakeCandidate(f"1x1x1/{i}", peer(i % 100), os.urandom(32), 10_000, HEIGHT + 200, HEIGHT + 100)
        s = time.perf_counter_ns()
        holder.accept(h, False, True, HEIGHT, NOW)
        holder.connected(peer(i % 100), HEIGHT, NOW)
        samples.append(time.perf_counter_ns() - s)
    report("wake decision: hold an HTLC for an offline client, release it on connect (two commits)", samples,
           time.perf_counter_ns() - t0, "htlcs", "p50 < 5 ms", sorted(samples)[len(samples) // 2] < 5e6)
    store.close()


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def bench_calls(d: str, iterations: int) -> None:
    try:
        import trustme
    except ImportError:
        print("webhook call: skipped (trustme, a test dependency, is not installed)")
        return
    from asyncpay.cln.lsps5 import Lsps5Role
    from lsps5_host import CLIENT, FakeHost

    ca = trustme.CA()
    ca_file = os.path.join(d, "ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    host = FakeHost(os.path.join(d, "calls.sqlite3"), lsps5_allow_hosts="127.0.0.1", lsps5_ca_file=ca_file)
    role = Lsps5Role(host)
    url = f"https://127.0.0.1:{srv.server_address[1]}/push"
    samples, t0 = [], time.perf_counter_ns()
    for _ in range(iterations):
        c = n.Call(CLIENT, "w", url, n.PAYMENT_INCOMING, n.body(n.PAYMENT_INCOMING))
        s = time.perf_counter_ns()
        status = role.deliver(c)
        samples.append(time.perf_counter_ns() - s)
        assert status == "200", status
    report("webhook call to a local HTTPS server (guard, sign, new TLS connection, POST, status)", samples,
           time.perf_counter_ns() - t0, "calls", "p50 < 50 ms", sorted(samples)[len(samples) // 2] < 5e7)
    srv.shutdown()
    srv.server_close()
    host.store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=10_000)
    ap.add_argument("--iterations", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        bench_service(d, args.clients, args.iterations)
        bench_calls(d, min(args.iterations, 200))


if __name__ == "__main__":
    main()
