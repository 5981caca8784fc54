"""Curve and cipher primitives used by BOLT 4 (Sphinx and route blinding)."""

from __future__ import annotations

import hashlib
import hmac as _hmac
from functools import lru_cache

from coincurve import PublicKey
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import CryptoError

_ZERO_NONCE16 = bytes(16)
_ZERO_NONCE12 = bytes(12)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hmac256(key: bytes, msg: bytes) -> bytes:
    # The one-shot C path: an onion costs a dozen of these (issue 15).
    return _hmac.digest(key, msg, "sha256")


# secp256k1 group order.
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _scalar(secret: bytes, what: str = "private key") -> int:
    # Checked here: coincurve takes any length whose value is in range (e.g.
    # 33 bytes with a leading zero) and later fails with IndexError.
    if len(secret) != 32:
        raise CryptoError(f"invalid {what}: {len(secret)} bytes, expected 32")
    v = int.from_bytes(secret, "big")
    if not 0 < v < N:
        raise CryptoError(f"invalid {what}: out of range")
    return v


@lru_cache(maxsize=1024)
def _parsed(point: bytes) -> PublicKey:
    return PublicKey(point)


def _pub(point: bytes) -> PublicKey:
    # Parsed once per point: the same node ids (ours, the LSP's, its V) are
    # in every path we mint. Safe to share: multiply() returns a new key.
    # Bounded (an LRU of 1024 keys, ~0.2 MB); an invalid point is never cached.
    try:
        return _parsed(bytes(point))
    except (ValueError, TypeError) as e:
        raise CryptoError(f"invalid public key: {e}") from None


# coincurve's PrivateKey() derives a public key *and* a Schnorr keypair on
# every construction; Sphinx and route blinding need neither, so they use
# scalar arithmetic and point tweaks instead.


def pubkey_of(secret: bytes) -> bytes:
    _scalar(secret)
    return PublicKey.from_secret(secret).format()


def ecdh(secret: bytes, point: bytes) -> bytes:
    """BOLT 4 ECDH: SHA256 of the compressed shared point (libsecp256k1's
    default ECDH hash)."""
    _scalar(secret)
    return sha256(_pub(point).multiply(secret).format())


def point_mul(point: bytes, scalar: bytes) -> bytes:
    _scalar(scalar, "tweak")
    return _pub(point).multiply(scalar).format()


def scalar_mul(secret: bytes, scalar: bytes) -> bytes:
    v = _scalar(secret) * _scalar(scalar, "tweak") % N
    return v.to_bytes(32, "big")


def chacha20_stream(key: bytes, length: int) -> bytes:
    """ChaCha20 keystream with a zero nonce and counter 0 (BOLT 4 streams)."""
    enc = Cipher(algorithms.ChaCha20(key, _ZERO_NONCE16), mode=None).encryptor()
    return enc.update(bytes(length))


def xor(a: bytes, b: bytes) -> bytes:
    n = min(len(a), len(b))
    return (int.from_bytes(a[:n], "big") ^ int.from_bytes(b[:n], "big")).to_bytes(n, "big")


def aead_encrypt(key: bytes, plaintext: bytes) -> bytes:
    """ChaCha20-Poly1305, zero nonce, empty associated data (route blinding)."""
    return ChaCha20Poly1305(key).encrypt(_ZERO_NONCE12, plaintext, b"")


def aead_decrypt(key: bytes, ciphertext: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE12, ciphertext, b"")
    except InvalidTag:
        raise CryptoError("encrypted_recipient_data does not decrypt (bad tag)") from None
