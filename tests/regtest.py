"""Shared set-up for the regtest tests: real lightningd and bitcoind from
PATH through pyln-testing. Without both binaries every regtest module skips
with the reason shown (pytest -ra)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from asyncpay.blinded_path import BlindedPath
from asyncpay.offers import CHAINS
from asyncpay.onion_message import OnionMessagePayload
from wallet import Wallet

MISSING = [b for b in ("lightningd", "bitcoind") if shutil.which(b) is None]
SKIP_REASON = f"regtest: {', '.join(MISSING)} not found on PATH" if MISSING else ""

HERE = Path(__file__).resolve().parent


def _bound_to_this_python(script: Path) -> str:
    """lightningd runs a plugin file directly; give it a launcher that uses
    this interpreter (the one that has pyln-client installed)."""
    d = tempfile.mkdtemp(prefix="asyncpay-test-plugins-")
    launcher = os.path.join(d, script.stem)
    with open(launcher, "w") as f:
        f.write(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    os.chmod(launcher, 0o755)
    return launcher


RECORDER = _bound_to_this_python(HERE / "plugins" / "recorder.py")
WAKEUP = _bound_to_this_python(HERE / "plugins" / "wakeup.py")
# The console script installed next to this interpreter (pip install .).
ASYNCPAY = str(Path(sys.executable).parent / "asyncpay")


def require_binaries() -> None:
    if MISSING:
        pytest.skip(SKIP_REASON, allow_module_level=True)


# Every wait in these tests ends at its event; the ceiling only decides how
# long a stuck event takes to report. pyln-testing reads the same TIMEOUT
# (its own default is 60 s) when first imported, which each regtest module
# does after this one. A loaded 2-core machine has been seen to need more
# than 60 s for a funding transaction to show in listfunds.
os.environ.setdefault("TIMEOUT", "180")
TIMEOUT = float(os.environ["TIMEOUT"])


def wait_for(predicate, timeout: float = TIMEOUT, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def arrivals(node, endpoint: bytes) -> list[bytes]:
    """Whole onions for a wallet endpoint, as the node's recorder saw them."""
    items = node.rpc.call("recorder-list")["forward_fails"]
    return [bytes.fromhex(i["outgoing"]) for i in items
            if i.get("next_node_id") == endpoint.hex() and i.get("outgoing")]


def inject(node, onion: tuple[bytes, bytes]) -> None:
    node.rpc.call("injectonionmessage", {"path_key": onion[0].hex(), "message": onion[1].hex()})



def lsp_network(node_factory, **lsp_opts):
    # Wallet nodes sleep and wake, so every node may see reconnections.
    opts = [{"plugin": RECORDER, "may_reconnect": True},
            {"plugin": ASYNCPAY, "may_reconnect": True, **lsp_opts},
            {"plugin": RECORDER, "may_reconnect": True}]
    l1, l2, l3 = node_factory.get_nodes(3, opts=opts)
    node_factory.join_nodes([l1, l2], wait_for_announce=False)
    node_factory.join_nodes([l2, l3], wait_for_announce=False)
    return l1, l2, l3


def node_id(n) -> bytes:
    return bytes.fromhex(n.info["id"])


def take(node, wallet: Wallet, seen: int = 0) -> OnionMessagePayload:
    onions = wait_for(lambda: (a := arrivals(node, wallet.endpoint)) and len(a) > seen and a, what="reply")
    return wallet.open(onions[seen])


def handshake(l2, l3, slot=0):
    wallet = Wallet(node_id(l3))
    res = l2.rpc.call("asyncpay-recipientpaths", {"recipient_id": l3.info["id"]})
    p_req = BlindedPath.decode(bytes.fromhex(res["paths"][0]["hex"]))
    inject(l3, wallet.offer_paths_request(p_req, slot))
    reply = take(l3, wallet)
    assert reply.offer_paths is not None and reply.reply_path is not None
    offer = wallet.make_offer(reply.offer_paths.paths, chains=[CHAINS["regtest"]])  # the LSP checks the chain
    invoice = wallet.make_static_invoice(offer, int(time.time()), node_id(l2))
    inject(l3, wallet.serve_static_invoice(reply.reply_path, invoice))
    assert take(l3, wallet, 1).static_invoice_persisted is not None
    return wallet, offer, invoice


os.environ.setdefault("TEST_DEBUG", "0")
# We need no gRPC; with RUST=1 pyln-testing passes --grpc-port, which a CLN
# built without Rust rejects.
os.environ.setdefault("RUST", "0")
