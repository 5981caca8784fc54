"""Sphinx packets (BOLT 4 "Packet Construction" and "Onion Decryption").

One implementation serves payment onions (1300 routing bytes, associated data
= payment hash) and onion messages (1300 or 32768 routing bytes, empty
associated data). Hop payloads are given and returned without their BigSize
length prefix; the packet adds it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from ..wire.errors import WireError
from ..wire.types import bigsize, read_bigsize
from .errors import CryptoError
from .primitives import chacha20_stream, ecdh, hmac256, point_mul, pubkey_of, scalar_mul, sha256, xor

PAYMENT_ROUTING_SIZE = 1300
MESSAGE_ROUTING_SIZES = (1300, 32768)
HMAC_SIZE = 32


@dataclass(frozen=True)
class HopKeys:
    ephemeral_key: bytes
    shared_secret: bytes
    rho: bytes
    mu: bytes


def hop_keys(session_key: bytes, node_ids: list[bytes]) -> list[HopKeys]:
    keys = []
    e = session_key
    for node_id in node_ids:
        big_e = pubkey_of(e)
        ss = ecdh(e, node_id)
        keys.append(HopKeys(big_e, ss, hmac256(b"rho", ss), hmac256(b"mu", ss)))
        e = scalar_mul(e, sha256(big_e + ss))
    return keys


def _filler(keys: list[HopKeys], payloads: list[bytes], size: int) -> bytes:
    filler = b""
    for k, p in zip(keys[:-1], payloads[:-1]):
        hop_len = len(p) + HMAC_SIZE
        filler += bytes(hop_len)
        stream = chacha20_stream(k.rho, size + hop_len)
        filler = xor(filler, stream[size + hop_len - len(filler) :])
    return filler


def routing_size_for(payloads: list[bytes], sizes: tuple[int, ...]) -> int:
    need = sum(len(p) + HMAC_SIZE for p in payloads)
    for s in sizes:
        if need <= s:
            return s
    raise CryptoError(f"payloads need {need} bytes, more than {sizes[-1]}")


def build_packet(
    session_key: bytes,
    hops: list[tuple[bytes, bytes]],
    associated_data: bytes = b"",
    sizes: tuple[int, ...] = (PAYMENT_ROUTING_SIZE,),
) -> bytes:
    """Build version || E || routing_info || hmac for [(node_id, payload)].

    The routing-info size is the first of ``sizes`` that fits the payloads.
    """
    if not hops:
        raise CryptoError("no hops")
    node_ids = [h[0] for h in hops]
    payloads = [bigsize(len(h[1])) + h[1] for h in hops]
    size = routing_size_for(payloads, sizes)
    keys = hop_keys(session_key, node_ids)
    filler = _filler(keys, payloads, size)
    info = chacha20_stream(hmac256(b"pad", session_key), size)
    next_hmac = bytes(HMAC_SIZE)
    for i in range(len(hops) - 1, -1, -1):
        info = (payloads[i] + next_hmac + info)[:size]
        info = xor(info, chacha20_stream(keys[i].rho, size))
        if i == len(hops) - 1 and filler:
            info = info[: size - len(filler)] + filler
        next_hmac = hmac256(keys[i].mu, info + associated_data)
    return b"\x00" + keys[0].ephemeral_key + info + next_hmac


@dataclass(frozen=True)
class PeeledLayer:
    """One hop's view: its payload (length prefix stripped), the shared
    secret, and the packet for the next hop (None at the final hop)."""

    payload: bytes
    shared_secret: bytes
    next_packet: bytes | None

    @property
    def is_final(self) -> bool:
        return self.next_packet is None


def peel_packet(node_secret: bytes, packet: bytes, associated_data: bytes = b"") -> PeeledLayer:
    """Decrypt our layer of ``packet`` with ``node_secret`` (raises CryptoError)."""
    size = len(packet) - 1 - 33 - HMAC_SIZE
    if size <= 0 or packet[0] != 0:
        raise CryptoError("onion packet: bad length or version")
    big_e, info, mac = packet[1:34], packet[34 : 34 + size], packet[34 + size :]
    ss = ecdh(node_secret, big_e)
    # Constant time: a timing oracle on the HMAC would let a peer forge it byte by byte.
    if not hmac.compare_digest(hmac256(hmac256(b"mu", ss), info + associated_data), mac):
        raise CryptoError("onion packet: HMAC mismatch")
    plain = xor(info + bytes(size), chacha20_stream(hmac256(b"rho", ss), 2 * size))
    try:
        length, start = read_bigsize(plain, 0)
    except WireError as e:
        raise CryptoError(f"onion payload length: {e}") from None
    end = start + length
    if length == 0 or end + HMAC_SIZE > size:
        raise CryptoError(f"onion payload length {length} does not fit")
    payload = plain[start:end]
    next_mac = plain[end : end + HMAC_SIZE]
    if next_mac == bytes(HMAC_SIZE):
        return PeeledLayer(payload, ss, None)
    next_e = point_mul(big_e, sha256(big_e + ss))
    next_info = plain[end + HMAC_SIZE : end + HMAC_SIZE + size]
    return PeeledLayer(payload, ss, b"\x00" + next_e + next_info + next_mac)
