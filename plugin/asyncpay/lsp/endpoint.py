"""The plugin's endpoint key V and the paths that end at it.

CLN drops, at the final hop, any onion message with an unknown even TLV, and
every async-payments message is one (design §5). So every path we mint for
receiving ends ``[our node -> V]``: our node forwards to V, which is never a
peer, CLN reports the failed forward with the whole onion for V, and we peel
that last layer here with V's key. The last hop's 32-byte ``path_id`` is
random and keys a stored context (kind, recipient_id, slot, expiry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..blinded_path import BlindedPath, EncryptedData
from ..crypto import CryptoError, pubkey_of
from ..onion_message import OnionMessage, OnionMessagePayload, Receive, build_path, peel_onion_message
from ..store import Store
from ..wire import WireError

# Context kinds.
RECIPIENT = "recipient"  # P_req: recipient -> server (offer_paths_request)
SERVE = "serve"  # P_serve: serve_static_invoice for (recipient, slot)
OFFER = "offer"  # offer paths: payers' invoice_request for (recipient, slot)


class Dropped(Exception):
    """The LSP layer's one error: a message we ignore, with the reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Delivered:
    kind: str
    recipient_id: str
    invoice_slot: int | None
    payload: OnionMessagePayload
    path_id: bytes


class Endpoint:
    def __init__(self, store: Store, node_id: bytes, secret: bytes, rng: Callable[[int], bytes]) -> None:
        self.store, self.node_id, self.secret, self.rng = store, node_id, secret, rng
        self.public_key = pubkey_of(secret)

    def mint_path(self, kind: str, recipient_id: str, slot: int | None, expires_at: int, now: int) -> BlindedPath:
        """A fresh path [our node -> V] whose path_id keys a new context."""
        path_id = self.rng(32)
        self.store.add_context(path_id, kind, recipient_id, slot, expires_at, now)
        return build_path(
            self.rng(32),
            [
                (self.node_id, EncryptedData(next_node_id=self.public_key)),
                (self.public_key, EncryptedData(path_id=path_id)),
            ],
        )

    def open(self, msg: OnionMessage, now: int) -> Delivered:
        """Peel a message addressed to V and find its context (raises Dropped)."""
        try:
            out = peel_onion_message(self.secret, msg)
        except (WireError, CryptoError) as e:
            raise Dropped("undecodable", str(e)) from None
        if not isinstance(out, Receive):
            raise Dropped("not_final", "V is never an intermediate hop")
        path_id = out.path_id
        if path_id is None or len(path_id) != 32:
            raise Dropped("no_path_id")
        ctx = self.store.context(path_id)
        if ctx is None:
            raise Dropped("unknown_path_id")
        kind, recipient_id, slot, expires_at = ctx
        if now >= expires_at:
            raise Dropped("expired_path_id")
        return Delivered(kind, recipient_id, slot, out.payload, path_id)
