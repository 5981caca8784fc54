"""What asyncpay exports to Prometheus, without any I/O (docs/metrics.md).

* ``MetricsConfig``: ``asyncpay-metrics-listen`` and ``asyncpay-metrics-public``;
  a non-loopback address is refused unless made public on purpose (the
  figures tell a stranger how many wallets sleep and how much is held).
* ``Timings``: latency histograms of the hot paths, filled by one-line
  instrumentation in the adapters (``timed``, ``answering`` and ``replied``);
  in memory, per process, as Prometheus histograms are.
* ``counter_metric``: the Prometheus name and labels of each counter of the
  store (what ``asyncpay-status`` shows): ``dropped_<reason>`` becomes
  ``asyncpay_server_dropped_total{reason="<reason>"}``, any counter no
  family names becomes ``asyncpay_<name>_total``. Names follow Prometheus'
  conventions (https://prometheus.io/docs/practices/naming/): a
  ``asyncpay_`` prefix, ``_total`` for counters, base units (seconds, bytes).

``cln/metrics.py`` reads these and the store and serves ``/metrics``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .config import option

F = TypeVar("F", bound=Callable)


# -- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class ListenAddress:
    host: str  # an IP address literal, or "localhost"
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        return ipaddress.ip_address(self.host).is_loopback


def parse_listen(value: str) -> ListenAddress:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6); ValueError with what was expected."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]*):(\d{1,5})", value.strip())
    if m is None:
        raise ValueError(f"asyncpay-metrics-listen: must be HOST:PORT (e.g. 127.0.0.1:9750), got {value!r}")
    host = m.group(1) or m.group(3) or ""
    port = int(m.group(2) or m.group(4))
    if not 0 < port < 65536:
        raise ValueError(f"asyncpay-metrics-listen: port must be 1-65535, got {port}")
    if host != "localhost":
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            raise ValueError(f"asyncpay-metrics-listen: HOST must be an IP address or localhost, got {host!r} "
                             "(an empty host would listen on every interface)") from None
    return ListenAddress(host, port)


@dataclass
class MetricsConfig:
    metrics_listen: str = option(
        None, "HOST:PORT to serve Prometheus metrics on at /metrics (e.g. 127.0.0.1:9750); unset: no server.")
    metrics_public: bool = option(
        False, "Allow asyncpay-metrics-listen on an address other than loopback (the metrics tell anyone who "
               "can reach them how many wallets sleep and how much is held).")

    def listen(self) -> ListenAddress | None:
        return parse_listen(self.metrics_listen) if self.metrics_listen else None

    def validate(self) -> None:
        address = self.listen()
        if address is not None and not address.loopback and not self.metrics_public:
            raise ValueError(f"asyncpay-metrics-listen: {address.host} is not a loopback address; "
                             "set asyncpay-metrics-public=true to serve metrics on it")


# -- latency histograms -------------------------------------------------------------------------

# Seconds. An answer to a payer takes milliseconds; a webhook call up to its
# HTTP timeout (asyncpay-lsps5-http-timeout, 5 s by default).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# name -> what it measures (the histogram is asyncpay_<name>_seconds).
HISTOGRAMS = {
    "reply": "From a message for our endpoint to each answer injected, by what was sent "
             "(reply=\"static_invoice\": invoice_request to static invoice).",
    "hold_decision": "From a hold request in htlc_accepted to its verdict (held, forwarded or failed).",
    "release_forward": "From a release_held_htlc to the held HTLC's continue.",
    "webhook_call": "One LSPS5 webhook call (checks, signature, HTTPS POST).",
}


@dataclass
class Histogram:
    """Cumulative-free counts per bucket (the last one is +Inf), their sum."""

    counts: list[int]
    sum: float = 0.0

    @classmethod
    def empty(cls) -> Histogram:
        return cls([0] * (len(BUCKETS) + 1))

    def observe(self, seconds: float) -> None:
        i = next((i for i, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))
        self.counts[i] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus' buckets: (upper bound, observations at or below it)."""
        out, total = [], 0
        for bound, n in zip((*[repr(b) for b in BUCKETS], "+Inf"), self.counts):
            total += n
            out.append((bound, total))
        return out


