"""What every role's CLN adapter looks like to the router (``cln/node.py``).

A role adapter owns one role's sans-IO core and turns the events the router
hands it into calls on that core, and the core's actions into RPC. Each
method has a do-nothing default, so a role implements only what it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from ..actions import InjectOnion
from ..endpoint import Delivered

if TYPE_CHECKING:
    from .node import Node

# Answers the htlc_accepted hook; may be called later, from any thread.
Respond = Callable[[dict], None]


class Role:
    #: Context kinds of the paths this role mints: messages reaching V over
    #: them are routed to ``on_message``.
    KINDS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, node: Node) -> None:
        self.node = node

    def start(self) -> None:
        """Called once lightningd has finished ``init`` (peers may be connected)."""

    def on_message(self, d: Delivered, now: int) -> list[InjectOnion]:
        """A message for V over one of our paths (raise ``Dropped`` to ignore it)."""
        return []

    def on_forward_fail(self, params: dict, now: int) -> bool:
        """An onion message CLN could not forward to a peer; True if handled."""
        return False

    def on_connect(self, peer_id: str) -> None:
        """A peer connected."""

    def on_block(self, height: int, now: int) -> None:
        """A new block (expiries, timers that must not drift with block time)."""

    def on_htlc(self, params: dict, respond: Respond) -> bool:
        """An ``htlc_accepted`` hook call: True if this role took it and will
        call ``respond`` (now or later), False to let the next role look."""
        return False

    def status(self) -> dict:
        """This role's part of ``asyncpay-status``."""
        return {}
