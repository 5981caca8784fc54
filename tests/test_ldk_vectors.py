"""Bytes produced by LDK itself (../shared/vectors/ldk/async-payments.json):
parse, check every field, verify signatures, re-serialize identically."""

import pytest

from asyncpay.blinded_path import BlindedPath, BlindedPayInfo
from asyncpay.offers import BITCOIN_CHAIN, InvoiceRequest, Offer, StaticInvoice, ldk_offer_id, merkle
from asyncpay.offers.static_invoice import LDK_STATIC_INVOICE_TYPES
from asyncpay.onion_message import OnionMessagePayload
from asyncpay.onion_message.async_payments import ASYNC_MESSAGES
from asyncpay.payment import HopPayload
from asyncpay.wire import Reader, WireError, bigsize, read_tlv_stream
from conftest import h, load_vector

LDK = load_vector("ldk/async-payments.json")
PATH_KEYS = ["offer_path", "offer_path_2_one_hop_compact", "forward_invoice_request_path"]
INVOICES = ["static_invoice", "static_invoice_minimal"]


def check_path(path: BlindedPath, v: dict) -> None:
    assert path.introduction.describe() == v["introduction_node"]
    assert path.first_path_key.hex() == v["blinding_point"]
    assert len(path.hops) == v["num_hops"]
    for hop, vh in zip(path.hops, v["hops"]):
        assert hop.blinded_node_id.hex() == vh["blinded_node_id"]
        assert hop.encrypted_data.hex() == vh["encrypted_payload"]


MESSAGE_PATHS = [(k, LDK[k]) for k in PATH_KEYS] + [
    (f"held_htlc_available_paths[{i}]", p) for i, p in enumerate(LDK["held_htlc_available_paths"])
]


@pytest.mark.parametrize("v", [v for _, v in MESSAGE_PATHS], ids=[k for k, _ in MESSAGE_PATHS])
def test_message_path(v):
    path = BlindedPath.decode(h(v["hex"]))
    check_path(path, v)
    assert path.encode().hex() == v["hex"]


@pytest.mark.parametrize("i", range(2))
def test_payment_path(i):
    v = LDK["blinded_payment_paths"][i]
    path = BlindedPath.decode(h(v["path_hex"]))
    check_path(path, v)
    assert path.encode().hex() == v["path_hex"]
    r = Reader(h(v["payinfo"]["hex"]))
    info = BlindedPayInfo.read(r)
    assert r.at_end()
    pi = v["payinfo"]
    assert (info.fee_base_msat, info.fee_proportional_millionths, info.cltv_expiry_delta) == (
        pi["fee_base_msat"], pi["fee_proportional_millionths"], pi["cltv_expiry_delta"])
    assert (info.htlc_minimum_msat, info.htlc_maximum_msat) == (pi["htlc_minimum_msat"], pi["htlc_maximum_msat"])
    # The file prints features with their u16 length prefix.
    assert (len(info.features).to_bytes(2, "big") + info.features).hex() == pi["features"]
    assert info.write().hex() == pi["hex"]


def test_offer():
    v = LDK["offer"]
    offer = Offer.decode(h(v["hex"]))
    assert Offer.from_string(v["bech32"]) == offer
    assert offer.to_string() == v["bech32"]
    assert offer.encode().hex() == v["hex"]
    assert [t for t, _ in offer.to_records()] == v["tlv_types"]
    assert [(t, x.hex()) for t, x in offer.to_records()] == [(x["type"], x["value"]) for x in v["tlvs"]]
    assert offer.offer_amount == v["amount"]["amount_msats"]
    assert offer.offer_description == v["description"]
    assert offer.offer_absolute_expiry == v["absolute_expiry"]
    assert offer.offer_issuer_id.hex() == v["issuer_signing_pubkey"]
    assert offer.offer_chains is None and v["chains"] == [BITCOIN_CHAIN.hex()]
    assert offer.offer_supports_chain(BITCOIN_CHAIN)
    assert len(offer.offer_paths) == len(v["paths"])
    check_path(offer.offer_paths[0], v["paths"][0])
    assert ldk_offer_id(offer.to_records()).hex() == v["offer_id"]


