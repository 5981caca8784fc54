"""Regtest benchmark of the two releases (issue 15), on the four-node async
payment of tests/test_regtest_hold.py::

    S (asyncpay wallet) -- Ls (asyncpay, holds) -- Lr (asyncpay) -- R (asyncpay wallet)

    PATH=/opt/regtest/bin:$PATH RUST=0 python -m pytest bench/regtest_release.py -s -q -p no:cacheprovider

Each run: R sleeps, S pays its offer, Ls holds the HTLC, R wakes; Lr flushes
S's ``held_htlc_available`` to R, R answers ``release_held_htlc`` to Ls, Ls
continues the HTLC. bench/plugins/stamp.py on R and Ls stamps, on the
machine-wide monotonic clock:

* **hold release-to-forward** (Ls): the release reaching Ls's V (an
  ``onionmessage_forward_fail``) until Ls forwards the HTLC (its
  ``forward_event`` "offered"): asyncpay's part and lightningd's forward;
* **recipient release** (R, approximate): the last message for R's V before
  that release (the ``held_htlc_available``) until the release reaches Ls:
  R's answer plus the two hops R -> Lr -> Ls.

``ASYNCPAY_BENCH_PLUGIN`` runs another build on every node (see
bench/regtest_roundtrip.py). No timing assertions: only that each payment
completes.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from regtest import ASYNCPAY, _bound_to_this_python, require_binaries, wait_for  # noqa: E402

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from test_regtest_hold import assert_complete, wake  # noqa: E402
from test_regtest_hold import four_nodes as hold_network  # noqa: E402
from test_regtest_recipient import ready_offer  # noqa: E402

STAMP = _bound_to_this_python(Path(__file__).resolve().parent / "plugins" / "stamp.py")
PLUGIN = os.environ.get("ASYNCPAY_BENCH_PLUGIN") or ASYNCPAY
RUNS = int(os.environ.get("ASYNCPAY_BENCH_RUNS", "5"))


def four_nodes(node_factory):
    """As tests/test_regtest_hold.py, with the stamp plugin on Ls and R."""
    stamped = {"plugin": [PLUGIN, STAMP]}
    return hold_network(node_factory, ls_opts=stamped, r_opts=stamped, plugin=PLUGIN)


def show(name: str, xs: list[float]) -> None:
    ms = sorted(x * 1000 for x in xs)
    print(f"{name}\n    runs {len(ms)}  p50 {statistics.median(ms):.1f} ms  min {ms[0]:.1f} ms  max {ms[-1]:.1f} ms")


def test_release_figures(node_factory):
    s, ls, lr, r = four_nodes(node_factory)
    offer = ready_offer(r, description="bench")["bolt12"]
    v_ls = ls.rpc.call("asyncpay-status")["endpoint_id"]
    v_r = r.rpc.call("asyncpay-status")["endpoint_id"]
    hold, release = [], []
    for i in range(RUNS):
        r.stop()
        pay = s.rpc.call("asyncpay-pay", {"offer": offer, "amount_msat": 40_000 + i, "timeout": 60})
        assert pay["status"] == "held", pay
        wait_for(lambda: lr.rpc.call("asyncpay-listmailbox")["messages"] >= 1, what="held_htlc_available at Lr")
        seen = len(ls.rpc.call("stamp-list")["stamps"])
        wake(r, lr)  # R's stamp plugin starts afresh with R
        assert_complete(s, r, pay)
        at_ls = ls.rpc.call("stamp-list", {"since": seen})["stamps"]
        got = next(x["at"] for x in at_ls if x.get("next_node_id") == v_ls)
        sent = next(x["at"] for x in at_ls if x.get("forward") == "offered" and x["at"] >= got)
        held_at_r = [x["at"] for x in r.rpc.call("stamp-list")["stamps"] if x.get("next_node_id") == v_r
                     and x["at"] <= got]
        hold.append(sent - got)
        release.append(got - held_at_r[-1])
        time.sleep(0.5)
    label = "this checkout" if PLUGIN == ASYNCPAY else PLUGIN
    print(f"\nplugin: {label}; {RUNS} async payments")
    show("hold release-to-forward at Ls (release for V -> HTLC offered to Lr)", hold)
    show("recipient release (held_htlc_available at R -> release at Ls, two hops; approx.)", release)
