"""BOLT 12 vectors: offers (valid and invalid), string format, merkle and
signature. Each case is its own test."""

import re

import pytest

from asyncpay.offers import BITCOIN_CHAIN, InvoiceRequest, Offer, bech32, merkle
from asyncpay.wire import WireError, read_tlv_stream
from conftest import h, load_vector

OFFERS = load_vector("bolt12/offers-test.json")
FORMAT = load_vector("bolt12/format-string-test.json")
SIGS = load_vector("bolt12/signature-test.json")

VALID = [c for c in OFFERS if c["valid"]]
INVALID = [c for c in OFFERS if not c["valid"]]

# The reason each invalid offer must fail with. Where the upstream file's
# bytes carry a different defect than its description, the comment says so
# and we assert the defect actually present.
REASONS = {
    "Malformed: fields out of order": r"strictly increase",
    # bytes carry type 72 (0x48), not 78
    "Malformed: unknown even TLV type 78": r"unknown even type 72",
    "Malformed: empty": r"neither offer_issuer_id nor offer_paths",
    "Malformed: truncated at type": r"bigsize",
    "Malformed: truncated in length": r"bigsize: truncated",
    "Malformed: truncated after length": r"runs past end",
    "Malformed: truncated in description": r"runs past end",
    "Malformed: invalid offer_chains length": r"offer_chains.*truncated",
    "Malformed: truncated currency UTF-8": r"offer_currency.*UTF-8",
    "Malformed: invalid currency UTF-8": r"offer_currency.*UTF-8",
    "Malformed: truncated description UTF-8": r"offer_description.*UTF-8",
    "Malformed: invalid description UTF-8": r"offer_description.*UTF-8",
    "Malformed: truncated offer_paths": r"offer_paths.*truncated",
    # The next five were written for an older blinded_path layout: their
    # offer_paths record is 2 bytes long, so the following byte is read as a
    # type lower than 16.
    "Malformed: zero num_hops in blinded_path": r"strictly increase",
    "Malformed: truncated onionmsg_hop in blinded_path": r"strictly increase",
    "Malformed: bad first_node_id in blinded_path": r"strictly increase",
    "Malformed: bad path_key in blinded_path": r"strictly increase",
    "Malformed: bad blinded_node_id in onionmsg_hop": r"strictly increase",
    "Malformed: truncated issuer UTF-8": r"offer_issuer.*UTF-8",
    "Malformed: invalid issuer UTF-8": r"offer_issuer.*UTF-8",
    "Malformed: invalid offer_issuer_id": r"offer_issuer_id.*not on the curve",
    "Contains type >= 80": r"unknown even type 80",
    # The type is written fd7735 (a 2-byte BigSize, 30517), so its length
    # byte 0x94 then overruns.
    "Contains type > 1999999999": r"runs past end",
    # Likewise fd3b9a... : a 2-byte BigSize type with an overlong length.
    "Contains unknown even type (1000000002)": r"runs past end",
    "Contains unknown feature 122": r"unknown required offer feature 122",
    "Missing offer_description, but has offer_amount": r"offer_amount without offer_description",
    "Missing offer_amount with offer_currency": r"offer_currency without offer_amount",
    "Invalid: zero offer_amount": r"offer_amount is zero",
    "Invalid: zero offer_amount with currency": r"offer_amount is zero",
    "Missing offer_issuer_id and no offer_path": r"neither offer_issuer_id nor offer_paths",
    "Second offer_path is empty": r"num_hops is zero",
    "offer_chains with zero entries": r"offer_chains: empty",
    "Bech32 padding exceeds 4-bit limit": r"padding exceeds 4 bits",
}


@pytest.mark.parametrize("case", VALID, ids=[c["description"] for c in VALID])
def test_valid_offer(case):
    offer = Offer.from_string(case["bolt12"])
    expected = [(f["type"], h(f["hex"])) for f in case["fields"]]
    assert offer.to_records() == expected
    for f in case["fields"]:
        assert len(h(f["hex"])) == f["length"]
    _, raw = bech32.decode(case["bolt12"])
    assert offer.encode() == raw
    assert offer.to_string() == case["bolt12"].lower()