@pytest.mark.parametrize("key", INVOICES)
def test_static_invoice_fields(key):
    v = LDK[key]
    inv = StaticInvoice.decode(h(v["hex"]))
    assert len(h(v["hex"])) == v["length"]
    assert inv.encode().hex() == v["hex"]
    assert [t for t, _ in inv.to_records()] == v["tlv_types"]
    assert [(t, x.hex()) for t, x in inv.to_records()] == [(x["type"], x["value"]) for x in v["tlvs"]]
    assert inv.invoice_created_at == v["created_at"]
    assert inv.expires_at() - inv.invoice_created_at == v["relative_expiry"]
    assert inv.invoice_node_id.hex() == v["signing_pubkey"] == v["issuer_signing_pubkey"]
    assert inv.signature.hex() == v["signature"]
    assert inv.offer_amount == v["amount"]["amount_msats"]
    assert inv.offer_description == v["description"]
    assert inv.offer_absolute_expiry == v["offer_absolute_expiry"]
    assert (inv.invoice_features or b"").hex() == v["invoice_features_be"]
    assert inv.invoice_fallbacks is None and v["fallbacks"] == []
    assert inv.offer_supports_chain(h(v["chain"]))
    assert len(inv.offer_paths) == len(v["offer_paths"])
    for p, vp in zip(inv.offer_paths, v["offer_paths"]):
        check_path(p, vp)
    paths = inv.payment_paths()
    assert len(paths) == len(v["payment_paths"])
    for pp, vp in zip(paths, v["payment_paths"]):
        check_path(pp.path, vp)
        assert pp.payinfo.write().hex() == vp["payinfo"]["hex"]
    assert len(inv.invoice_held_htlc_available_paths) == len(v["held_htlc_available_paths"])
    for p, vp in zip(inv.invoice_held_htlc_available_paths, v["held_htlc_available_paths"]):
        check_path(p, vp)
    assert ldk_offer_id(inv.to_records()).hex() == v["offer_id"]
    assert inv.offer().encode().hex() == LDK["offer"]["hex"]


@pytest.mark.parametrize("key", INVOICES)
def test_static_invoice_signature(key):
    v = LDK[key]
    inv = StaticInvoice.decode(h(v["hex"]))
    assert merkle.signature_tag("static_invoice").decode() == v["independent_sig_check"]["tag"]
    assert inv.merkle_root().hex() == v["independent_sig_check"]["merkle_root"]
    assert merkle.sighash("static_invoice", inv.to_records()).hex() == v["independent_sig_check"]["sighash"]
    assert inv.signature_valid(inv.invoice_node_id)
    inv.validate(now=v["created_at"] + 1)
    if "derived_signing_secret_key" in v:
        assert merkle.sighash("static_invoice", inv.to_records()).hex() == v["ldk_sighash"]
        # LDK signs without auxiliary randomness; so do we by default: same bytes.
        copy = StaticInvoice.decode(h(v["hex"]))
        copy.sign(h(v["derived_signing_secret_key"]))
        assert copy.signature.hex() == v["signature"]


def test_static_invoice_value_records():
    v = LDK["static_invoice"]
    records = dict(StaticInvoice.decode(h(v["hex"])).to_records())
    assert records[160].hex() == v["invoice_tlv_160_value"]
    assert records[162].hex() == v["invoice_tlv_162_value"]


def test_static_invoice_types_match_ldk():
    """The type numbers we model for static invoices are LDK's."""
    ours = tuple(f.type for f in StaticInvoice.FIELDS)
    assert ours == LDK_STATIC_INVOICE_TYPES
    for key in INVOICES:
        assert set(LDK[key]["tlv_types"]) <= set(ours)


@pytest.mark.parametrize("key", INVOICES)
def test_static_invoice_semantics(key):
    v = LDK[key]
    raw = h(v["hex"])
    inv = StaticInvoice.decode(raw)
    with pytest.raises(WireError, match="expired"):
        inv.validate(now=inv.expires_at())
    with pytest.raises(WireError, match="not for this chain"):
        inv.validate(now=v["created_at"], chain=bytes(32))
    bad = StaticInvoice.decode(raw)
    bad.offer_description = "tampered"
    with pytest.raises(WireError, match="signature does not verify"):
        bad.validate(now=v["created_at"])
    other = StaticInvoice.decode(raw)
    other.invoice_node_id = h(LDK["node_keys"]["payer"]["node_id"])
    with pytest.raises(WireError, match="not the offer's issuer_id"):
        other.validate(now=v["created_at"])


@pytest.mark.parametrize("t,what", [(168, "invoice_payment_hash"), (170, "invoice_amount")])
def test_static_invoice_rejects_payment_hash_and_amount(t, what):
    recs = read_tlv_stream(h(LDK["static_invoice"]["hex"]), lambda _: True)
    recs.append((t, bytes(32) if t == 168 else b"\x01"))
    with pytest.raises(WireError, match=f"carries {what}"):
        StaticInvoice.from_records(sorted(recs))


def test_static_invoice_rejects_invoice_request_range():
    recs = read_tlv_stream(h(LDK["static_invoice"]["hex"]), lambda _: True)
    with pytest.raises(WireError, match="outside the allowed ranges"):
        StaticInvoice.from_records(sorted(recs + [(89, b"note")]))


def test_invoice_request():
    v = LDK["invoice_request"]
    req = InvoiceRequest.decode(h(v["hex"]))
    assert req.encode().hex() == v["hex"]
    assert [t for t, _ in req.to_records()] == v["tlv_types"]
    assert req.invreq_metadata.hex() == v["payer_metadata"]
    assert req.invreq_payer_id.hex() == v["payer_signing_pubkey"]
    assert req.signature.hex() == v["signature"]
    assert req.offer_amount == v["amount_msats"] and req.invreq_amount is None
    assert req.invreq_quantity is None and req.invreq_payer_note is None
    assert req.merkle_root().hex() == v["independent_sig_check"]["merkle_root"]
    assert req.signature_ok()
    assert req.offer().encode().hex() == LDK["offer"]["hex"]