class Timings:
    """The histograms, by (name, label value); bounded: names are ours, label
    values are the purposes of our own messages."""

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._h: dict[tuple[str, str], Histogram] = {}

    def observe(self, name: str, seconds: float, label: str = "") -> None:
        with self._mu:
            self._h.setdefault((name, label), Histogram.empty()).observe(seconds)

    def snapshot(self) -> dict[tuple[str, str], Histogram]:
        with self._mu:
            return {k: Histogram(list(h.counts), h.sum) for k, h in self._h.items()}

    def clear(self) -> None:
        with self._mu:
            self._h.clear()


TIMINGS = Timings()  # the process's: one plugin per process
_answering = threading.local()


def timed(name: str) -> Callable[[F], F]:
    """Decorator: each call's duration goes to histogram ``name`` (raised or not)."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                TIMINGS.observe(name, time.perf_counter() - start)

        return inner  # type: ignore[return-value]

    return wrap


def answering(fn: F) -> F:
    """Decorator of the handler of one incoming message: ``replied`` in its
    thread while it runs measures from its start."""

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        outer = getattr(_answering, "start", None)  # nested: a handler whose answer is delivered in-process
        _answering.start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _answering.start = outer

    return inner  # type: ignore[return-value]


def replied(purpose: str) -> None:
    """An answer (``InjectOnion.purpose``) left while a message was handled."""
    start = getattr(_answering, "start", None)
    if start is not None:
        TIMINGS.observe("reply", time.perf_counter() - start, purpose)


# -- counters of the store ------------------------------------------------------------------------

# Longest prefix first: "mailbox_dropped_x" is not a "dropped_" of the server.
COUNTER_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("mailbox_not_queued_", "asyncpay_mailbox_not_queued_total", "purpose"),
    ("mailbox_dropped_", "asyncpay_mailbox_dropped_total", "reason"),
    ("wake_not_held_", "asyncpay_wake_not_held_total", "reason"),
    ("lsps5_refused_", "asyncpay_lsps5_refused_total", "reason"),
    ("lsps5_dropped_", "asyncpay_lsps5_dropped_total", "reason"),
    ("payer_dropped_", "asyncpay_payer_dropped_total", "reason"),
    ("claim_failed_", "asyncpay_recipient_claims_failed_total", "reason"),
    ("hold_refused_", "asyncpay_hold_refused_total", "reason"),
    ("hold_dropped_", "asyncpay_hold_dropped_total", "reason"),
    ("hold_failed_", "asyncpay_hold_failed_total", "reason"),
    ("wake_failed_", "asyncpay_wake_failed_total", "reason"),
    ("lsps5_sent_", "asyncpay_webhook_calls_total", "result"),
    ("dropped_", "asyncpay_server_dropped_total", "reason"),
    ("sent_", "asyncpay_onion_messages_sent_total", "purpose"),
)
_NAME = re.compile(r"[^a-zA-Z0-9_]")
# Exported as 0 before their first increment: rate() over a series whose
# first sample is already 1 shows nothing (the dashboard's panels use these).
COUNTERS_FROM_ZERO = ("invoices_served", "lsps5_sent_ok", "lsps5_sent_failed", "lsps5_given_up", "hold_held",
                      "hold_released", "payer_payments_sent", "payer_payments_failed",
                      "recipient_payments_received")


def counter_metric(name: str) -> tuple[str, dict[str, str]]:
    """The Prometheus counter (its name with ``_total``, and labels) of the store's counter ``name``."""
    for prefix, metric, label in sorted(COUNTER_FAMILIES, key=lambda f: -len(f[0])):
        if name.startswith(prefix) and len(name) > len(prefix):
            return metric, {label: name[len(prefix):]}
    return f"asyncpay_{_NAME.sub('_', name)}_total", {}


def counter_families(counters: dict[str, int]) -> dict[str, list[tuple[dict[str, str], int]]]:
    """Every counter, grouped by Prometheus metric: metric -> [(labels, value)]."""
    out: dict[str, list[tuple[dict[str, str], int]]] = {}
    for name, value in sorted({**dict.fromkeys(COUNTERS_FROM_ZERO, 0), **counters}.items()):
        metric, labels = counter_metric(name)
        out.setdefault(metric, []).append((labels, value))
    return out
