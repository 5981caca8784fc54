"""Payment onions (1300 routing bytes, associated data = payment hash)."""

from __future__ import annotations

from ..crypto import PAYMENT_ROUTING_SIZE, PeeledLayer, build_packet, peel_packet
from ..crypto.blinding import hop_key
from .hop_payload import HopPayload


def build_payment_onion(
    session_key: bytes, hops: list[tuple[bytes, HopPayload]], payment_hash: bytes
) -> bytes:
    """Onion over [(node_id, payload)]; for hops inside a blinded path the
    node id is the blinded node id from the path."""
    return build_packet(
        session_key, [(n, p.encode()) for n, p in hops], payment_hash, (PAYMENT_ROUTING_SIZE,)
    )


def peel_payment_onion(
    node_secret: bytes, packet: bytes, payment_hash: bytes, path_key: bytes | None = None
) -> tuple[HopPayload, PeeledLayer]:
    """Peel our layer; inside a blinded path pass the ``path_key`` we were given
    (update_add_htlc's, or current_path_key from the previous payload)."""
    secret = hop_key(node_secret, path_key).blinded_privkey if path_key else node_secret
    layer = peel_packet(secret, packet, payment_hash)
    return HopPayload.decode(layer.payload), layer
