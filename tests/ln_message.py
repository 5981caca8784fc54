"""An independent LN message signer and verifier for the tests: LSPS0
``ln_signature`` (BitcoinAndLightningLayerSpecs/lsp LSPS0/common-schemas.md):
zbase32(SigRec(SHA256(SHA256("Lightning Signed Message:" + msg)))), SigRec
being 31 + recovery id, then the 64-byte signature. What CLN's
``signmessage`` returns as ``zbase`` and ``checkmessage`` checks."""

from __future__ import annotations

import hashlib

from coincurve import PrivateKey, PublicKey

ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"  # philzimmermann.com human-oriented base-32
PREFIX = b"Lightning Signed Message:"


def zbase32_encode(data: bytes) -> str:
    bits = "".join(f"{b:08b}" for b in data)
    bits += "0" * (-len(bits) % 5)
    return "".join(ZBASE32[int(bits[i:i + 5], 2)] for i in range(0, len(bits), 5))


def zbase32_decode(text: str) -> bytes:
    bits = "".join(f"{ZBASE32.index(c):05b}" for c in text.lower())
    return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits) - len(bits) % 8, 8))


def digest(message: str) -> bytes:
    return hashlib.sha256(hashlib.sha256(PREFIX + message.encode()).digest()).digest()


def sign(secret: bytes, message: str) -> str:
    rec = PrivateKey(secret).sign_recoverable(digest(message), hasher=None)  # r || s || recid
    return zbase32_encode(bytes([31 + rec[64]]) + rec[:64])


def recover(message: str, signature: str) -> bytes:
    """The node id (compressed) that signed ``message``."""
    raw = zbase32_decode(signature)[:65]
    if len(raw) != 65 or not 31 <= raw[0] <= 34:
        raise ValueError("not an LN message signature")
    pub = PublicKey.from_signature_and_message(raw[1:] + bytes([raw[0] - 31]), digest(message), hasher=None)
    return pub.format(compressed=True)
