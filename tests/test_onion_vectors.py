"""BOLT 4 onion vectors: classic Sphinx, a payment into a blinded path, and a
blinded onion message joined to a sender-built prefix. Every hop's values."""

import pytest

from asyncpay.blinded_path import EncryptedData
from asyncpay.crypto import CryptoError, build_packet, peel_packet
from asyncpay.crypto.blinding import blind_path, next_path_key, unblind_hop
from asyncpay.crypto.sphinx import MESSAGE_ROUTING_SIZES
from asyncpay.onion_message import (
    Forward,
    OnionMessage,
    OnionMessagePayload,
    Receive,
    peel_onion_message,
)
from asyncpay.payment import HopPayload, build_payment_onion, peel_payment_onion
from asyncpay.wire import read_bigsize
from conftest import h, load_vector

ONION = load_vector("bolt04/onion-test.json")
PAY = load_vector("bolt04/blinded-payment-onion-test.json")
MSG = load_vector("bolt04/blinded-onion-message-onion-test.json")


def strip_len(prefixed: bytes) -> bytes:
    n, pos = read_bigsize(prefixed, 0)
    assert pos + n == len(prefixed)
    return prefixed[pos:]


# --- classic Sphinx -------------------------------------------------------

def test_sphinx_build():
    g = ONION["generate"]
    hops = [(h(x["pubkey"]), strip_len(h(x["payload"]))) for x in g["hops"]]
    assert build_packet(h(g["session_key"]), hops, h(g["associated_data"])).hex() == ONION["onion"]


def test_sphinx_peel_every_hop():
    g = ONION["generate"]
    packet = h(ONION["onion"])
    for i, priv in enumerate(ONION["decode"]):
        layer = peel_packet(h(priv), packet, h(g["associated_data"]))
        assert layer.payload == strip_len(h(g["hops"][i]["payload"]))
        assert layer.is_final == (i == len(ONION["decode"]) - 1)
        packet = layer.next_packet


def test_sphinx_rejects_tampering():
    g = ONION["generate"]
    bad = bytearray(h(ONION["onion"]))
    bad[100] ^= 1
    with pytest.raises(CryptoError, match="HMAC"):
        peel_packet(h(ONION["decode"][0]), bytes(bad), h(g["associated_data"]))
    with pytest.raises(CryptoError, match="HMAC"):
        peel_packet(h(ONION["decode"][0]), h(ONION["onion"]), b"wrong associated data")


# --- payment onion into a blinded path ------------------------------------

PAY_HOPS = PAY["generate"]["full_route"]["hops"]


@pytest.mark.parametrize("i", range(len(PAY_HOPS)), ids=[x["alias"] for x in PAY_HOPS])
def test_payment_payload_codec(i):
    hop = PAY_HOPS[i]
    raw = strip_len(h(hop["payload"]))
    p = HopPayload.decode(raw)
    tl = hop["tlvs"]
    if "amt_to_forward" in tl:
        assert p.amt_to_forward == tl["amt_to_forward"]
        assert p.outgoing_cltv_value == tl["outgoing_cltv_value"]
    if "total_amount_msat" in tl:
        assert p.total_amount_msat == tl["total_amount_msat"]
    if "current_path_key" in tl:
        assert p.current_path_key == h(tl["current_path_key"])
    if "encrypted_recipient_data" in tl:
        assert p.encrypted_recipient_data == h(PAY["generate"]["blinded_route"]["hops"][i - 1]["encrypted_data"])
    assert p.encode() == raw


def test_payment_onion_build():
    g = PAY["generate"]
    hops = [(h(x["pubkey"]), HopPayload.decode(strip_len(h(x["payload"])))) for x in PAY_HOPS]
    # Hop payloads are associated with the (blinded) node ids listed in full_route.
    assert build_payment_onion(h(g["session_key"]), hops, h(g["associated_data"])).hex() == g["onion"]


def test_payment_onion_peel_every_hop():
    g = PAY["generate"]
    dec = PAY["decrypt"]["hops"]
    packet = h(dec[0]["onion"])
    path_key = None  # from update_add_htlc, once inside the blinded path
    for i, hop in enumerate(dec):
        assert packet.hex() == hop["onion"]
        priv = h(hop["node_privkey"])
        payload, layer = peel_payment_onion(priv, packet, h(g["associated_data"]), path_key)
        assert payload.encode() == strip_len(h(PAY_HOPS[i]["payload"]))
        if payload.encrypted_recipient_data is not None:
            u = unblind_hop(priv, path_key or payload.current_path_key, payload.encrypted_recipient_data)
            data = EncryptedData.decode(u.plaintext)
            path_key = data.next_path_key_override or u.next_path_key
            assert path_key.hex() == hop["next_path_key"]
        if i + 1 < len(dec):
            packet = layer.next_packet
    assert layer.is_final
    assert data.path_id == h(PAY_HOPS[-1]["tlvs"]["encrypted_recipient_data"]["path_id"])


