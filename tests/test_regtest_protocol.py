"""Regtest: our codecs and crypto against a real CLN (issue: protocol foundation)."""

from __future__ import annotations

from regtest import RECORDER, arrivals, inject, require_binaries, wait_for

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403 (node_factory and friends)

from asyncpay.offers import Invoice, InvoiceRequest, Offer  # noqa: E402
from asyncpay.onion_message import HeldHtlcAvailable, OnionMessagePayload  # noqa: E402
from wallet import Wallet  # noqa: E402


def _same_offer_fields(ours: Offer, cln: dict) -> None:
    assert cln["offer_id"]
    assert ours.offer_description == cln.get("offer_description")
    assert ours.offer_amount == cln.get("offer_amount_msat")
    assert (ours.offer_issuer_id.hex() if ours.offer_issuer_id else None) == cln.get("offer_issuer_id")
    assert (ours.offer_absolute_expiry) == cln.get("offer_absolute_expiry")
    assert ours.offer_issuer == cln.get("offer_issuer")
    paths = cln.get("offer_paths", [])
    assert len(ours.offer_paths or []) == len(paths)
    for p, c in zip(ours.offer_paths or [], paths):
        assert p.first_path_key.hex() == c["first_path_key"]
        assert [h.blinded_node_id.hex() for h in p.hops] == [x["blinded_node_id"] for x in c["path"]]
        assert [h.encrypted_data.hex() for h in p.hops] == [x["encrypted_recipient_data"] for x in c["path"]]


def test_cln_offer_decodes_the_same(node_factory):
    l1 = node_factory.get_node()
    for args in ({"amount": "1000msat", "description": "plain"},
                 {"amount": "any", "description": "any amount", "issuer": "asyncpay tests"},
                 {"amount": "5000msat", "description": "expiring", "absolute_expiry": 2_000_000_000}):
        bolt12 = l1.rpc.call("offer", args)["bolt12"]
        ours = Offer.from_string(bolt12)
        assert ours.to_string() == bolt12
        _same_offer_fields(ours, l1.rpc.decode(bolt12))


def test_cln_offer_with_paths_decodes_the_same(node_factory):
    # A node with only private channels puts blinded paths in its offers.
    l1, l2 = node_factory.line_graph(2, announce_channels=False)
    bolt12 = l2.rpc.call("offer", {"amount": "1000msat", "description": "via paths"})["bolt12"]
    ours = Offer.from_string(bolt12)
    _same_offer_fields(ours, l2.rpc.decode(bolt12))


def test_cln_fetchinvoice_request_and_invoice_verify(node_factory):
    l1, l2 = node_factory.line_graph(2, wait_for_announce=True,
                                     opts=[{}, {"plugin": RECORDER}])
    bolt12 = l2.rpc.call("offer", {"amount": "2000msat", "description": "fetch me"})["bolt12"]
    got = l1.rpc.call("fetchinvoice", {"offer": bolt12})
    inv = Invoice.from_string(got["invoice"])
    assert inv.signature_ok()
    assert inv.invoice_amount == 2000 and inv.offer_description == "fetch me"
    cln = l1.rpc.decode(got["invoice"])
    assert inv.invoice_node_id.hex() == cln["invoice_node_id"]
    assert inv.invoice_payment_hash.hex() == cln["invoice_payment_hash"]
    assert inv.signature.hex() == cln["signature"]
    assert inv.to_string() == got["invoice"]
    # The raw invoice_request l1 sent, as l2's onion-message hook saw it.
    raw = wait_for(lambda: l2.rpc.call("recorder-list")["invoice_requests"], what="invoice_request")[0]
    req = InvoiceRequest.decode(bytes.fromhex(raw))
    assert req.encode().hex() == raw
    assert req.signature_ok()
    assert req.invreq_payer_id == inv.invreq_payer_id
    assert req.offer().to_string() == bolt12


def test_onion_message_to_an_endpoint_key_surfaces_whole(node_factory):
    """Design §5: [A, B, V]: B cannot forward to V and reports the whole onion."""
    l1, l2 = node_factory.line_graph(2, opts=[{}, {"plugin": RECORDER}])
    wallet = Wallet(bytes.fromhex(l2.info["id"]))
    dest = wallet.reply_path()  # [l2 -> W]
    # An even async type (CLN could never deliver it to a final hop) and an odd unknown one.
    payload = OnionMessagePayload(held_htlc_available=HeldHtlcAvailable(), unknown={71: b"odd"})
    inject(l1, Wallet(bytes.fromhex(l1.info["id"])).onion_to(dest, payload))
    onion = wait_for(lambda: arrivals(l2, wallet.endpoint), what="forward_fail for W")[0]
    got = wallet.open(onion)
    sent = OnionMessagePayload(**{**payload.__dict__, "encrypted_recipient_data": got.encrypted_recipient_data})
    assert got.encode() == sent.encode()
    assert got.encrypted_recipient_data == dest.hops[-1].encrypted_data