def test_invoice_request_in_payment_onion():
    v = LDK["invoice_request"]
    p = HopPayload(invoice_request=h(v["onion_tlv_77777_value_hex"]))
    assert p.encode().hex() == v["onion_tlv_77777_record_hex"]
    assert HopPayload.decode(h(v["onion_tlv_77777_record_hex"])).invoice_request.hex() == v["hex"]


MESSAGES = sorted(LDK["async_messages"])


@pytest.mark.parametrize("name", MESSAGES)
def test_async_message(name):
    v = LDK["async_messages"][name]
    cls = ASYNC_MESSAGES[v["tlv_type"]]
    # body_hex is the inner length prefix plus the inner stream.
    msg = cls.decode_onion_value(h(v["body_hex"]))
    assert msg.encode_onion_value().hex() == v["body_hex"]
    inner = [(x["type"], x["value"]) for x in v["body_inner_tlvs"]]
    assert [(t, x.hex()) for t, x in msg.to_records()] == inner
    record = bigsize(v["tlv_type"]) + bigsize(len(h(v["body_hex"]))) + h(v["body_hex"])
    assert record.hex() == v["onion_tlv_record_hex"]
    # The same record inside a whole onionmsg_tlv stream.
    payload = OnionMessagePayload.decode(h(v["onion_tlv_record_hex"]))
    assert payload.encode().hex() == v["onion_tlv_record_hex"]
    if name == "OfferPathsRequest":
        assert msg.invoice_slot == v["invoice_slot"]
    elif name.startswith("OfferPaths"):
        assert msg.paths_absolute_expiry == v.get("paths_absolute_expiry")
        assert [p.encode().hex() for p in msg.paths] == v["paths"]
        assert msg.paths[0].encode().hex() == LDK["offer_path"]["hex"]
    if name == "ServeStaticInvoice":
        assert msg.invoice.hex() == v["invoice_hex"] == LDK["static_invoice"]["hex"]
        assert msg.forward_invoice_request_path.encode().hex() == v["forward_invoice_request_path"]["hex"]


def test_async_body_without_inner_length_is_rejected():
    # LDK rejects an async body without its inner length prefix; so do we.
    with pytest.raises(WireError, match="inner length"):
        OnionMessagePayload.decode(bytes.fromhex("fe00012714") + bytes([4]) + bytes.fromhex("00020007"))


def test_truncated_paths_absolute_expiry_is_rejected():
    # LDK writes paths_absolute_expiry as a fixed 8-byte u64; a truncated one is invalid.
    v = LDK["async_messages"]["OfferPaths"]
    cls = ASYNC_MESSAGES[75542]
    inner = dict(cls.decode_onion_value(h(v["body_hex"])).to_records())
    assert len(inner[2]) == 8
    inner[2] = inner[2].lstrip(b"\x00")
    with pytest.raises(WireError, match="u64: 4 bytes, expected 8"):
        cls.decode(b"".join(bigsize(t) + bigsize(len(x)) + x for t, x in sorted(inner.items())))


def test_offer_paths_request_doc_example():
    # design doc §4: offer_paths_request{slot 7} is the onion record fe00012714 05 0400020007.
    p = OnionMessagePayload(offer_paths_request=ASYNC_MESSAGES[75540](invoice_slot=7))
    assert p.encode().hex() == "fe00012714050400020007"
    assert OnionMessagePayload(held_htlc_available=ASYNC_MESSAGES[72]()).encode().hex() == "480100"


def test_build_static_invoice_like_ldk():
    """Building from LDK's offer and paths with LDK's key gives LDK's bytes."""
    for key in INVOICES:
        v = LDK[key]
        ref = StaticInvoice.decode(h(v["hex"]))
        built = StaticInvoice.build(
            Offer.decode(h(LDK["offer"]["hex"])),
            ref.payment_paths(),
            ref.invoice_held_htlc_available_paths,
            created_at=v["created_at"],
            signing_secret=h(LDK["static_invoice"]["derived_signing_secret_key"]),
            relative_expiry=v["relative_expiry"],
            features=h(v["invoice_features_be"]),
        )
        assert built.encode().hex() == v["hex"]
        again = StaticInvoice.decode(built.encode())
        assert again == built
        again.validate(now=v["created_at"])


def test_build_static_invoice_wrong_key():
    v = LDK["static_invoice"]
    ref = StaticInvoice.decode(h(v["hex"]))
    with pytest.raises(WireError, match="issuer_id"):
        StaticInvoice.build(Offer.decode(h(LDK["offer"]["hex"])), ref.payment_paths(),
                            ref.invoice_held_htlc_available_paths, created_at=v["created_at"],
                            signing_secret=bytes([7]) * 32)
