"""Real LDK against our bytes (issue 15): LDK 0.1.2, rust-lightning compiled
to WASM (npm ``lightningdevkit``), driven through tests/interop/ldk.mjs.

Each direction, each message kind: LDK reads (and re-serializes byte for
byte) the offers, invoice requests, invoices and blinded paths our roles
build and peels the onion messages they send; our roles read what LDK builds
and peel LDK's onion messages, answering as they would a real LDK peer. What
LDK 0.1 cannot check (static invoices, 75540-75546) stays on the vectors
(test_ldk_vectors.py); docs/compatibility.md lists both.

Skipped only when ``node`` is not installed; with node present and no
``npm ci`` done in tests/interop, the tests fail and say so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from asyncpay.blinded_path import BlindedPath, IntroductionNode
from asyncpay.crypto import pubkey_of
from asyncpay.endpoint import Dropped, Endpoint
from asyncpay.offers import BITCOIN_CHAIN, Invoice, InvoiceError, InvoiceRequest, Offer, StaticInvoice, ldk_offer_id
from asyncpay.onion_message import (
    Forward,
    HeldHtlcAvailable,
    OnionMessage,
    ReleaseHeldHtlc,
    peel_onion_message,
)
from asyncpay.payer import PayInvoice
from asyncpay.recipient.recipient import check_invoice_request
from asyncpay.store import Store
from asyncpay.wire.types import bigsize, read_bigsize
from test_payer_flow import attach_payer
from test_recipient_flow import Flow

INTEROP = Path(__file__).resolve().parent / "interop"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node (Node.js) is not installed: LDK interop not run")

LDK_SEED = "4c" * 32  # the LDK node of each test
PAYER_SEED = "50" * 32


class Ldk:
    """One ``node ldk.mjs`` process: a JSON request per line, an answer per line."""

    def __init__(self) -> None:
        if not (INTEROP / "node_modules" / "lightningdevkit" / "liblightningjs.wasm").exists():
            pytest.fail(f"LDK is not installed: run `npm ci` in {INTEROP} (.ci/run does)", pytrace=False)
        self.log = tempfile.TemporaryFile("w+")  # LDK's own log lines, shown when a call fails
        self.proc = subprocess.Popen([NODE, str(INTEROP / "ldk.mjs")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)

    def __call__(self, op: str, **req) -> dict:
        """LDK's answer; a failure inside LDK fails the test with LDK's reason."""
        got = self.try_(op, **req)
        if not got["ok"]:
            pytest.fail(f"LDK {op}: {got['error']}\n{self.log_tail()}")
        return got

    def try_(self, op: str, **req) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"op": op, **req}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            pytest.fail(f"LDK driver exited (status {self.proc.wait()}) on {op}")
        return json.loads(line)

    def log_tail(self) -> str:
        self.log.seek(0)
        return "".join(self.log.readlines()[-5:])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ldk():
    driver = Ldk()
    yield driver
    driver.close()


def om_bytes(msg: OnionMessage) -> str:
    """LDK's ``OnionMessage`` encoding: ours without the 2-byte message type."""
    return msg.encode()[2:].hex()


def om_from(hex_: str) -> OnionMessage:
    return OnionMessage.decode((513).to_bytes(2, "big") + bytes.fromhex(hex_))


def check_path(ours: BlindedPath, theirs: dict) -> None:
    assert theirs["hex"] == ours.encode().hex()
    assert theirs["introduction_node"] == ours.introduction.describe()
    assert theirs["blinding_point"] == ours.first_path_key.hex()
    assert [(h["blinded_node_id"], h["encrypted_payload"]) for h in theirs["hops"]] == [
        (h.blinded_node_id.hex(), h.encrypted_data.hex()) for h in ours.hops]


# -- offers ------------------------------------------------------------------

def test_ldk_reads_our_offer(ldk, tmp_path):
    flow = Flow(tmp_path)
    flow.setserver()
    offer = flow.offer(description="coffee", amount_msat=10_000)
    got = ldk("read_offer", bech32=offer.to_string())
    assert got["bech32"] == offer.to_string() and got["hex"] == offer.encode().hex()
    assert (got["description"], got["amount_msats"]) == ("coffee", 10_000)
    assert got["issuer_signing_pubkey"] == offer.offer_issuer_id.hex()
    assert got["chains"] == [BITCOIN_CHAIN.hex()]
    assert got["absolute_expiry"] == offer.offer_absolute_expiry
    for ours, theirs in zip(offer.offer_paths, got["paths"], strict=True):
        check_path(ours, theirs)
    assert got["offer_id"] == ldk_offer_id(offer.to_records()).hex()


