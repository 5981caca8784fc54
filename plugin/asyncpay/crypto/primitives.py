"""Curve and cipher primitives used by BOLT 4 (Sphinx and route blinding)."""

from __future__ import annotations

import hashlib
import hmac as _hmac

from coincurve import PrivateKey, PublicKey
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import CryptoError

_ZERO_NONCE16 = bytes(16)
_ZERO_NONCE12 = bytes(12)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hmac256(key: bytes, msg: bytes) -> bytes:
    return _hmac.new(key, msg, hashlib.sha256).digest()


def _priv(secret: bytes) -> PrivateKey:
    try:
        return PrivateKey(secret)
    except (ValueError, TypeError) as e:
        raise CryptoError(f"invalid private key: {e}") from None


def _pub(point: bytes) -> PublicKey:
    try:
        return PublicKey(point)
    except (ValueError, TypeError) as e:
        raise CryptoError(f"invalid public key: {e}") from None


def pubkey_of(secret: bytes) -> bytes:
    return _priv(secret).public_key.format()


def ecdh(secret: bytes, point: bytes) -> bytes:
    """BOLT 4 ECDH: SHA256 of the compressed shared point."""
    return _priv(secret).ecdh(_pub(point).format())


def point_mul(point: bytes, scalar: bytes) -> bytes:
    try:
        return _pub(point).multiply(scalar).format()
    except ValueError as e:
        raise CryptoError(f"point multiply: {e}") from None


def scalar_mul(secret: bytes, scalar: bytes) -> bytes:
    try:
        return _priv(secret).multiply(scalar).secret
    except ValueError as e:
        raise CryptoError(f"scalar multiply: {e}") from None


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
