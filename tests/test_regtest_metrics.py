"""Regtest: /metrics and the log follow an async payment on real CLN (issue 25),
on the four-node network of tests/test_regtest_hold.py::

    S (asyncpay wallet) -- Ls (asyncpay, holds) -- Lr (asyncpay) -- R (asyncpay wallet)

Ls and Lr serve /metrics on loopback. While R sleeps, Lr serves S the
static invoice (``asyncpay_invoices_served_total`` rises) and Ls holds S's
HTLC (``asyncpay_held_htlcs`` 1); R wakes and releases it, Ls forwards it
(``asyncpay_held_htlcs`` 0, the release timed). Each node's log has one
info line per state change of the payment, under its hash."""

from __future__ import annotations

import re
import urllib.request

from regtest import require_binaries, wait_for

require_binaries()

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from pyln.testing.fixtures import *  # noqa: E402,F401,F403
from pyln.testing.utils import reserve_unused_port  # noqa: E402

from test_regtest_hold import assert_complete, four_nodes, start_held_payment, wake  # noqa: E402


def scrape(port: int) -> dict[tuple, float]:
    """(sample name, sorted labels...) -> value, as Prometheus parses /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    return {(s.name, *sorted(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def sample(port: int, name: str, **labels) -> float:
    return scrape(port).get((name, *sorted(labels.items())), 0.0)


def test_metrics_follow_a_held_async_payment(node_factory):
    ls_port, lr_port = reserve_unused_port(), reserve_unused_port()
    s, ls, lr, r = four_nodes(node_factory, ls_opts={"asyncpay-metrics-listen": f"127.0.0.1:{ls_port}"},
                              lr_opts={"asyncpay-metrics-listen": f"127.0.0.1:{lr_port}"})
    assert ls.daemon.is_in_log(re.escape(f"metrics: serving /metrics on 127.0.0.1:{ls_port}"))
    assert sample(ls_port, "asyncpay_held_htlcs") == 0
    assert sample(ls_port, "asyncpay_store_up") == 1
    served = sample(lr_port, "asyncpay_invoices_served_total")

    pay = start_held_payment(s, ls, lr, r)  # R asleep: Lr serves the static invoice, Ls holds the HTLC
    wait_for(lambda: sample(ls_port, "asyncpay_held_htlcs") == 1, what="held gauge 1")
    assert sample(lr_port, "asyncpay_invoices_served_total") > served
    assert sample(lr_port, "asyncpay_reply_seconds_count", reply="static_invoice") >= 1
    assert sample(lr_port, "asyncpay_mailbox_messages", state="sleeping") >= 1  # held_htlc_available for R
    assert sample(lr_port, "asyncpay_mailbox_peers", state="sleeping") == 1
    assert sample(ls_port, "asyncpay_hold_decision_seconds_count") == 1

    wake(r, lr)  # R releases, Ls forwards, R claims
    wait_for(lambda: sample(ls_port, "asyncpay_held_htlcs") == 0, what="held gauge 0")
    assert_complete(s, r, pay)
    ls_after = scrape(ls_port)
    assert ls_after[("asyncpay_release_forward_seconds_count",)] == 1
    assert ls_after[("asyncpay_payment_state_changes_total", ("role", "hold"), ("state", "forwarded"))] == 1
    assert ls_after[("asyncpay_hold_released_total",)] == 1
    wait_for(lambda: sample(lr_port, "asyncpay_mailbox_messages", state="sleeping") == 0, what="mailbox emptied")

    # The log: one info line per state change, greppable by the payment hash.
    h = pay["payment_hash"]
    for node, role, states in ((ls, "hold", ("held", "released", "forwarded")),
                               (r, "recipient", ("received", "claimed")),
                               (s, "payer", ("paying", "held_at_lsp", "complete"))):
        for state in states:
            assert node.daemon.is_in_log(rf"INFO .*payment {h} {role}: {state}"), (role, state)
    assert s.daemon.is_in_log(rf"INFO .*payment - payer: requesting \(id {pay['id']}\)")
    # No info line per onion message at the LSPs (served invoices, mail, releases are debug).
    for node in (ls, lr):
        assert not node.daemon.is_in_log(r"INFO .*(offer paths for|stored static invoice|static invoice for)")
