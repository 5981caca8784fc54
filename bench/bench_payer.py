"""The payer in one process, without CLN (issue 7): SQLite store in a
temporary directory with the plugin's settings (WAL, synchronous=FULL).

* static invoice in -> held_htlc_available out: ``Payer.handle`` of a
  ``static_invoice`` reply: parse, verify the signature, the issuer binding,
  the offer records, expiry and chain, commit, mint the reply path and build
  the onion over the invoice's held path;
* payment onion: the onion for one static-invoice payment, our hop plus a
  channel to the introduction node plus a two-hop blinded path, the final
  payload carrying the keysend preimage and the ``invoice_request``.

Run ``python bench/bench_payer.py [--iterations N]``.
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
from bench_recipient import LSP, PAYER, lsp_path  # noqa: E402

from asyncpay.blinded_path import BlindedPayInfo, BlindedPaymentPath, EncryptedData  # noqa: E402
from asyncpay.crypto import pubkey_of  # noqa: E402
from asyncpay.endpoint import Delivered, Endpoint  # noqa: E402
from asyncpay.offers import Offer, StaticInvoice  # noqa: E402
from asyncpay.onion_message import OnionMessagePayload, build_path  # noqa: E402
from asyncpay.payer import Payer, PayerConfig  # noqa: E402
from asyncpay.payer.payer import REPLY  # noqa: E402
from asyncpay.payment.route import RouteHop, blinded_payment_onion, to_introduction  # noqa: E402
from asyncpay.store import Store  # noqa: E402

ISSUER = bytes([0x51]) * 32
RECIPIENT = bytes([0x52]) * 32


def static_invoice(now: int) -> StaticInvoice:
    """An async offer's static invoice as our recipient role builds it."""
    offer = Offer(offer_description="coffee", offer_paths=[lsp_path()], offer_issuer_id=pubkey_of(ISSUER))
    pay = build_path(os.urandom(32), [
        (pubkey_of(LSP), EncryptedData(short_channel_id=1)),
        (pubkey_of(RECIPIENT), EncryptedData(path_id=os.urandom(32))),
    ])
    info = BlindedPayInfo(1000, 100, 58, 1, 10**10)
    held = build_path(os.urandom(32), [(pubkey_of(LSP), EncryptedData(next_node_id=pubkey_of(RECIPIENT))),
                                       (pubkey_of(RECIPIENT), EncryptedData(path_id=os.urandom(32)))])
    return StaticInvoice.build(offer, [BlindedPaymentPath(pay, info)], [held], now, ISSUER)


def bench_static(tmp: Path, n: int) -> None:
    store = Store(str(tmp / "payer.sqlite3"), synchronous="FULL")
    endpoint = Endpoint(store, pubkey_of(PAYER), os.urandom(32), os.urandom)
    payer = Payer(store, endpoint, PayerConfig(payer_invoice_grace=0), os.urandom(32), lambda i: i.node_id)
    now = int(time.time())
    inv = static_invoice(now)
    offer = inv.offer().to_string()
    rows = [payer.start(offer, 5_000, None, now)[0] for _ in range(n)]
    raw = inv.encode()
    samples, t0 = [], time.perf_counter_ns()
    for row in rows:
        d = Delivered(REPLY, row.id, None, OnionMessagePayload(static_invoice=raw), os.urandom(32))
        s = time.perf_counter_ns()
        [held] = payer.handle(d, now)
        samples.append(time.perf_counter_ns() - s)
    report("static invoice -> held_htlc_available (validate, commit, reply path, onion)", samples,
           time.perf_counter_ns() - t0, "invoices", "p50 < 3 ms", sorted(samples)[len(samples) // 2] < 3_000_000)
    store.close()


def bench_onion(n: int) -> None:
    inv = static_invoice(int(time.time()))
    [path] = inv.payment_paths()
    req = os.urandom(300)  # an invoice_request's size
    a, c = to_introduction(path, 5_000, 800_001)
    route = [RouteHop(1, pubkey_of(LSP), a, c)]
    samples, t0 = [], time.perf_counter_ns()
    for _ in range(n):
        preimage, ph = os.urandom(32), os.urandom(32)
        s = time.perf_counter_ns()
        blinded_payment_onion(os.urandom(32), pubkey_of(PAYER), route, path, 5_000, 800_001, ph,
                              keysend_preimage=preimage, invoice_request=req)
        samples.append(time.perf_counter_ns() - s)
    report("payment onion to a blinded path (3 hops, keysend + invoice_request)", samples,
           time.perf_counter_ns() - t0, "onions", "p50 < 3 ms", sorted(samples)[len(samples) // 2] < 3_000_000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        bench_static(Path(d), args.iterations)
    bench_onion(args.iterations)


if __name__ == "__main__":
    main()
