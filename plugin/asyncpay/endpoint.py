"""The plugin's endpoint key V and the paths that end at it, shared by every role.

CLN drops, at the final hop, any onion message with an unknown even TLV, and
every async-payments message is one (design §5). So every path we mint for
receiving ends ``[... -> our node -> V]``: our node forwards to V, which is
never a peer, CLN reports the failed forward with the whole onion for V, and
we peel that last layer here with V's key. The last hop's 32-byte ``path_id``
is random and keys a stored context: its ``kind`` says which role handles the
message, ``owner`` and ``slot`` what it is about (a recipient and its slot
for the LSP, a payment id for the payer, ...), ``expires_at`` when it dies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .actions import InjectOnion
from .blinded_path import BlindedPath, EncryptedData, IntroductionNode
from .crypto import CryptoError, pubkey_of
from .onion_message import (
    Forward,
    HeldHtlcAvailable,
    OnionMessage,
    OnionMessagePayload,
    Receive,
    build_path,
    onion_from_node,
    peel_onion_message,
)
from .store import Store
from .wire import WireError

# Node id behind an introduction node named by short channel id (None: unknown).
Resolver = Callable[[IntroductionNode], "bytes | None"]
# The nodes between us and a node that is not our peer (empty: send directly).
Router = Callable[[bytes], Sequence[bytes]]


def _no_scid(intro: IntroductionNode) -> bytes | None:
    return intro.node_id


class Dropped(Exception):
    """A message we ignore, with the reason (counted as ``dropped_<reason>``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Delivered:
    """A message that reached V over one of our paths, with that path's context."""

    kind: str
    owner: str
    slot: int | None
    payload: OnionMessagePayload
    path_id: bytes
    source: str | None = None  # the peer that handed it to our node (set by the router)

    @property
    def recipient_id(self) -> str:
        """The LSP's name for ``owner``: the recipient the path was minted for."""
        return self.owner

    @property
    def invoice_slot(self) -> int | None:
        return self.slot


def _direct(node_id: bytes) -> Sequence[bytes]:
    return ()


class Endpoint:
    def __init__(self, store: Store, node_id: bytes, secret: bytes, rng: Callable[[int], bytes],
                 route: Router = _direct) -> None:
        self.store, self.node_id, self.secret, self.rng = store, node_id, secret, rng
        self.route = route  # how to reach an introduction node that is not our peer
        self.public_key = pubkey_of(secret)

    def mint_path(
        self,
        kind: str,
        owner: str,
        slot: int | None,
        expires_at: int,
        now: int,
        via: Sequence[bytes] = (),
        path_id: bytes | None = None,
    ) -> BlindedPath:
        """A fresh path ``[*via -> our node -> V]`` whose path_id keys a new context.

        ``via`` are the node ids in front of ours (e.g. our LSP, so that a
        message for us waits in its mailbox while we are offline); each one
        forwards to the next by node id. ``path_id`` may be chosen by the
        caller (32 random bytes) when it must refer to the context later.
        """
        path_id = path_id or self.rng(32)
        self.store.add_context(path_id, kind, owner, slot, expires_at, now)
        nodes = [*via, self.node_id]
        hops = [(n, EncryptedData(next_node_id=nxt)) for n, nxt in zip(nodes, [*nodes[1:], self.public_key])]
        hops.append((self.public_key, EncryptedData(path_id=path_id)))
        return build_path(self.rng(32), hops)

    def peel(self, msg: OnionMessage) -> Forward | Receive:
        """Peel V's layer of a message (raises Dropped)."""
        try:
            return peel_onion_message(self.secret, msg)
        except (WireError, CryptoError) as e:
            raise Dropped("undecodable", str(e)) from None

    def open(self, msg: OnionMessage, now: int, peeled: Forward | Receive | None = None) -> Delivered:
        """Peel a message addressed to V and find its context (raises Dropped).
        ``peeled``: what ``peel`` already gave for ``msg`` (peeling costs two
        point multiplications; the router peels once to look at the reply path)."""
        out = peeled if peeled is not None else self.peel(msg)
        if not isinstance(out, Receive):
            raise Dropped("not_final", "V is never an intermediate hop")
        path_id = out.path_id
        if path_id is None or len(path_id) != 32:
            raise Dropped("no_path_id")
        ctx = self.store.context(path_id)
        if ctx is None:
            raise Dropped("unknown_path_id")
        kind, owner, slot, expires_at = ctx
        if now >= expires_at:
            raise Dropped("expired_path_id")
        return Delivered(kind, owner, slot, out.payload, path_id)

    def send(
        self, dest: BlindedPath, payload: OnionMessagePayload, purpose: str, resolve_intro: Resolver = _no_scid
    ) -> InjectOnion:
        """The action that sends ``payload`` from our node over ``dest`` (raises Dropped).

        A reply path may start anywhere (CLN's ``fetchinvoice`` starts it at
        the payer): when its introduction node is not our peer, ``route``
        names the nodes in between and the onion goes through them."""
        intro = dest.introduction.node_id or resolve_intro(dest.introduction)
        if intro is None:
            raise Dropped("unresolvable_path", dest.introduction.describe())
        via = tuple(self.route(intro)) if intro != self.node_id else ()
        try:
            msg = onion_from_node(self.node_id, dest, intro, payload, self.rng, via)
        except (WireError, CryptoError, ValueError) as e:
            raise Dropped("unsendable", str(e)) from None
        first_hop = via[0] if via else (None if intro == self.node_id else intro)
        return InjectOnion(msg.path_key, msg.packet, first_hop, purpose)

    def held_htlc_available(
        self, paths: Sequence[BlindedPath], kind: str, owner: str, expires_at: int, now: int,
        resolve_intro: Resolver = _no_scid, via: Sequence[bytes] = (),
    ) -> tuple[list[InjectOnion], list[str]]:
        """``held_htlc_available`` over each of ``paths`` (design §3 step 8),
        each with its own reply path to V whose context (``kind``, ``owner``)
        names the held payment: the onions, and why any path was unusable."""
        actions, unusable = [], []
        for path in paths:
            reply = self.mint_path(kind, owner, None, expires_at, now, via=via)
            payload = OnionMessagePayload(held_htlc_available=HeldHtlcAvailable(), reply_path=reply)
            try:
                actions.append(self.send(path, payload, "held_htlc_available", resolve_intro))
            except Dropped as e:
                unusable.append(e.reason)
        return actions, unusable
