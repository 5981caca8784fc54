"""The holding LSP in one process, without CLN (issue 8): SQLite store in a
temporary directory with the plugin's settings (WAL, synchronous=FULL),
already holding ``--held`` HTLCs (10,000 by default) for 100 peers.

* hold decision: ``Holder.accept`` of a new HTLC: limits (held per peer and
  in all), CLTV budget, the row committed, the reply path minted and the
  ``held_htlc_available`` onion built;
* release lookup: ``Holder.release`` of a ``release_held_htlc`` naming one of
  the held HTLCs: the row found, checked, marked released, committed.

Run ``python bench/bench_hold.py [--held N] [--iterations N]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugin"))

from bench_lsp import report  # noqa: E402
from bench_recipient import LSP, lsp_path  # noqa: E402

from asyncpay.crypto import pubkey_of  # noqa: E402
from asyncpay.endpoint import Delivered, Endpoint  # noqa: E402
from asyncpay.hold import HoldConfig, Holder, HtlcToHold  # noqa: E402
from asyncpay.hold.holder import RELEASE  # noqa: E402
from asyncpay.hold.records import HeldRow  # noqa: E402
from asyncpay.onion_message import OnionMessagePayload, ReleaseHeldHtlc  # noqa: E402
from asyncpay.payment import HopPayload  # noqa: E402
from asyncpay.payment.hold_request import HoldRequest  # noqa: E402
from asyncpay.store import Store  # noqa: E402

HEIGHT, NOW = 800_000, int(time.time())
PEERS = [f"02{i:064x}" for i in range(100)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--held", type=int, default=10_000)
    ap.add_argument("--iterations", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        store = Store(str(Path(d) / "hold.sqlite3"), synchronous="FULL")
        endpoint = Endpoint(store, pubkey_of(LSP), os.urandom(32), os.urandom)
        cfg = HoldConfig(hold_max_per_peer=10**6, hold_max_total=10**7)
        holder = Holder(store, endpoint, cfg, lambda i: i.node_id)
        payload = HopPayload(amt_to_forward=10_000, outgoing_cltv_value=HEIGHT + 500, short_channel_id=7).encode()
        t = time.perf_counter()
        with store.tx():
            for i in range(args.held):
                holder.records.put(HeldRow(f"1x1x1/{i}", os.urandom(32), 10_100, HEIGHT + 540, HEIGHT + 500,
                                           PEERS[i % len(PEERS)], payload, since=NOW, updated_at=NOW))
        print(f"filled {args.held:,} held HTLCs in {time.perf_counter() - t:.1f} s (not the figure)")
        request = HoldRequest(held_htlc_available_paths=[lsp_path()])
        samples, t0 = [], time.perf_counter_ns()
        for i in range(args.iterations):
            h = HtlcToHold(f"2x2x2/{i}", os.urandom(32), 10_100, HEIGHT + 540, HEIGHT + 500, PEERS[i % len(PEERS)],
                           payload, request, (True,))  # a wallet on a private channel
            s = time.perf_counter_ns()
            holder.accept(h, HEIGHT, NOW)
            samples.append(time.perf_counter_ns() - s)
        report(f"hold decision with {args.held:,} held (limits, budget, commit, held_htlc_available onion)",
               samples, time.perf_counter_ns() - t0, "htlcs", "p50 < 2 ms", sorted(samples)[len(samples) // 2] < 2e6)
        samples, t0 = [], time.perf_counter_ns()
        for i in range(args.iterations):
            d = Delivered(RELEASE, f"1x1x1/{(i * 7919) % args.held}", None,
                          OnionMessagePayload(release_held_htlc=ReleaseHeldHtlc()), b"")
            s = time.perf_counter_ns()
            holder.release(d, HEIGHT, NOW)
            samples.append(time.perf_counter_ns() - s)
        report(f"release lookup among {args.held:,} held (find, check, mark released, commit)", samples,
               time.perf_counter_ns() - t0, "releases", "p50 < 2 ms", sorted(samples)[len(samples) // 2] < 2e6)
        store.close()
    with tempfile.TemporaryDirectory() as d:
        release_to_forward(Path(d), args.held, args.iterations)


def release_to_forward(tmp: Path, held: int, iterations: int) -> None:
    """The adapter (cln/hold.py HoldRole) from a ``release_held_htlc`` for V
    to ``continue`` handed to the HTLC's open htlc_accepted call, over a stub
    node (no RPC). Before: ``_run(release(...))``, as the adapter did it
    (released mark, counter, forwarded mark: three commits). Now:
    ``on_message``: one commit, the counter in it."""
    import threading
    import types

    from asyncpay.bookkeeping import Bookkeeping
    from asyncpay.cln.hold import HoldRole

    store = Store(str(tmp / "hold.sqlite3"), synchronous="FULL")
    node = types.SimpleNamespace(
        store=store, endpoint=Endpoint(store, pubkey_of(LSP), os.urandom(32), os.urandom), lock=threading.RLock(),
        log=lambda *a, **k: None, perform=lambda actions: None, resolve_intro=lambda i: i.node_id,
        config_for=lambda cls: HoldConfig(hold_max_per_peer=10**6, hold_max_total=10**7),
        cltv_delta=34, current_height=lambda: HEIGHT, saw_height=lambda height: None)
    node.books = Bookkeeping(store, node.lock)
    role = HoldRole(node)
    payload = HopPayload(amt_to_forward=10_000, outgoing_cltv_value=HEIGHT + 500, short_channel_id=7).encode()
    with store.tx():
        for i in range(held):
            role.core.records.put(HeldRow(f"1x1x1/{i}", os.urandom(32), 10_100, HEIGHT + 540, HEIGHT + 500,
                                          PEERS[i % len(PEERS)], payload, since=NOW, updated_at=NOW))
    release = OnionMessagePayload(release_held_htlc=ReleaseHeldHtlc())
    for label, first in (("before: three commits", 0), ("now: one commit", iterations)):
        if first:
            node.books.start()
        answered: list[int] = []
        samples, t0 = [], time.perf_counter_ns()
        for i in range(first, first + iterations):
            key = f"1x1x1/{i}"
            role.waiting.open(key, lambda answer, answered=answered: answered.append(time.perf_counter_ns()),
                              role.core.answer_by(role.core.records.get(key)))
            d = Delivered(RELEASE, key, None, release, b"")
            s = time.perf_counter_ns()
            if first:
                role.on_message(d, NOW)
            else:
                role._run(role.core.release(d, HEIGHT, NOW), NOW)
            samples.append(answered[-1] - s)
        assert len(answered) == iterations and not role.waiting
        report(f"release_held_htlc -> continue answered (HoldRole), {held:,} held, {label}", samples,
               time.perf_counter_ns() - t0, "releases", "p50 < 1 ms", sorted(samples)[len(samples) // 2] < 1e6)
    node.books.stop()
    assert store.counters()["hold_released"] == 2 * iterations
    store.close()


if __name__ == "__main__":
    main()
