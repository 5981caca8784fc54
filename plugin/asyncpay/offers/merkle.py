"""BOLT 12 "Signature Calculation": merkle root of a TLV stream and BIP340
signatures over it with a per-message tag.

Leaves, in type order: H("LnLeaf", tlv) paired with
H("LnNonce" || first_tlv, type); inner nodes H("LnBranch", lesser || greater);
the lowest-order leaves sit deepest when the count is not a power of two.
Signature fields (types 240 to 1000 inclusive) are left out.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from coincurve import PrivateKey, PublicKeyXOnly

from ..wire import WireError
from ..wire.tlv import TlvStream
from ..wire.types import bigsize


@lru_cache(maxsize=64)
def _tag_prefix(tag: bytes) -> bytes:
    t = hashlib.sha256(tag).digest()
    return t + t


def tagged_hash(tag: bytes, msg: bytes) -> bytes:
    return hashlib.sha256(_tag_prefix(tag) + msg).digest()


def branch(a: bytes, b: bytes) -> bytes:
    return tagged_hash(b"LnBranch", a + b if a < b else b + a)


def is_signature_type(t: int) -> bool:
    return 240 <= t <= 1000


def _record(t: int, v: bytes) -> bytes:
    return bigsize(t) + bigsize(len(v)) + v


def leaves(records: TlvStream) -> list[bytes]:
    recs = [(t, v) for t, v in records if not is_signature_type(t)]
    if not recs:
        raise WireError("merkle: no TLV records to sign")
    first = _record(*recs[0])
    nonce_tag = b"LnNonce" + first
    nonce_prefix = hashlib.sha256(nonce_tag).digest() * 2
    return [
        branch(tagged_hash(b"LnLeaf", _record(t, v)), hashlib.sha256(nonce_prefix + bigsize(t)).digest())
        for t, v in recs
    ]


def merkle_root(records: TlvStream) -> bytes:
    level = leaves(records)
    while len(level) > 1:
        level = [
            branch(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
    return level[0]


def signature_tag(message_name: str, field_name: str = "signature") -> bytes:
    return b"lightning" + message_name.encode() + field_name.encode()


def sighash(message_name: str, records: TlvStream) -> bytes:
    return tagged_hash(signature_tag(message_name), merkle_root(records))


def sign(message_name: str, records: TlvStream, secret: bytes, aux: bytes | None = None) -> bytes:
    return PrivateKey(secret).sign_schnorr(sighash(message_name, records), aux)


def verify(message_name: str, records: TlvStream, signature: bytes, pubkey: bytes) -> bool:
    """BIP340 verification against the x-only form of a 33-byte ``pubkey``."""
    if len(signature) != 64 or len(pubkey) != 33:
        return False
    try:
        return PublicKeyXOnly(pubkey[1:]).verify(signature, sighash(message_name, records))
    except ValueError:
        return False
