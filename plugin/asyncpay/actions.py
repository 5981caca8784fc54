"""What the protocol core asks the host to do. The CLN adapter carries these
out with RPC; tests and the in-process emulation carry them out directly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class InjectOnion:
    """Inject this onion message at our own node (``injectonionmessage``).

    ``first_hop`` is the node our node will forward it to (None when our node
    is also the final hop); ``purpose`` names it in logs and counters.
    ``cause`` is the peer whose message made us send this one, and ``owner``
    the owner of the path context it answers (set by the router): when the
    first hop is offline the mailbox counts the message against ``cause``
    and keeps it only if the sleeping peer needs it (cln/lsp.py).
    """

    path_key: bytes
    packet: bytes
    first_hop: bytes | None
    purpose: str
    cause: str | None = None
    owner: str | None = None


@dataclass(frozen=True)
class Later:
    """Onions that no answer waits for (the copy of an ``invoice_request``
    forwarded to its recipient): ``build`` is called only once every action
    before it was handed to lightningd, without the node lock, and returns
    the onions to send (it counts and swallows its own failures)."""

    build: Callable[[], list[InjectOnion]]


def expand(actions: list[InjectOnion | Later]) -> list[InjectOnion]:
    """Every onion, ``Later`` ones built now (tests and tools, which send nothing)."""
    out: list[InjectOnion] = []
    for a in actions:
        out.extend(a.build() if isinstance(a, Later) else [a])
    return out