def test_we_read_ldks_offer(ldk, tmp_path):
    node = ldk("node", seed=LDK_SEED)
    built = ldk("build_offer", seed=LDK_SEED, nonce="01" * 16)
    offer = Offer.from_string(built["bech32"])
    assert offer.encode().hex() == built["hex"] and offer.to_string() == built["bech32"]
    offer.check()
    # LDK 0.1 offers without paths are signed by the node itself; the
    # metadata is LDK's nonce followed by its HMAC.
    assert offer.offer_issuer_id.hex() == node["node_id"]
    assert offer.offer_metadata[:16] == bytes([1]) * 16
    assert not offer.unknown


# -- blinded message paths ---------------------------------------------------

def test_ldk_reads_our_blinded_paths(ldk, tmp_path):
    ep = Endpoint(Store(str(tmp_path / "ep.sqlite3")), pubkey_of(bytes([0x31]) * 32), bytes([0x41]) * 32, os.urandom)
    now = int(time.time())
    paths = [ep.mint_path("test", "owner", None, now + 60, now, via=via)
             for via in ((), (pubkey_of(bytes([0x32]) * 32),),
                         (pubkey_of(bytes([0x32]) * 32), pubkey_of(bytes([3]) * 32)))]
    flow = Flow(tmp_path)
    paths += flow.lsp.lsp.server.recipient_paths(flow.rnode.id, 2, 3600, now)  # the LSP's, for its wallets
    # A compact introduction node (sciddir_or_pubkey), both directions.
    for direction in (0, 1):
        paths.append(BlindedPath(IntroductionNode(scid=(700_123 << 40) | (45 << 16) | 1, direction=direction),
                                 paths[0].first_path_key, paths[0].hops))
    for path in paths:
        check_path(path, ldk("read_path", hex=path.encode().hex()))


@pytest.mark.parametrize("context", [
    {"invoice_request_nonce": "02" * 16},
    {"offers_outbound": {"payment_id": "03" * 32, "nonce": "04" * 16, "hmac": "05" * 32}},
    {"outbound_payment": {"payment_id": "06" * 32, "nonce": "07" * 16, "hmac": "08" * 32}},
    {"custom": "0909"},
], ids=["offers-invoice-request", "offers-outbound", "async-outbound", "custom"])
@pytest.mark.parametrize("hops", [0, 1, 2])
def test_we_read_ldks_blinded_paths(ldk, context, hops):
    via = [ldk("node", seed=f"{i + 1:02x}" * 32)["node_id"] for i in range(hops)]
    got = ldk("build_path", seed=LDK_SEED, via=via, context=context)
    path = BlindedPath.decode(bytes.fromhex(got["hex"]))
    check_path(path, got)
    assert path.introduction.node_id.hex() == (via or [ldk("node", seed=LDK_SEED)["node_id"]])[0]
    assert len(path.hops) == hops + 1


# -- invoice_error -------------------------------------------------------------

def test_invoice_error_both_ways(ldk):
    """LDK 0.1 writes invoice_error (onion TLV 68) as a length-prefixed TLV
    stream (``write_tlv_fields!``), BOLT 12 as the bare stream: the same
    records behind a BigSize length. We read the records either way; LDK 0.1
    refuses the bare form (we never send invoice_error)."""
    theirs = bytes.fromhex(ldk("write_invoice_error", message="no such offer")["hex"])
    length, pos = read_bigsize(theirs, 0)
    assert pos + length == len(theirs)
    err = InvoiceError.decode(theirs[pos:])
    assert (err.error, err.erroneous_field, err.suggested_value) == ("no such offer", None, None)
    assert err.encode() == theirs[pos:]
    ours = InvoiceError(error="amount too low").encode()
    assert "UnknownRequiredFeature" in ldk.try_("read_invoice_error", hex=ours.hex())["error"]
    got = ldk("read_invoice_error", hex=(bigsize(len(ours)) + ours).hex())
    assert got["message"] == "amount too low"


# -- held_htlc_available / release_held_htlc ---------------------------------

@pytest.mark.parametrize("cls", [HeldHtlcAvailable, ReleaseHeldHtlc])
def test_async_messages_both_ways(ldk, cls):
    ours = cls().encode_onion_value().hex()
    assert ldk("read_async", kind=cls.WHAT, hex=ours)["hex"] == ours
    theirs = ldk("write_async", kind=cls.WHAT)["hex"]
    assert cls.decode_onion_value(bytes.fromhex(theirs)).encode_onion_value().hex() == theirs == ours


