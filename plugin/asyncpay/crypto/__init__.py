"""Cryptography for BOLT 4: ECDH, ChaCha20, route blinding and Sphinx.

ECDH and point arithmetic go through coincurve (libsecp256k1); ChaCha20 and
ChaCha20-Poly1305 through ``cryptography``. The layer's one error type is
``CryptoError``.
"""

from .blinding import BlindedHopSecrets, blind_path, unblind_hop
from .errors import CryptoError
from .primitives import ecdh, hmac256, pubkey_of, sha256
from .sphinx import (
    MESSAGE_ROUTING_SIZES,
    PAYMENT_ROUTING_SIZE,
    PeeledLayer,
    build_packet,
    peel_packet,
)

__all__ = [
    "MESSAGE_ROUTING_SIZES",
    "PAYMENT_ROUTING_SIZE",
    "BlindedHopSecrets",
    "CryptoError",
    "PeeledLayer",
    "blind_path",
    "build_packet",
    "ecdh",
    "hmac256",
    "peel_packet",
    "pubkey_of",
    "sha256",
    "unblind_hop",
]
