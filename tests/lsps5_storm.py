"""Many hostile LSPS5 clients and one honest one, against the adapter's real
senders and loopback HTTPS push services (docs/lsps5.md, "How long an
honest client waits"). Used by tests/test_lsps5_fairness.py and
bench/bench_lsps5_fairness.py.

Each hostile client has a usable channel and five webhooks (registered
long before: their webhook_registered went out), each on a host name of
its own: a head trickled one byte at a time, ``102 Processing``
forever, a service that never answers, one answering just inside the
timeout, and a name whose look-up hangs. While the honest client is woken,
a storm thread makes every hostile client reconnect (its cooldowns start
afresh), get an HTLC held (payment_incoming to all five webhooks), mail
(onion_message_incoming) and expiry warnings with a new height each time,
so its queue and the whole queue stay full.

The honest client's HTLC is held; its push service, on payment_incoming,
marks it connected and calls ``on_connect``, which continues the HTLC.
Everything is bounded: the storm and every server thread stop at the end,
each wait has a deadline.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from asyncpay.cln.lsps5 import Lsps5Role
from asyncpay.lsps import notifications as n
from lsps5_host import FakeHost
from push_servers import PushServer

HONEST = "02" + "77" * 32
HONEST_SCID = "700x1x0"


def hostile_id(i: int) -> str:
    return f"03{i:064x}"


def wait_bound(timeout: float, senders: int, others: int) -> float:
    """The worst time from an honest client's payment_incoming being queued
    to its push service getting it (docs/lsps5.md): one call time for the
    calls running, one for a call of its own that may be running, one per
    ``senders`` other clients that may start a payment_incoming ahead of it,
    and its own call's time to reach the service."""
    return timeout * (3 + others // senders)


@dataclass
class StormResult:
    bound: float
    delays: list[float] = field(default_factory=list)  # honest: HTLC held -> payment_incoming at its service
    completed: int = 0  # honest HTLCs continued (the client woke and the payment went on)
    rounds: int = 0
    hostile_calls: int = 0  # calls the hostile services got
    hostile_htlcs: int = 0
    dropped: int = 0  # calls turned away or pushed out by the queue bounds
    stopped_cleanly: bool = False


def _htlc(incoming: str, htlc_id: int, out_scid: str, amount: int = 1000) -> dict:
    return {"onion": {"short_channel_id": out_scid, "outgoing_cltv_value": 800_100, "forward_msat": amount},
            "htlc": {"short_channel_id": incoming, "id": htlc_id, "amount_msat": amount + 100,
                     "cltv_expiry": 800_200, "cltv_expiry_relative": 200, "payment_hash": f"{htlc_id:064x}"}}


def run(tmp: Path, hostile: int = 50, rounds: int = 3, timeout: int = 1, senders: int = 8, per_host: int = 4,
        warm_up: float = 1.0, gap: float = 0.5) -> StormResult:
    ca = trustme.CA()
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    stop = threading.Event()
    woke: list[float] = []

    host = FakeHost(str(tmp / "storm.sqlite3"), lsps5_allow_hosts="127.0.0.0/8", lsps5_allow_ports="any",
                    lsps5_ca_file=str(ca_file), lsps5_http_timeout=timeout, lsps5_senders=senders,
                    lsps5_senders_per_host=per_host, lsps5_retry_first=1, wake_timeout=60)
    host.channels = [{"peer_id": p, "short_channel_id": f"{800 + i}x1x0", "state": "CHANNELD_NORMAL",
                      "spendable_msat": 10**10, "htlcs": []}
                     for i, p in enumerate([HONEST, *(hostile_id(i) for i in range(hostile))])]
    role = Lsps5Role(host)

    registered = threading.Event()

    def on_honest_call(path: str, headers: dict, body: bytes) -> None:
        registered.set()  # webhook_registered came first (LSPS5)
        if json.loads(body).get("method") == n.PAYMENT_INCOMING:
            woke.append(time.monotonic())
            host.online.add(HONEST)  # the phone wakes up and connects
            role.on_connect(HONEST)

    bad = PushServer(ca, names=("*.hostile.test",), step=0.05, max_seconds=3 * timeout + 1)
    good = PushServer(ca, names=("honest.test",), on_call=on_honest_call)

    def resolve(name: str, port: int) -> list[str]:
        if name.startswith("dns"):
            stop.wait(3 * timeout)  # a name server that takes its time (the system resolver gives up too)
        return ["127.0.0.1"]

    role.resolve = resolve
    result = StormResult(wait_bound(timeout, senders, hostile))
    answers: list[dict] = []
    try:
        for i in range(hostile):
            p = hostile_id(i)
            hooks = [f"https://c{i}.hostile.test:{bad.port}/trickle", f"https://d{i}.hostile.test:{bad.port}/102",
                     f"https://e{i}.hostile.test:{bad.port}/hang",
                     f"https://f{i}.hostile.test:{bad.port}/slow{int(timeout * 900)}",
                     f"https://dns{i}.hostile.test:{bad.port}/x"]
            for k, url in enumerate(hooks):
                _set_webhook(role, p, f"app{k}", url)
        with host.lock:  # they registered long before: their webhook_registered went out then
            for i in range(hostile):
                role.outbox.forget(hostile_id(i))
        _set_webhook(role, HONEST, "wallet", f"https://honest.test:{good.port}/wake")
        role.start()

        def storm() -> None:
            k = 0
            while not stop.is_set():
                for i in range(hostile):
                    if stop.is_set():
                        return
                    p, k = hostile_id(i), k + 1
                    host.online.add(p)
                    role.on_connect(p)  # a reconnect: cooldowns start afresh, its held HTLCs go on
                    host.online.discard(p)
                    role.on_htlc(_htlc(f"9{i}x1x0", k, f"{801 + i}x1x0"), answers.append)
                    role.notify(p, n.EXPIRY_SOON, {"timeout": 800_000 + k})
                    role.mail_queued(p)
                    result.hostile_htlcs += 1
                    stop.wait(0.01)

        stormer = threading.Thread(target=storm, daemon=True)
        stormer.start()
        stop.wait(warm_up)
        # The honest client registered before it went to sleep: its
        # webhook_registered went out (it waited its fair turn in the storm).
        if not registered.wait(wait_bound(timeout, senders, hostile)):
            raise AssertionError("the honest webhook_registered did not arrive within the bound")
        for r in range(rounds):
            host.online.discard(HONEST)
            got: list[dict] = []
            woke.clear()
            t0 = time.monotonic()
            if not role.on_htlc(_htlc(HONEST_SCID, r, "800x1x0"), got.append):
                raise AssertionError("the honest HTLC was not held")
            end = t0 + result.bound + 5
            while not (woke and got) and time.monotonic() < end:
                time.sleep(0.01)
            result.rounds += 1
            if woke:
                result.delays.append(woke[0] - t0)
            result.completed += got == [{"result": "continue"}]
            time.sleep(gap)
        result.dropped = role.outbox.dropped
        result.hostile_calls = len(bad.got)
    finally:
        stop.set()
        if "stormer" in locals():
            stormer.join(10)
        result.stopped_cleanly = role.stop(3 * timeout + 5)
        bad.close()
        good.close()
        host.store.close()
    return result


def _set_webhook(role: Lsps5Role, peer: str, app: str, url: str) -> None:
    raw = json.dumps({"jsonrpc": "2.0", "id": "s", "method": "lsps5.set_webhook",
                      "params": {"app_name": app, "webhook": url}}).encode()
    answer = json.loads(role.answer(peer, raw, int(time.time())) or b"{}")
    if "result" not in answer:
        raise AssertionError(f"set_webhook {url}: {answer}")