def test_payment_onion_peel_needs_path_key():
    # Past the introduction node the layer is keyed to the blinded node id.
    dec = PAY["decrypt"]["hops"]
    with pytest.raises(CryptoError, match="HMAC"):
        peel_payment_onion(h(dec[2]["node_privkey"]), h(dec[2]["onion"]), h(PAY["generate"]["associated_data"]))


# --- blinded onion message -------------------------------------------------

MGEN = MSG["generate"]["hops"]


@pytest.mark.parametrize("i", range(len(MGEN)), ids=[x["alias"] for x in MGEN])
def test_message_hop_blinding(i):
    hop = MGEN[i]
    tl = hop["tlvs"]
    data = EncryptedData.decode(h(hop["encrypted_data_tlv"]))
    assert data.encode() == h(hop["encrypted_data_tlv"])
    if "next_node_id" in tl:
        assert data.next_node_id == h(tl["next_node_id"])
    if "path_id" in tl:
        assert data.path_id == h(tl["path_id"])
    if "next_path_key_override" in tl:
        assert data.next_path_key_override == h(tl["next_path_key_override"])
    node_ids = [h(x["privkey"]) for x in MSG["decrypt"]["hops"]]
    from asyncpay.crypto import pubkey_of

    got = blind_path(h(hop["path_key_secret"]), [(pubkey_of(node_ids[i]), h(hop["encrypted_data_tlv"]))])[0]
    assert got.path_key == h(hop["E"])
    assert got.shared_secret == h(hop["ss"])
    assert got.rho == h(hop["rho"])
    assert got.blinded_node_id == h(hop["blinded_node_id"])
    assert got.encrypted_data == h(hop["encrypted_recipient_data"])
    # next_e is the computed next path-key secret (the override, if any, replaces it).
    assert next_path_key(got.path_key, got.shared_secret) == pubkey_of(h(hop["next_e"])[:32])


def test_message_path_keys_chain():
    # next_e is the next path-key *secret* (with a trailing marker byte);
    # each hop's secret is the previous next_e unless overridden.
    for prev, cur in zip(MGEN[1:], MGEN[2:]):
        assert h(prev["next_e"])[:32] == h(cur["path_key_secret"])


def test_message_packet_build():
    route = MSG["route"]
    payloads = []
    for i, hop in enumerate(route["hops"]):
        p = OnionMessagePayload(encrypted_recipient_data=h(hop["encrypted_recipient_data"]))
        if i == len(route["hops"]) - 1:
            p.unknown[1] = h(MSG["onionmessage"]["unknown_tag_1"])
        payloads.append((h(hop["blinded_node_id"]), p.encode()))
    packet = build_packet(h(MSG["generate"]["session_key"]), payloads, b"", MESSAGE_ROUTING_SIZES)
    assert packet.hex() == MSG["onionmessage"]["onion_message_packet"]
    assert len(packet) == 1366


def test_message_peel_every_hop():
    dec = MSG["decrypt"]["hops"]
    msg = OnionMessage.decode(h(dec[0]["onion_message"]))
    assert msg.encode().hex() == dec[0]["onion_message"]
    for i, hop in enumerate(dec):
        assert msg.encode().hex() == hop["onion_message"]
        out = peel_onion_message(h(hop["privkey"]), msg)
        if i < len(dec) - 1:
            assert isinstance(out, Forward)
            assert out.next_node_id.hex() == hop["next_node_id"]
            msg = out.message
        else:
            assert isinstance(out, Receive)
            assert out.payload.unknown[1] == h(hop["tlvs"]["unknown_tag_1"])
            assert out.payload.encrypted_recipient_data == h(hop["tlvs"]["encrypted_recipient_data"])
            assert out.path_id == h(MGEN[-1]["tlvs"]["path_id"])


def test_message_peel_wrong_key():
    dec = MSG["decrypt"]["hops"]
    with pytest.raises(CryptoError):
        peel_onion_message(h(dec[1]["privkey"]), OnionMessage.decode(h(dec[0]["onion_message"])))