# -- an LDK payer, our LSP and our recipient ----------------------------------

class LdkPeer:
    """An LDK node attached to an emulated node: onions forwarded to it are
    kept for LDK to peel; LDK's onions enter the network as if from a peer."""

    def __init__(self, ldk: Ldk, flow: Flow, seed: str, peer) -> None:
        self.ldk, self.seed, self.peer = ldk, seed, peer
        self.node = flow.net.node(bytes.fromhex(ldk("node", seed=seed)["secret"]), "ldk")
        self.inbox: list[OnionMessage] = []
        self.node.handle_onion = lambda source, path_key, packet: self.inbox.append(OnionMessage(path_key, packet))
        flow.net.connect(peer, self.node, channel=False)

    def send(self, dest: BlindedPath, contents: dict, reply_path: dict) -> None:
        sent = self.ldk("send", seed=self.seed, dest=dest.encode().hex(), contents=contents,
                        reply_path=reply_path["hex"])
        assert sent["first_node_id"] == self.peer.id
        msg = om_from(sent["onion"])
        self.peer.handle_onion(self.node.id, msg.path_key, msg.packet)

    def received(self) -> list[dict]:
        """LDK's view of each onion that reached it (``ok`` False: LDK refused it)."""
        got = [self.ldk.try_("peel", seed=self.seed, onion=om_bytes(m)) for m in self.inbox]
        self.inbox.clear()
        assert not [g for g in got if g.get("forward")]
        return got


def by_kind(got: list[dict]) -> dict[str, dict]:
    assert all(g["ok"] for g in got), got
    return {g["kind"]: g for g in got}


def test_ldk_payer_with_our_lsp_and_recipient(ldk, tmp_path):
    """LDK requests an invoice for our recipient's offer: the LSP answers with
    the static invoice, the (online) recipient with a BOLT 12 invoice that LDK
    verifies as the answer to its own request; LDK's held_htlc_available over
    the static invoice's path gets the recipient's release."""
    flow = Flow(tmp_path)
    flow.setserver()
    offer = flow.offer(description="tea", amount_msat=20_000)
    payer = LdkPeer(ldk, flow, PAYER_SEED, flow.lnode)
    nonce, payment_id = "0a" * 16, "0b" * 32

    raw = ldk("request_invoice", seed=PAYER_SEED, offer={"bech32": offer.to_string()}, nonce=nonce,
              payment_id=payment_id)["hex"]
    req = check_invoice_request(bytes.fromhex(raw), offer.encode(), BITCOIN_CHAIN)
    assert req.encode().hex() == raw and req.offer().encode() == offer.encode()
    reply = ldk("build_path", seed=PAYER_SEED, via=[flow.lnode.id],
                context={"offers_outbound": {"payment_id": payment_id, "nonce": nonce, "hmac": "0c" * 32}})
    payer.send(offer.offer_paths[0], {"kind": "invoice_request", "hex": raw}, reply)

    got = payer.received()
    # The LSP's static invoice came too, on the same reply path: LDK 0.1 has no
    # static invoices, reads type 70 as a custom message and refuses it on a
    # path made for offers messages.
    assert sorted(g["ok"] for g in got) == [False, True] and "wrong context" in payer.ldk.log_tail(), got
    inv = by_kind([g for g in got if g["ok"]])["invoice"]
    assert inv["context"] is not None and inv["reply_path"] is None
    assert ldk("verify_invoice", seed=PAYER_SEED, hex=inv["hex"], payment_id=payment_id,
               nonce=nonce)["payment_id"] == payment_id
    read = ldk("read_invoice", hex=inv["hex"])
    assert read["amount_msats"] == 20_000 and read["hex"] == inv["hex"]
    ours = Invoice.decode(bytes.fromhex(inv["hex"]))
    assert read["signing_pubkey"] == ours.invoice_node_id.hex() == offer.offer_issuer_id.hex()
    assert read["payment_hash"] == ours.invoice_payment_hash.hex()
    for path, theirs in zip(ours.invoice_paths, read["payment_paths"], strict=True):
        check_path(path, theirs)
        assert theirs["payinfo"] == dict(zip(ours.invoice_paths, ours.invoice_blindedpay))[path].write().hex()

    # The recipient sleeps: over a reply path whose context is LDK's custom
    # one, the static invoice reaches LDK and holds the offer it was asked for.
    flow.net.disconnect(flow.lnode, flow.rnode)
    custom = ldk("build_path", seed=PAYER_SEED, via=[flow.lnode.id], context={"custom": "01"})
    payer.send(offer.offer_paths[0], {"kind": "invoice_request", "hex": raw}, custom)
    got = by_kind(payer.received())
    assert set(got) == {"tlv_70"}, got
    static = StaticInvoice.decode(bytes.fromhex(got["tlv_70"]["hex"]))
    assert static.offer().encode() == offer.encode()
    assert static.signature_valid(offer.offer_issuer_id)
    flow.net.connect(flow.lnode, flow.rnode)
    flow.lsp.lsp.wait_flushes()

    # The payer's HTLC waits; LDK announces it and the recipient releases it.
    # (LDK 0.1 reads 74 as a custom message: the reply path has a custom context.)
    hold_reply = ldk("build_path", seed=PAYER_SEED, via=[flow.lnode.id], context={"custom": "02"})
    payer.send(static.invoice_held_htlc_available_paths[0], {"kind": "held_htlc_available"}, hold_reply)
    got = by_kind(payer.received())
    assert set(got) == {"tlv_74"}, got
    assert ldk("read_async", kind="release_held_htlc", hex=got["tlv_74"]["hex"])["hex"] == got["tlv_74"]["hex"]
    assert got["tlv_74"]["context"] is not None
    assert flow.r.store.counters()["recipient_releases"] == 1


