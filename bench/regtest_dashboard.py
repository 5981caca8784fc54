"""Fill the Grafana dashboard (docs/grafana/asyncpay.json) from a real
regtest run and draw it: docs/asyncpay-dashboard.png.

    PATH=/opt/regtest/bin:$PATH RUST=0 python -m pytest bench/regtest_dashboard.py -s -q -p no:cacheprovider

Needs ``prometheus`` on PATH (Debian: ``apt-get install prometheus``) and
matplotlib. The four-node network of tests/test_regtest_hold.py::

    S (asyncpay wallet) -- Ls (asyncpay, holds) -- Lr (asyncpay) -- R (asyncpay wallet)

with ``asyncpay-metrics-listen`` on every node, scraped every 2 s by a
Prometheus of its own (a temporary directory, loopback). R registers an
LSPS5 webhook at Lr with a local HTTPS push service. Then ``ROUNDS``
rounds: R sleeps; S pays R's offer (held at Ls), Ls pays it too, a few
stock ``fetchinvoice`` are answered with the static invoice; the push
service is down in some rounds (webhook calls fail and are retried); in one
round the operator fails S's held HTLC at Ls (``asyncpay-failheld``); R
wakes after a while and the rest completes. At the end every panel's
PromQL is asked of that Prometheus (bench/dashboard_png.py) and drawn.
ASYNCPAY_DASHBOARD_PNG names another output file.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))

from regtest import ASYNCPAY, require_binaries, wait_for  # noqa: E402

require_binaries()

import dashboard_png  # noqa: E402
from pyln.client import RpcError  # noqa: E402
from pyln.testing.fixtures import *  # noqa: E402,F401,F403
from pyln.testing.utils import reserve_unused_port  # noqa: E402

from test_regtest_hold import four_nodes, wake  # noqa: E402
from test_regtest_lsps5 import LSPS_CLIENT, lsps_request, push_service  # noqa: E402,F401 (a fixture)
from test_regtest_recipient import ready_offer  # noqa: E402

ROUNDS = int(os.environ.get("ASYNCPAY_DASHBOARD_ROUNDS", "6"))
OUT = Path(os.environ.get("ASYNCPAY_DASHBOARD_PNG", ROOT / "docs" / "asyncpay-dashboard.png"))
SCRAPE, STEP = 2.0, 4.0
PROMETHEUS = shutil.which("prometheus")


class Push(http.server.BaseHTTPRequestHandler):
    """tests/test_regtest_lsps5.py's push service, answering 503 while ``server.down`` is set."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(503 if self.server.down.is_set() else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def push(push_service):  # noqa: F811 (the fixture imported above)
    srv, ca_file = push_service
    srv.RequestHandlerClass, srv.down = Push, threading.Event()
    return srv, ca_file


def start_prometheus(targets: dict[str, int], port: int, workdir: Path) -> subprocess.Popen:
    jobs = [{"targets": [f"127.0.0.1:{p}"], "labels": {"node": name}} for name, p in targets.items()]
    config = {"global": {"scrape_interval": f"{int(SCRAPE)}s", "evaluation_interval": f"{int(SCRAPE)}s"},
              "scrape_configs": [{"job_name": "asyncpay", "static_configs": jobs,
                                  "relabel_configs": [{"source_labels": ["node"], "target_label": "instance"}]}]}
    (workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}",
                             f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(workdir / "prometheus.log", "w"))

    def ready():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(ready, 60, what="prometheus ready")
    return proc


def background(fn, *args) -> threading.Thread:
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def pay(node, offer: str, amount: int, results: list) -> None:
    try:
        results.append(node.rpc.call("asyncpay-pay", {"offer": offer, "amount_msat": amount, "timeout": 10}))
    except RpcError as e:
        results.append({"error": str(e)})


def fetch(node, offer: str) -> None:
    try:  # a stock payer: it gets the static invoice, which CLN's fetchinvoice cannot use
        node.rpc.fetchinvoice(offer=offer, amount_msat=10_000, timeout=5)
    except RpcError:
        pass


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not found on PATH (Debian: apt-get install prometheus)")
def test_dashboard_from_a_regtest_run(node_factory, push, tmp_path):
    srv, ca_file = push
    ports = {name: reserve_unused_port() for name in ("S", "Ls", "Lr", "R")}

    def metrics(name: str) -> dict:
        return {"asyncpay-metrics-listen": f"127.0.0.1:{ports[name]}"}

    s, ls, lr, r = four_nodes(
        node_factory, s_opts=metrics("S"), ls_opts=metrics("Ls"),
        lr_opts={**metrics("Lr"), "asyncpay-lsps5-allow-hosts": "127.0.0.1", "asyncpay-lsps5-ca-file": ca_file,
                 "asyncpay-lsps5-retry-first": 2},
        r_opts={**metrics("R"), "plugin": [ASYNCPAY, LSPS_CLIENT]})
    url = f"https://127.0.0.1:{srv.server_address[1]}/push?device=R"
    assert lsps_request(r, lr, "lsps5.set_webhook", {"app_name": "wallet", "webhook": url})["result"]
    prom_port = reserve_unused_port()
    prom = start_prometheus(ports, prom_port, tmp_path)
    try:
        start = time.time()
        time.sleep(10)
        results: list = []
        offer = ready_offer(r, description="coffee")["bolt12"]
        for i in range(ROUNDS):
            r.stop()
            if i in (1, 4):
                srv.down.set()  # the push service fails this round's calls
            threads = [background(pay, s, offer, 30_000 + i, results), background(pay, ls, offer, 20_000 + i, results)]
            for _ in range(3 + i):
                threads.append(background(fetch, ls, offer))
                time.sleep(1.5)
            for t in threads:
                t.join(60)
            if i == 3:  # the operator gives up on S's payment of this round
                for h in ls.rpc.call("asyncpay-listheld")["held"]:
                    if h["state"] == "held":
                        ls.rpc.call("asyncpay-failheld", {"payment_hash": h["payment_hash"]})
            time.sleep(15 + 5 * (i % 3))  # R sleeps: held HTLCs age, mail waits
            wake(r, lr)
            wait_for(lambda: ls.rpc.call("asyncpay-status")["hold"]["held"] == 0, what="holds settled")
            time.sleep(10)
            srv.down.clear()
        end = time.time() + 5
        time.sleep(5)
        subtitle = (f"regtest run {datetime.fromtimestamp(start, timezone.utc):%Y-%m-%d %H:%M} UTC, "
                    f"{(end - start) / 60:.0f} min, nodes S, Ls, Lr, R; drawn by bench/dashboard_png.py from "
                    f"Prometheus query_range (not a Grafana screenshot)")
        dashboard = json.loads(dashboard_png.DASHBOARD.read_text())
        base = f"http://127.0.0.1:{prom_port}"
        dashboard_png.render(dashboard, lambda e, a, b, st: dashboard_png.query_range(base, e, a, b, st),
                             start, end, STEP, SCRAPE, OUT, subtitle)
        done = [x for x in results if x.get("status")]
        print(f"\ndashboard: {OUT} ({len(done)} payments started, {ROUNDS} rounds, {(end - start):.0f} s)")
    finally:
        prom.terminate()
        prom.wait(30)
    assert OUT.exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-s", "-q", "-p", "no:cacheprovider"]))
