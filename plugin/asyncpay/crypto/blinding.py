"""Route blinding (BOLT 4 "Route Blinding").

For hop i with node id N_i and path key E_i = e_i·G:
    ss_i  = SHA256(e_i·N_i)
    B_i   = HMAC256("blinded_node_id", ss_i)·N_i
    rho_i = HMAC256("rho", ss_i); data_i is ChaCha20-Poly1305(rho_i) encrypted
    e_i+1 = SHA256(E_i || ss_i)·e_i   (unless data_i carries next_path_key_override)
The hop undoes this with its node key k: ss = SHA256(k·E_i), blinded key
HMAC256("blinded_node_id", ss)·k, next path key SHA256(E_i || ss)·E_i.
"""

from __future__ import annotations

from dataclasses import dataclass

from .primitives import (
    aead_decrypt,
    aead_encrypt,
    ecdh,
    hmac256,
    point_mul,
    pubkey_of,
    scalar_mul,
    sha256,
)


@dataclass(frozen=True)
class BlindedHopSecrets:
    """Everything computed for one hop while blinding (exposed for the vectors)."""

    path_key_secret: bytes
    path_key: bytes
    shared_secret: bytes
    rho: bytes
    blinded_node_id: bytes
    encrypted_data: bytes


def blind_path(session_key: bytes, hops: list[tuple[bytes, bytes]]) -> list[BlindedHopSecrets]:
    """Blind ``hops`` = [(node_id, encrypted_data_tlv plaintext), ...].

    The first path key is ``session_key``·G. The caller handles
    ``next_path_key_override`` by blinding each segment with its own key.
    """
    out = []
    e = session_key
    for node_id, plaintext in hops:
        big_e = pubkey_of(e)
        ss = ecdh(e, node_id)
        rho = hmac256(b"rho", ss)
        out.append(
            BlindedHopSecrets(
                path_key_secret=e,
                path_key=big_e,
                shared_secret=ss,
                rho=rho,
                blinded_node_id=point_mul(node_id, hmac256(b"blinded_node_id", ss)),
                encrypted_data=aead_encrypt(rho, plaintext),
            )
        )
        e = scalar_mul(e, sha256(big_e + ss))
    return out


@dataclass(frozen=True)
class UnblindedHop:
    shared_secret: bytes
    blinded_privkey: bytes
    plaintext: bytes
    next_path_key: bytes


@dataclass(frozen=True)
class HopKey:
    """A hop's blinding shared secret and the private key of its blinded id."""

    shared_secret: bytes
    blinded_privkey: bytes


def hop_key(node_secret: bytes, path_key: bytes) -> HopKey:
    ss = ecdh(node_secret, path_key)
    return HopKey(ss, scalar_mul(node_secret, hmac256(b"blinded_node_id", ss)))


def decrypt_hop_data(shared_secret: bytes, encrypted_data: bytes) -> bytes:
    return aead_decrypt(hmac256(b"rho", shared_secret), encrypted_data)


def unblind_hop(node_secret: bytes, path_key: bytes, encrypted_data: bytes) -> UnblindedHop:
    """What a hop does with its encrypted_recipient_data (raises CryptoError)."""
    k = hop_key(node_secret, path_key)
    return UnblindedHop(
        shared_secret=k.shared_secret,
        blinded_privkey=k.blinded_privkey,
        plaintext=decrypt_hop_data(k.shared_secret, encrypted_data),
        next_path_key=next_path_key(path_key, k.shared_secret),
    )


def next_path_key(path_key: bytes, shared_secret: bytes) -> bytes:
    return point_mul(path_key, sha256(path_key + shared_secret))
