"""Protocol micro-benchmarks: onion-message build and peel, static-invoice
parse and verify. Stdlib timing only; run ``python bench/bench_protocol.py``.

Each operation is run ``--iterations`` times after a warm-up, each call timed
on its own with time.perf_counter_ns; we print the median and 99th-percentile
latency in microseconds and the throughput (calls per second over the whole
timed loop) of one Python thread pinned to one CPU where the OS allows it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Works from a checkout without installing the package (its deps still needed).
sys.path.insert(0, str(ROOT / "plugin"))

from asyncpay.blinded_path import EncryptedData  # noqa: E402
from asyncpay.crypto import pubkey_of  # noqa: E402
from asyncpay.offers import Offer, StaticInvoice  # noqa: E402
from asyncpay.onion_message import (  # noqa: E402
    Forward,
    OfferPathsRequest,
    OnionMessagePayload,
    Receive,
    build_onion_message,
    build_path,
    peel_onion_message,
)

# Same place tests/conftest.py reads vectors from.
VECTORS = Path(os.environ.get("ASYNCPAY_VECTORS", ROOT.parent / "shared" / "vectors"))

SENDER, HOP_A, HOP_B, RECIPIENT = (bytes([b]) * 32 for b in (0x01, 0x02, 0x03, 0x04))
PATH_SESSION, REPLY_SESSION, ONION_SESSION = (bytes([b]) * 32 for b in (0x11, 0x12, 0x13))


def node_ids() -> dict[bytes, bytes]:
    return {s: pubkey_of(s) for s in (SENDER, HOP_A, HOP_B, RECIPIENT)}


IDS = node_ids()
# Recipient's path: A -> B -> recipient, as an LSP-hosted async receiver would publish.
PATH_HOPS = [
    (IDS[HOP_A], EncryptedData(next_node_id=IDS[HOP_B])),
    (IDS[HOP_B], EncryptedData(next_node_id=IDS[RECIPIENT])),
    (IDS[RECIPIENT], EncryptedData(path_id=bytes(range(32)))),
]
# The reply path is minted once: senders reuse theirs across messages.
REPLY_PATH = build_path(
    REPLY_SESSION,
    [(IDS[HOP_B], EncryptedData(next_node_id=IDS[SENDER])), (IDS[SENDER], EncryptedData(path_id=bytes(32)))],
)
PAYLOAD = OnionMessagePayload(offer_paths_request=OfferPathsRequest(invoice_slot=7), reply_path=REPLY_PATH)


def build_message():
    path = build_path(PATH_SESSION, PATH_HOPS)
    return build_onion_message(ONION_SESSION, path, PAYLOAD)


def final_hop_message():
    """The message as the recipient receives it (earlier hops peeled once, untimed)."""
    msg = build_message()
    for secret in (HOP_A, HOP_B):
        out = peel_onion_message(secret, msg)
        assert isinstance(out, Forward)
        msg = out.message
    return msg


def load_static_invoice() -> tuple[bytes, int]:
    path = VECTORS / "ldk" / "async-payments.json"
    if not path.exists():
        sys.exit(f"vectors not found at {path} (set ASYNCPAY_VECTORS)")
    v = json.loads(path.read_text())["static_invoice"]
    return bytes.fromhex(v["hex"]), v["created_at"]


def measure(fn: Callable[[], object], iterations: int, warmup: int) -> tuple[list[int], int]:
    for _ in range(warmup):
        fn()
    gc.collect()
    samples = []
    clock = time.perf_counter_ns
    loop_start = clock()
    for _ in range(iterations):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return samples, clock() - loop_start


def report(name: str, samples: list[int], total_ns: int) -> None:
    s = sorted(samples)
    median = statistics.median(s) / 1000
    p99 = s[min(len(s) - 1, int(0.99 * len(s)))] / 1000
    ops = len(s) / (total_ns / 1e9)
    print(f"{name:<44} {median:>10.1f} {p99:>10.1f} {ops:>10.0f}")


def pin_one_cpu() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=100)
    args = ap.parse_args()

    # Check each operation's result once, outside the timed loops.
    msg = build_message()
    assert len(msg.packet) == 1366, len(msg.packet)
    final = final_hop_message()
    received = peel_onion_message(RECIPIENT, final)
    assert isinstance(received, Receive) and received.payload.offer_paths_request.invoice_slot == 7
    raw, created_at = load_static_invoice()
    inv = StaticInvoice.decode(raw)
    assert len(inv.invoice_paths) == 2 and len(inv.invoice_held_htlc_available_paths) == 2
    inv.validate(now=created_at + 1)

    def parse_and_verify() -> None:
        StaticInvoice.decode(raw).validate(now=created_at + 1)

    # An offer carrying 32 KB of optional feature bits: the feature scan must
    # stay linear (a bit-by-bit scan took about a second).
    big_features = Offer(offer_issuer_id=msg.path_key, offer_features=b"\xaa" * 32_000).encode()

    ops = [
        ("onion message: build 3-hop path + 1366B msg", build_message),
        ("onion message: peel as final hop", lambda: peel_onion_message(RECIPIENT, final)),
        (f"static invoice: parse + verify ({len(raw)}B)", parse_and_verify),
        ("offer with 32 KB of feature bits: decode", lambda: Offer.decode(big_features)),
    ]
    print(f"python {platform.python_version()} ({platform.python_implementation()}), "
          f"{pin_one_cpu()}, {args.iterations} iterations after {args.warmup} warm-up")
    print(f"{'operation':<44} {'median us':>10} {'p99 us':>10} {'ops/s':>10}")
    for name, fn in ops:
        report(name, *measure(fn, args.iterations, args.warmup))


if __name__ == "__main__":
    main()
