"""BOLT 4 route-blinding-test.json: every intermediate value, per hop."""

import pytest

from asyncpay.blinded_path import EncryptedData
from asyncpay.crypto.blinding import blind_path, unblind_hop
from conftest import h, load_vector

V = load_vector("bolt04/route-blinding-test.json")
GEN = V["generate"]["hops"]
UNBLIND = V["unblind"]["hops"]


def _segments():
    """The vector's route is two segments, each blinded with its own session key."""
    segs, cur = [], None
    for hop in GEN:
        if "session_key" in hop:
            cur = (h(hop["session_key"]), [])
            segs.append(cur)
        cur[1].append(hop)
    return segs


@pytest.mark.parametrize("i", range(len(GEN)), ids=[x["alias"] for x in GEN])
def test_encrypted_data_codec(i):
    hop = GEN[i]
    enc = h(hop["encoded_tlvs"])
    data = EncryptedData.decode(enc)
    tl = hop["tlvs"]
    if "short_channel_id" in tl:
        b, tx, o = (int(x) for x in tl["short_channel_id"].split("x"))
        assert data.short_channel_id == (b << 40) | (tx << 16) | o
    if "path_id" in tl:
        assert data.path_id == h(tl["path_id"])
    if "next_path_key_override" in tl:
        assert data.next_path_key_override == h(tl["next_path_key_override"])
    if "padding" in tl:
        assert data.padding == h(tl["padding"])
    if "payment_relay" in tl:
        pr = tl["payment_relay"]
        assert data.payment_relay.cltv_expiry_delta == pr["cltv_expiry_delta"]
        assert data.payment_relay.fee_proportional_millionths == pr["fee_proportional_millionths"]
        assert data.payment_relay.fee_base_msat == pr.get("fee_base_msat", 0)
    pc = tl["payment_constraints"]
    assert data.payment_constraints.max_cltv_expiry == pc["max_cltv_expiry"]
    assert data.payment_constraints.htlc_minimum_msat == pc["htlc_minimum_msat"]
    feats = tl["allowed_features"]["features"]
    bits = int.from_bytes(data.allowed_features, "big")
    assert [b for b in range(bits.bit_length()) if bits >> b & 1] == feats
    for k, v in tl.items():
        if k.startswith("unknown_tag_"):
            assert data.unknown[int(k[len("unknown_tag_"):])] == h(v)
    assert data.encode() == enc


@pytest.mark.parametrize("seg", range(2))
def test_blind_segment(seg):
    session_key, hops = _segments()[seg]
    got = blind_path(session_key, [(h(x["node_id"]), h(x["encoded_tlvs"])) for x in hops])
    for hop, g in zip(hops, got):
        assert g.path_key_secret == h(hop["path_privkey"])
        assert g.path_key == h(hop["path_key"])
        assert g.shared_secret == h(hop["shared_secret"])
        assert g.rho == h(hop["rho"])
        assert g.encrypted_data == h(hop["encrypted_data"])
        assert g.blinded_node_id == h(hop["blinded_node_id"])


def test_route_is_the_concatenation():
    route = V["route"]
    assert route["first_path_key"] == GEN[0]["path_key"]
    for gen, r in zip(GEN, route["hops"]):
        assert r["blinded_node_id"] == gen["blinded_node_id"]
        assert r["encrypted_data"] == gen["encrypted_data"]


@pytest.mark.parametrize("i", range(len(UNBLIND)), ids=[x["alias"] for x in UNBLIND])
def test_unblind(i):
    hop = UNBLIND[i]
    enc = h(V["route"]["hops"][i]["encrypted_data"])
    u = unblind_hop(h(hop["node_privkey"]), h(hop["path_key"]), enc)
    assert u.blinded_privkey == h(hop["blinded_privkey"])
    assert u.plaintext == h(hop["decrypted_data"])
    assert u.next_path_key == h(hop["next_path_key"])
    data = EncryptedData.decode(u.plaintext)
    if "next_path_key_override" in hop:
        assert data.next_path_key_override == h(hop["next_path_key_override"])
        # The next hop's path key is the override, not the computed one.
        assert UNBLIND[i + 1]["path_key"] == hop["next_path_key_override"]
    elif i + 1 < len(UNBLIND):
        assert UNBLIND[i + 1]["path_key"] == hop["next_path_key"]


def test_unblind_with_wrong_key_fails():
    from asyncpay.crypto import CryptoError

    hop = UNBLIND[0]
    with pytest.raises(CryptoError, match="bad tag"):
        unblind_hop(h(UNBLIND[1]["node_privkey"]), h(hop["path_key"]),
                    h(V["route"]["hops"][0]["encrypted_data"]))
