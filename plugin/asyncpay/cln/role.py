"""What a role's CLN adapter and the router (``cln/node.py``) see of each other.

A role adapter owns one role's sans-IO core and turns the events the router
hands it into calls on that core, and the core's actions into RPC. Each
method of ``Role`` has a do-nothing default, so a role implements only what
it needs. What an adapter may use of the node is ``Host``: the router
depends on the adapters, never the reverse.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar

from ..actions import InjectOnion, Later
from ..blinded_path import IntroductionNode
from ..bookkeeping import Bookkeeping
from ..endpoint import Delivered, Endpoint
from ..store import Store

C = TypeVar("C")
T = TypeVar("T")

# Answers the htlc_accepted hook; may be called later, from any thread.
Respond = Callable[[dict], None]


class AnswerOnce:
    """A hook responder that answers at most once: a second verdict for the
    same HTLC is dropped (and reported to ``on_second``, if given)."""

    def __init__(self, respond: Respond, on_second: Callable[[dict, dict], None] | None = None) -> None:
        self.respond, self.on_second = respond, on_second
        self.first: dict | None = None
        self.lock = threading.Lock()

    @property
    def called(self) -> bool:
        return self.first is not None

    def __call__(self, answer: dict) -> None:
        with self.lock:
            first = self.first
            if first is None:
                self.first = answer
        if first is not None:
            if self.on_second is not None:
                self.on_second(first, answer)
            return
        self.respond(answer)


class Host(Protocol):
    """What the node (``cln/node.py``'s ``Node``) offers every role adapter."""

    rpc: Any  # pyln's LightningRpc, or the in-process emulation in tests
    store: Store
    books: Bookkeeping  # counters and served marks, written off the answers' path
    endpoint: Endpoint  # the endpoint key V shared by every role
    lock: Any  # one re-entrant lock over the store and the cores (threading.RLock)
    node_id: bytes
    chain: bytes  # BOLT 12 chain hash of our offers
    log: Callable[..., None]
    notify: Callable[[str, dict], None]

    def config_for(self, cls: type[C]) -> C:
        """The configuration of one role: as given, or its defaults."""
        ...

    cltv_delta: int  # lightningd's cltv-delta, read once (payment/forward_budget.py)
    height: int  # the tip as far as we know it (0 before the first block or HTLC; current_height asks)

    def current_height(self) -> int:
        """The highest block height lightningd told us of (block_added, an HTLC's
        cltv_expiry - cltv_expiry_relative), else getinfo's, asked once."""
        ...

    def saw_height(self, height: int) -> None:
        """lightningd told us of this height (the tip never goes back)."""
        ...

    def secret(self, label: str) -> bytes:
        """A 32-byte secret derived by the node's HSM."""
        ...

    def resolve_intro(self, intro: IntroductionNode) -> bytes | None:
        """Node id behind a blinded path's introduction node, if known."""
        ...

    def perform(self, actions: list[InjectOnion | Later]) -> None:
        """Send onion messages in order (an unreachable peer's go to the mailbox)."""
        ...

    def channel_peers(self) -> dict[str, set[str]]:
        """peer id -> its channels' scids (real and aliases)."""
        ...

    def connected_peers(self) -> frozenset[str]: ...

    def is_connected(self, peer_id: str) -> bool: ...

    def peer_for_scid(self, scid_dir: str) -> str | None: ...


# Seconds a timer pass waits for the node lock before it answers the calls
# whose time came from memory: a store that hangs under the lock (a server
# gone without a reset) must not hold an HTLC past its deadline.
STORE_WAIT = 5.0


def store_pass(node: Host, run: Callable[[], T], what: str) -> T | None:
    """One timer pass through the store, under the node lock: its result, or
    None (logged) when the store failed or the lock stayed busy, and the
    caller answers from memory (``open_calls.OpenCalls.overdue``). Any
    exception counts: a dropped connection raises the driver's own error."""
    if not node.lock.acquire(timeout=STORE_WAIT):
        node.log(f"{what}: the node lock stayed busy {STORE_WAIT:.0f} s; answering due HTLCs from memory",
                 level="warn")
        return None
    try:
        return run()
    except Exception as e:  # one line a pass: an outage lasts many
        node.log(f"{what}: the store failed ({type(e).__name__}: {' '.join(str(e).split())}); answering due "
                 "HTLCs from memory", level="warn")
        return None
    finally:
        node.lock.release()


class Role:
    #: Context kinds of the paths this role mints: messages reaching V over
    #: them are routed to ``on_message``.
    KINDS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, node: Host) -> None:
        self.node = node

    def start(self) -> None:
        """Called once lightningd has finished ``init`` (peers may be connected)."""

    def on_message(self, d: Delivered, now: int) -> list[InjectOnion | Later]:
        """A message for V over one of our paths (raise ``Dropped`` to ignore it).
        The router sends the result in order once the node lock is released."""
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
