"""Blinded onion messages: build, join and peel (BOLT 4 "Onion Messages").

Every hop of an onion message is a blinded hop: the Sphinx layer is encrypted
to the hop's *blinded* node id, and the hop's ``encrypted_recipient_data``
tells it where to forward. Packets carry empty associated data and use 1300
or 32768 routing bytes, whichever first fits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..blinded_path import BlindedHop, BlindedPath, EncryptedData, IntroductionNode
from ..crypto import blind_path, build_packet, peel_packet
from ..crypto.blinding import decrypt_hop_data, hop_key, next_path_key
from ..crypto.sphinx import MESSAGE_ROUTING_SIZES
from ..wire import Reader, WireError
from ..wire.fields import check_point
from .payload import OnionMessagePayload

ONION_MESSAGE_TYPE = 513


@dataclass(frozen=True)
class OnionMessage:
    """BOLT 4 ``onion_message`` (type 513): path_key and the Sphinx packet."""

    path_key: bytes
    packet: bytes

    @classmethod
    def decode(cls, data: bytes) -> OnionMessage:
        r = Reader(data)
        if r.u16("type") != ONION_MESSAGE_TYPE:
            raise WireError("onion_message: not type 513")
        key = check_point(r.read(33, "path_key"), "path_key")
        packet = r.read(r.u16("len"), "onion_message_packet")
        r.expect_end("onion_message")
        return cls(key, packet)

    def encode(self) -> bytes:
        if len(self.packet) > 0xFFFF:
            raise WireError(f"onion_message: packet of {len(self.packet)} bytes")
        return (
            ONION_MESSAGE_TYPE.to_bytes(2, "big")
            + self.path_key
            + len(self.packet).to_bytes(2, "big")
            + self.packet
        )


def build_path(
    session_key: bytes,
    hops: list[tuple[bytes, EncryptedData]],
    pad_to_equal: bool = True,
) -> BlindedPath:
    """Mint a blinded path over [(node_id, encrypted data), ...].

    With ``pad_to_equal`` every hop's encrypted data is padded to the longest,
    so that hop lengths do not reveal position (BOLT 4 recommends it).
    """
    datas = [d for _, d in hops]
    if pad_to_equal and len(datas) > 1:
        datas = _equal_padding(datas)
    secrets = blind_path(session_key, [(n, d.encode()) for (n, _), d in zip(hops, datas)])
    return BlindedPath(
        IntroductionNode(node_id=hops[0][0]),
        secrets[0].path_key,
        tuple(BlindedHop(s.blinded_node_id, s.encrypted_data) for s in secrets),
    )


def _equal_padding(datas: list[EncryptedData]) -> list[EncryptedData]:
    """Pad every hop's data to one common length: the smallest length, at
    least the longest hop's, that each hop can reach (a padding record costs
    at least two bytes, so "one byte more" is not always reachable)."""
    lengths = [d.unpadded_size() for d in datas]  # each encoded once, not once per try
    size = max(len(d.encode()) if d.padding is not None else n for d, n in zip(datas, lengths))
    while True:
        try:
            return [d.padded_to(size, n) for d, n in zip(datas, lengths)]
        except WireError:
            size += 1


def prepend_hop(
    session_key: bytes, node_id: bytes, dest: BlindedPath, dest_intro: bytes, via: Sequence[bytes] = ()
) -> BlindedPath:
    """Join blinded hops at ``node_id`` and then ``via`` in front of ``dest``.

    ``dest_intro`` is the node id of ``dest``'s introduction node (resolved by
    the caller when ``dest`` names it by short channel id). Each new hop
    names the next node; the last points at ``dest_intro`` with
    ``next_path_key_override`` so ``dest`` keeps its own path key.
    """
    nodes = [node_id, *via]
    hops = [(n, EncryptedData(next_node_id=nxt)) for n, nxt in zip(nodes, nodes[1:])]
    hops.append((nodes[-1], EncryptedData(next_node_id=dest_intro, next_path_key_override=dest.first_path_key)))
    head = build_path(session_key, hops, pad_to_equal=False)
    return BlindedPath(head.introduction, head.first_path_key, head.hops + dest.hops)


def build_onion_message(
    session_key: bytes, path: BlindedPath, payload: OnionMessagePayload
) -> OnionMessage:
    """The onion message to hand to ``path``'s introduction node.

    ``payload`` is what the final hop reads (reply path, message); each hop's
    ``encrypted_recipient_data`` is filled in from ``path``.
    """
    hops = []
    last = len(path.hops) - 1
    for i, hop in enumerate(path.hops):
        if i == last:
            p = OnionMessagePayload(**{**payload.__dict__, "encrypted_recipient_data": hop.encrypted_data})
        else:
            p = OnionMessagePayload(encrypted_recipient_data=hop.encrypted_data)
        hops.append((hop.blinded_node_id, p.encode()))
    return OnionMessage(path.first_path_key, build_packet(session_key, hops, b"", MESSAGE_ROUTING_SIZES))


@dataclass(frozen=True)
class Forward:
    """We are an intermediate hop: send ``message`` on to the next node."""

    next_node_id: bytes | None
    next_short_channel_id: int | None
    message: OnionMessage
    data: EncryptedData


@dataclass(frozen=True)
class Receive:
    """We are the final hop."""

    payload: OnionMessagePayload
    data: EncryptedData

    @property
    def path_id(self) -> bytes | None:
        return self.data.path_id


def peel_onion_message(node_secret: bytes, msg: OnionMessage) -> Forward | Receive:
    """Process one layer of ``msg`` with our node key (or the endpoint key V).

    Raises WireError or CryptoError for anything malformed or not for us.
    """
    # The Sphinx layer is keyed to our *blinded* node id for this path key.
    key = hop_key(node_secret, msg.path_key)
    layer = peel_packet(key.blinded_privkey, msg.packet, b"")
    payload = OnionMessagePayload.decode(layer.payload)
    if payload.encrypted_recipient_data is None:
        raise WireError("onion message: no encrypted_recipient_data")
    data = EncryptedData.decode(decrypt_hop_data(key.shared_secret, payload.encrypted_recipient_data))
    if layer.next_packet is None:
        return Receive(payload, data)
    extra = payload.contents() + (["reply_path"] if payload.reply_path else []) + list(payload.unknown)
    if extra:
        raise WireError(f"onion message: forwarding hop carries {extra}")
    if data.next_node_id is None and data.short_channel_id is None:
        raise WireError("onion message: forwarding hop without next_node_id or short_channel_id")
    next_key = data.next_path_key_override or next_path_key(msg.path_key, key.shared_secret)
    return Forward(data.next_node_id, data.short_channel_id, OnionMessage(next_key, layer.next_packet), data)


def onion_from_node(
    node_id: bytes,
    dest: BlindedPath,
    dest_intro: bytes,
    payload: OnionMessagePayload,
    rng: Callable[[int], bytes],
    via: Sequence[bytes] = (),
) -> OnionMessage:
    """The onion to inject at our own node ``node_id`` so that it reaches ``dest``.

    CLN's ``injectonionmessage`` processes an onion as if a peer had sent it
    to us; CLN's own offers plugin sends this way. When ``dest`` starts at our
    node it is used as is, otherwise blinded hops at our node and at ``via``
    (the nodes between us and the introduction node, when it is not our
    peer) are joined in front (``dest_intro`` is its introduction node's id).
    """
    path = dest if dest_intro == node_id else prepend_hop(rng(32), node_id, dest, dest_intro, via)
    return build_onion_message(rng(32), path, payload)