# -- our payer and an LDK recipient ------------------------------------------

OUR_SEED = "51" * 32


class OurPayer:
    """Our payer on an emulated node whose key LDK holds too: LDK peels the
    hop at our node as lightningd would, then its own."""

    def __init__(self, ldk: Ldk, tmp_path) -> None:
        self.ldk = ldk
        self.ours = ldk("node", seed=OUR_SEED)
        self.pnode = Flow(tmp_path).net.node(bytes.fromhex(self.ours["secret"]), "payer")
        self.core = attach_payer(SimpleNamespace(pnode=self.pnode), tmp_path).payer.core

    def through_our_node(self, action, seed: str) -> dict:
        """What LDK node ``seed`` finds in an onion our node sends it."""
        hop = self.ldk("peel", seed=OUR_SEED, onion=om_bytes(OnionMessage(action.path_key, action.packet)))
        assert hop["forward"] and hop["next_node_id"] == self.ldk("node", seed=seed)["node_id"]
        return self.ldk("peel", seed=seed, onion=hop["onion"])

    def request(self, offer: str, amount: int, now: int, note: str | None = None):
        row, [action] = self.core.start(offer, amount, note, now)
        got = self.through_our_node(action, LDK_SEED)
        assert (got["forward"], got["kind"], got["hex"]) == (False, "invoice_request", row.invreq.hex())
        assert got["reply_path"]["introduction_node"] == self.ours["node_id"]
        return row, got

    def deliver(self, sent: dict, now: int) -> list:
        """LDK's onion, over one of our reply paths, handed to the payer."""
        assert sent["first_node_id"] == self.ours["node_id"]
        return self.core.handle(open_at_v(self.core.endpoint, self.pnode.secret, om_from(sent["onion"]), now), now)


def test_our_payer_with_an_ldk_recipient(ldk, tmp_path):
    """Our payer requests an invoice for LDK's offer: LDK peels our onion,
    recognises the request as one for its offer, answers with its invoice,
    which our payer accepts and pays; then our held_htlc_available reaches
    LDK and LDK's release reaches us."""
    payer = OurPayer(ldk, tmp_path)
    core = payer.core
    theirs = ldk("node", seed=LDK_SEED)
    offer = ldk("build_offer", seed=LDK_SEED, nonce="0e" * 16)["bech32"]
    now = int(time.time())

    row, got = payer.request(offer, 15_000, now)
    ldk("verify_invoice_request", seed=LDK_SEED, hex=got["hex"])
    read = ldk("read_invoice_request", hex=got["hex"])
    assert (read["amount_msats"], read["payer_metadata"]) == (15_000, row.nonce.hex())
    assert read["payer_signing_pubkey"] == InvoiceRequest.decode(row.invreq).invreq_payer_id.hex()

    preimage = os.urandom(32)
    invoice = ldk("respond", seed=LDK_SEED, hex=got["hex"], payment_secret="0f" * 32, max_cltv_expiry=900_000,
                  min_final_cltv_expiry_delta=18, payment_hash=hashlib.sha256(preimage).hexdigest(),
                  created_at=now)["hex"]
    actions = payer.deliver(ldk("send", seed=LDK_SEED, dest=got["reply_path"]["hex"],
                                contents={"kind": "invoice", "hex": invoice}, reply_path=None), now)
    assert [type(a) for a in actions] == [PayInvoice]
    paid = Invoice.from_string(actions[0].invoice)
    assert paid.encode().hex() == invoice and paid.invoice_amount == 15_000
    assert paid.invoice_node_id.hex() == theirs["node_id"]
    [path] = paid.invoice_paths
    assert path.introduction.node_id.hex() == theirs["node_id"] and len(path.hops) == 1

    # held_htlc_available over an LDK path, with our reply path; LDK's release comes back.
    ldk_path = BlindedPath.decode(bytes.fromhex(ldk("build_path", seed=LDK_SEED, via=[],
                                                    context={"custom": "10"})["hex"]))
    [held], unusable = core.endpoint.held_htlc_available([ldk_path], "test:release", row.id, now + 600, now)
    assert not unusable
    got = payer.through_our_node(held, LDK_SEED)
    assert got["kind"] == "tlv_72" and got["reply_path"] is not None and got["context"] is not None
    assert got["hex"] == HeldHtlcAvailable().encode_onion_value().hex()
    sent = ldk("send", seed=LDK_SEED, dest=got["reply_path"]["hex"], contents={"kind": "release_held_htlc"},
               reply_path=None)
    d = open_at_v(core.endpoint, payer.pnode.secret, om_from(sent["onion"]), now)
    assert (d.kind, d.owner, d.payload.content_kind()) == ("test:release", row.id, "release_held_htlc")


