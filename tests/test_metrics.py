"""Prometheus metrics without a daemon (issue 25): the exposition parses,
names follow Prometheus' conventions, every counter of ``asyncpay-status``
is there, a public address is refused unless allowed, and a scrape never
writes nor waits on the node lock."""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.request
from dataclasses import fields
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from asyncpay import metrics as m
from asyncpay import payment_log
from asyncpay.cln import metrics as cm
from asyncpay.cln import options as opts
from asyncpay.cln import views
from test_hold import hook_params, release_of
from test_recipient_flow import Flow

DOCS = Path(__file__).resolve().parent.parent / "docs"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def scrape(collector: cm.NodeCollector) -> dict[str, dict]:
    """name -> {"type", "samples": {(sample name, labels...): value}} as a Prometheus server parses it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = {"type": fam.type, "help": fam.documentation,
                         "samples": {(s.name, *sorted(s.labels.items())): s.value for s in fam.samples}}
    return out


def value(families: dict, sample: str, **labels) -> float:
    for fam in families.values():
        for key, v in fam["samples"].items():
            if key[0] == sample and dict(key[1:]) == labels:
                return v
    raise KeyError((sample, labels))


@pytest.fixture
def flow(tmp_path):
    f = Flow(tmp_path)
    m.TIMINGS.clear()
    return f


def held_htlc(flow) -> tuple[dict, list[dict]]:
    answers: list[dict] = []
    params = hook_params(flow)
    assert flow.lsp.hold.on_htlc(params, answers.append) and answers == []
    return params, answers


# -- the exposition ---------------------------------------------------------------------------


def test_exposition_parses_with_conventional_names_units_and_types(flow):
    clock = Clock()
    held_htlc(flow)
    fams = scrape(cm.NodeCollector(flow.lsp, clock=clock))
    assert fams, "nothing exported"
    for name, fam in fams.items():
        assert re.fullmatch(r"asyncpay_[a-z0-9_]+", name), name
        assert fam["help"], name
        if fam["type"] == "counter":
            assert all(k[0] == f"{name}_total" or k[0] == f"{name}_created" for k in fam["samples"]), name
        if fam["type"] == "histogram":
            assert name.endswith("_seconds"), name  # base unit
            assert not fam["samples"] or any(k[0] == f"{name}_bucket" and ("le", "+Inf") in k
                                             for k in fam["samples"]), name
        if re.search(r"_(age|latency)(_|$)", name):
            assert name.endswith("_seconds"), name
        assert not re.search(r"_(ms|millis|milliseconds|minutes|kb|mb)(_|$)", name), name
    assert fams["asyncpay_held_htlcs"]["type"] == "gauge"
    assert value(fams, "asyncpay_held_htlcs") == 1
    assert value(fams, "asyncpay_hold_decision_seconds_count") == 1
    assert value(fams, "asyncpay_store_up") == 1 and value(fams, "asyncpay_store_lock_lost") == 0
    for gauge in ("asyncpay_mailbox_peer_messages_max", "asyncpay_static_invoices", "asyncpay_webhooks",
                  "asyncpay_wake_held_htlcs", "asyncpay_held_htlcs_oldest_age_seconds", "asyncpay_mailbox_bytes"):
        assert fams[gauge]["type"] == "gauge", gauge
    assert {"sleeping", "flushing"} == {dict(k[1:])["state"] for k in fams["asyncpay_mailbox_messages"]["samples"]}


def test_held_gauge_goes_up_then_down_and_the_release_is_timed(flow):
    clock = Clock()
    collector = cm.NodeCollector(flow.lsp, clock=clock)
    assert value(scrape(collector), "asyncpay_held_htlcs") == 0
    params, answers = held_htlc(flow)
    assert value(scrape(collector), "asyncpay_held_htlcs") == 0  # within SNAPSHOT_MAX_AGE: the same figures
    clock.t += cm.SNAPSHOT_MAX_AGE
    assert value(scrape(collector), "asyncpay_held_htlcs") == 1
    key = f"{params['htlc']['short_channel_id']}/{params['htlc']['id']}"
    flow.lsp.hold.on_message(release_of(key), int(time.time()))
    assert answers[0]["result"] == "continue"
    clock.t += cm.SNAPSHOT_MAX_AGE
    fams = scrape(collector)
    assert value(fams, "asyncpay_held_htlcs") == 0
    assert value(fams, "asyncpay_release_forward_seconds_count") == 1
    assert value(fams, "asyncpay_payment_state_changes_total", role="hold", state="forwarded") >= 1


def test_every_counter_of_asyncpay_status_is_exported_with_its_value(flow):
    flow.setserver()
    flow.offer()  # offer paths, a stored static invoice, messages sent
    held_htlc(flow)
    flow.lsp.books.bump("dropped_rate_limited_serve", 3)  # a family member, still pending in memory
    flow.lsp.books.bump("a_counter_no_family_names")
    fams = scrape(cm.NodeCollector(flow.lsp, clock=Clock()))
    flow.lsp.books.flush()
    counters = flow.lsp.store.counters()
    assert len(counters) >= 5
    for name, n in counters.items():
        metric, labels = m.counter_metric(name)
        assert value(fams, metric, **labels) == n, name
    assert value(fams, "asyncpay_server_dropped_total", reason="rate_limited_serve") == 3
    assert value(fams, "asyncpay_a_counter_no_family_names_total") == 1
    # The sizes asyncpay-status shows are gauges with the same values.
    status = views.status(flow.lsp, int(time.time()))
    assert value(fams, "asyncpay_static_invoices") == status["server"]["invoices"] == 1
    assert value(fams, "asyncpay_recipients") == status["server"]["recipients"]
    assert value(fams, "asyncpay_held_htlcs") == status["hold"]["held"] == 1


def test_counter_names_map_to_families_and_labels():
    assert m.counter_metric("mailbox_dropped_rate_limited") == ("asyncpay_mailbox_dropped_total",
                                                                {"reason": "rate_limited"})
    assert m.counter_metric("dropped_bad_sig") == ("asyncpay_server_dropped_total", {"reason": "bad_sig"})
    assert m.counter_metric("sent_static_invoice") == ("asyncpay_onion_messages_sent_total",
                                                       {"purpose": "static_invoice"})
    assert m.counter_metric("lsps5_sent_failed") == ("asyncpay_webhook_calls_total", {"result": "failed"})
    assert m.counter_metric("invoices_served") == ("asyncpay_invoices_served_total", {})
    assert m.counter_metric("dropped_") == ("asyncpay_dropped__total", {})  # no empty label value


# -- the address ------------------------------------------------------------------------------


@pytest.mark.parametrize("listen", ["0.0.0.0:9750", "192.168.1.5:9750", "[::]:9750", "[2001:db8::1]:9750"])
def test_a_public_address_is_refused_unless_allowed(listen):
    with pytest.raises(ValueError, match="asyncpay-metrics-listen: .* not a loopback address"):
        opts.load({"asyncpay-metrics-listen": listen})
    [cfg] = [c for c in opts.load({"asyncpay-metrics-listen": listen, "asyncpay-metrics-public": True})
             if isinstance(c, m.MetricsConfig)]
    assert cfg.listen() is not None and not cfg.listen().loopback


@pytest.mark.parametrize("listen,host,port", [("127.0.0.1:9750", "127.0.0.1", 9750), ("[::1]:1", "::1", 1),
                                              ("localhost:9750", "localhost", 9750),
                                              ("127.0.0.2:65535", "127.0.0.2", 65535)])
def test_loopback_addresses_are_accepted(listen, host, port):
    [cfg] = [c for c in opts.load({"asyncpay-metrics-listen": listen}) if isinstance(c, m.MetricsConfig)]
    assert (cfg.listen().host, cfg.listen().port) == (host, port)


@pytest.mark.parametrize("listen", [":9750", "9750", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000",
                                    "example.com:9750", "[::1]9750", "127.0.0.1:97a0"])
def test_malformed_addresses_are_refused_with_the_option_named(listen):
    with pytest.raises(ValueError, match="asyncpay-metrics-listen"):
        opts.load({"asyncpay-metrics-listen": listen})


def test_metrics_are_off_by_default():
    [cfg] = [c for c in opts.load({}) if isinstance(c, m.MetricsConfig)]
    assert cfg.listen() is None and cm.serve(None, cfg) is None


# -- reading never writes, never waits ---------------------------------------------------------


def test_a_scrape_never_writes(flow):
    flow.setserver()
    flow.offer()
    held_htlc(flow)
    flow.lsp.books.start(3600)  # deferred: increments wait in memory
    try:
        flow.lsp.books.bump("invoices_served", 2)
        statements: list[str] = []
        backend = flow.lsp.store.conn
        real = backend.execute

        def spy(sql, args=()):
            statements.append(sql)
            return real(sql, args)

        backend.execute = spy
        try:
            before = flow.lsp.books.flushes
            fams = scrape(cm.NodeCollector(flow.lsp, clock=Clock()))
        finally:
            backend.execute = real
        assert statements, "the scrape read nothing"
        assert all(s.lstrip().upper().startswith("SELECT") for s in statements), statements
        assert flow.lsp.books.flushes == before and flow.lsp.books.pending() >= 1  # nothing flushed
        assert value(fams, "asyncpay_invoices_served_total") >= 2  # yet the pending increments count
    finally:
        flow.lsp.books.stop()


def test_a_scrape_does_not_wait_for_a_busy_node(flow):
    held_htlc(flow)
    taken, release = threading.Event(), threading.Event()

    def busy():
        with flow.lsp.lock:
            taken.set()
            release.wait(10)

    t = threading.Thread(target=busy)
    t.start()
    taken.wait(5)
    try:
        start = time.monotonic()
        fams = scrape(cm.NodeCollector(flow.lsp, clock=Clock()))
        assert time.monotonic() - start < 2
    finally:
        release.set()
        t.join()
    assert value(fams, "asyncpay_held_htlcs") == 1  # the store's figures need no node lock
    assert "asyncpay_mailbox_flushes" not in fams  # the in-memory ones wait for a free lock only briefly


def test_a_store_that_cannot_be_read_is_reported_down(flow):
    held_htlc(flow)

    def broken(sql, args=()):
        raise OSError("disk gone")

    flow.lsp.store.conn.execute = broken
    fams = scrape(cm.NodeCollector(flow.lsp, clock=Clock()))
    assert value(fams, "asyncpay_store_up") == 0
    assert "asyncpay_held_htlcs" not in fams
    assert "asyncpay_hold_held" not in fams  # no counter falls back to what is pending (a false reset)


# -- timings ---------------------------------------------------------------------------------------


def test_timed_and_reply_histograms_count_each_call():
    t = m.Timings()
    h = m.Histogram.empty()
    for s in (0.0005, 0.003, 0.003, 20.0):
        h.observe(s)
    cumulative = dict(h.cumulative())
    assert cumulative["0.001"] == 1 and cumulative["0.005"] == 3 and cumulative["10.0"] == 3
    assert cumulative["+Inf"] == h.count == 4 and h.sum == pytest.approx(20.0065)
    m.TIMINGS.clear()

    @m.answering
    def handle(purposes):
        for p in purposes:
            m.replied(p)

    handle(["static_invoice", "invoice_request"])
    m.replied("static_invoice")  # outside a handled message: not a reply
    snap = m.TIMINGS.snapshot()
    assert snap[("reply", "static_invoice")].count == 1 and snap[("reply", "invoice_request")].count == 1

    @m.timed("webhook_call")
    def fails():
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        fails()
    assert m.TIMINGS.snapshot()[("webhook_call", "")].count == 1
    assert t.snapshot() == {}


def test_a_served_static_invoice_is_timed_from_its_invoice_request(flow):
    flow.setserver()
    offer = flow.offer()
    flow.net.disconnect(flow.lnode, flow.rnode)
    _req, onion = flow.payer.invoice_request(offer, amount=50_000)
    flow.send(onion)
    assert flow.inbox.take().static_invoice
    fams = scrape(cm.NodeCollector(flow.lsp, clock=Clock()))
    assert value(fams, "asyncpay_reply_seconds_count", reply="static_invoice") == 1
    assert value(fams, "asyncpay_onion_messages_sent_total", purpose="static_invoice") >= 1


# -- the server ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_are_served_over_http_on_loopback(flow):
    held_htlc(flow)
    port = free_port()
    server, _collector = cm.serve(flow.lsp, m.MetricsConfig(metrics_listen=f"127.0.0.1:{port}"))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            text = r.read().decode()
    finally:
        server.shutdown()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert [s.value for s in fams["asyncpay_held_htlcs"].samples] == [1]
    assert "process_resident_memory_bytes" in text


# -- docs ---------------------------------------------------------------------------------------------


def test_metric_options_and_every_metric_are_documented(flow):
    config = (DOCS / "configuration.md").read_text()
    for f in fields(m.MetricsConfig):
        assert f"| `{opts.option_name(f.name)}` |" in config, f.name
    doc = (DOCS / "metrics.md").read_text()
    held_htlc(flow)
    fams = scrape(cm.NodeCollector(flow.lsp, clock=Clock()))
    for name in fams:
        if name.startswith("asyncpay_") and not name.startswith("asyncpay_a_counter"):
            assert f"`{name}" in doc, name
    for _prefix, metric, label in m.COUNTER_FAMILIES:
        assert f"`{metric.removesuffix('_total')}" in doc and label in doc, metric


def test_the_dashboards_counters_start_at_zero(flow):
    """rate() sees no increase in a series born at 1: these exist from the start."""
    payment_log.STATE_CHANGES.clear()  # process-wide: other tests in this process changed payments
    fams = scrape(cm.NodeCollector(flow.lsp, clock=Clock()))
    assert value(fams, "asyncpay_webhook_calls_total", result="failed") == 0
    assert value(fams, "asyncpay_invoices_served_total") == 0
    assert value(fams, "asyncpay_payment_state_changes_total", role="payer", state="failed") == 0