def test_valid_offer_field_values():
    by = {c["description"]: Offer.from_string(c["bolt12"]) for c in VALID}
    assert by["with description (but no amount)"].offer_description == "Test vectors"
    assert (by["with currency"].offer_currency, by["with currency"].offer_amount) == ("USD", 10000)
    assert by["with amount"].offer_amount == 10000
    assert by["with metadata"].offer_metadata == bytes(16)
    # "2035-01-01": midnight at UTC+10:30, where the vectors were generated.
    assert by["with expiry"].offer_absolute_expiry == 2051222400 - 37800
    assert by["with issuer"].offer_issuer == "https://bolt12.org BOLT12 industries"
    assert int.from_bytes(by["with feature"].offer_features, "big") == 1 << 99
    assert by["with quantity"].offer_quantity_max == 5
    assert by["with single quantity (weird but valid)"].offer_quantity_max == 1
    testnet = bytes.fromhex("43497fd7f826957108f4a30fd9cec3aeba79972084e90ead01ea330900000000")
    assert by["for testnet"].offer_chains == [testnet]
    liquid, btc = by["for bitcoin or liquidv1"].offer_chains
    assert btc == BITCOIN_CHAIN and liquid != btc
    assert by["with unlimited (or unknown) quantity"].offer_quantity_max == 0
    assert by["unknown odd field"].unknown == {33: b"helloworld"}
    assert by["unknown odd experimental field"].unknown == {1000000033: b"helloworld"}
    sciddir = by["same, with blinded path first_node_id using sciddir"].offer_paths[0]
    assert sciddir.introduction.scid == 0x2A and sciddir.introduction.direction == 0
    two = by["... and with second blinded path via 1x2x3 (direction 1), path_key 020202..."].offer_paths
    assert two[1].introduction.describe() == "1x2x3/1"
    assert [hop.encrypted_data for hop in two[1].hops] == [bytes(16), bytes([0x22]) * 8]


@pytest.mark.parametrize("case", INVALID, ids=[c["description"] for c in INVALID])
def test_invalid_offer(case):
    with pytest.raises(WireError, match=REASONS[case["description"]]):
        Offer.from_string(case["bolt12"])


def test_every_invalid_case_has_a_reason():
    assert {c["description"] for c in INVALID} == set(REASONS)


@pytest.mark.parametrize("case", FORMAT, ids=[f"{i}:{c['comment']}" for i, c in enumerate(FORMAT)])
def test_string_format(case):
    if case["valid"]:
        offer = Offer.from_string(case["string"])
        assert offer.offer_description is not None
        assert Offer.from_string(offer.to_string()) == offer
    else:
        with pytest.raises(WireError):
            Offer.from_string(case["string"])


def test_string_format_all_valid_forms_agree():
    offers = {Offer.from_string(c["string"]).encode() for c in FORMAT if c["valid"]}
    assert len(offers) == 1


def test_string_wrong_prefix():
    with pytest.raises(WireError, match="prefix 'lno', expected 'lnr'"):
        InvoiceRequest.from_string(VALID[0]["bolt12"])


# --- merkle tree and signature -------------------------------------------

def _records(case):
    if "bolt12" in case:
        return read_tlv_stream(bech32.decode(case["bolt12"])[1], lambda t: True)
    # n1 tests: the first-tlv plus the TLVs named in the leaves.
    recs = []
    for leaf in case["leaves"]:
        key = next(k for k in leaf if k.startswith("H(`LnLeaf`,"))
        recs.extend(read_tlv_stream(h(key[len("H(`LnLeaf`,"):-1]), lambda t: True))
    return recs


@pytest.mark.parametrize("case", SIGS, ids=[c["comment"][:60] for c in SIGS])
def test_merkle(case):
    recs = _records(case)
    leaves = case.get("leaves")
    if leaves:
        got = merkle.leaves(recs)
        for leaf, g in zip(leaves, got):
            branch_key = next(k for k in leaf if k.startswith("H(`LnBranch`"))
            assert g.hex() == leaf[branch_key]
            leaf_key = next(k for k in leaf if k.startswith("H(`LnLeaf`"))
            rec = h(leaf_key[len("H(`LnLeaf`,"):-1])
            assert merkle.tagged_hash(b"LnLeaf", rec).hex() == leaf[leaf_key]
    for br in case.get("branches", []):
        key = next(k for k in br if k.startswith("H(`LnBranch`"))
        a, b = re.fullmatch(r"H\(`LnBranch`,([0-9a-f]{64})([0-9a-f]{64})\)", key).groups()
        assert merkle.branch(h(a), h(b)).hex() == br[key]
    assert merkle.merkle_root(recs).hex() == case["merkle"]


def test_invoice_request_signature():
    case = next(c for c in SIGS if "bolt12" in c)
    req = InvoiceRequest.from_string(case["bolt12"])
    recs = req.to_records()
    assert recs[0][0] == 0 and (b"\x00" + bytes([len(recs[0][1])]) + recs[0][1]).hex() == case["first-tlv"]
    assert merkle.signature_tag("invoice_request").decode() == case["signature_tag"]
    assert merkle.sighash("invoice_request", recs).hex() == case["H(signature_tag,merkle)"]
    assert req.signature.hex() == case["signature"]
    assert req.signature_ok()
    # Re-signing with Bob's key (the payer) verifies too, and a flipped bit does not.
    req.sign(bytes([0x42]) * 32)
    assert req.signature_ok()
    req.signature = bytes([req.signature[0] ^ 1]) + req.signature[1:]
    assert not req.signature_ok()