def test_our_payer_fails_on_ldks_invoice_error(ldk, tmp_path):
    payer = OurPayer(ldk, tmp_path)
    now = int(time.time())
    row, got = payer.request(ldk("build_offer", seed=LDK_SEED, nonce="11" * 16)["bech32"], 5_000, now)
    assert payer.deliver(ldk("send", seed=LDK_SEED, dest=got["reply_path"]["hex"],
                             contents={"kind": "invoice_error", "message": "no"}, reply_path=None), now) == []
    assert payer.core.records.get(row.id).state == "failed"


def test_large_onions_both_ways(ldk, tmp_path):
    """A payload over 1300 bytes takes the 32768-byte onion (BOLT 4), in
    both directions."""
    payer = OurPayer(ldk, tmp_path)
    now = int(time.time())
    row, [action] = payer.core.start(ldk("build_offer", seed=LDK_SEED, nonce="15" * 16)["bech32"], 9_000,
                                     "n" * 2000, now)
    assert len(action.packet) > 32768
    got = payer.through_our_node(action, LDK_SEED)
    assert got["hex"] == row.invreq.hex()
    assert ldk("read_invoice_request", hex=got["hex"])["payer_note"] == "n" * 2000
    sent = ldk("send", seed=LDK_SEED, dest=got["reply_path"]["hex"],
               contents={"kind": "invoice_request", "hex": got["hex"]}, reply_path=got["reply_path"]["hex"])
    msg = om_from(sent["onion"])
    assert len(msg.packet) > 32768
    d = open_at_v(payer.core.endpoint, payer.pnode.secret, msg, now)
    assert d.payload.invoice_request == row.invreq
    assert d.payload.reply_path.encode().hex() == got["reply_path"]["hex"]


def test_signatures_are_checked_both_ways(ldk, tmp_path):
    """A flipped signature bit: LDK refuses our request, our payer LDK's invoice."""
    payer = OurPayer(ldk, tmp_path)
    now = int(time.time())
    row, got = payer.request(ldk("build_offer", seed=LDK_SEED, nonce="12" * 16)["bech32"], 7_000, now)
    bad = bytearray(row.invreq)
    bad[-1] ^= 1
    assert not ldk.try_("read_invoice_request", hex=bad.hex())["ok"]
    invoice = bytearray.fromhex(ldk("respond", seed=LDK_SEED, hex=got["hex"], payment_secret="13" * 32,
                                    max_cltv_expiry=900_000, min_final_cltv_expiry_delta=18,
                                    payment_hash="14" * 32, created_at=now)["hex"])
    invoice[-1] ^= 1
    assert not ldk.try_("read_invoice", hex=invoice.hex())["ok"]
    with pytest.raises(Dropped, match="bad signature"):
        payer.core.check_invoice(row, bytes(invoice), now)


def open_at_v(endpoint: Endpoint, node_secret: bytes, msg: OnionMessage, now: int):
    """What lightningd and then our endpoint do with an onion for V: our node
    peels its hop and forwards to V (reported as a failed forward), V opens it."""
    out = peel_onion_message(node_secret, msg)
    assert isinstance(out, Forward) and out.next_node_id == endpoint.public_key
    return endpoint.open(out.message, now)
