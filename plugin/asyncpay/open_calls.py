"""The ``htlc_accepted`` calls a role keeps open, each with the moment it
must be answered by whatever the store does (docs/security.md "When the
store is gone").

A role that keeps a call open (the async hold, the wake hold, the
recipient's waiting parts) records, when it takes the HTLC, the last second
and the last block height at which the call may still be open: the
deadline its core would fail it at (hold deadline, MPP timeout) and its
CLTV budget less the role's margin. Its timer passes go through the store
as usual; when the store cannot be used, ``overdue`` hands back the calls
whose time came, to be failed from memory (no ``continue`` was given and no
preimage left for them, so failing loses nothing and keeps the channel).

The calls have a lock of their own, not the node's: a store that hangs
while a thread holds the node lock must not keep a deadline from being met.
Taking a call out (``pop``) is the one way to answer it, so two passes
racing for one call answer it once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K")


@dataclass(frozen=True)
class AnswerBy:
    """When an open call is failed back at the latest, store or no store."""

    seconds: int  # unix time
    height: int  # the last block height at which it may still be open

    def due(self, height: int, now: int) -> bool:
        return now >= self.seconds or height > self.height


@dataclass
class OpenCall:
    respond: Callable[[dict], None]
    by: AnswerBy
    tag: Any = None  # what the role needs to answer it from memory (the recipient: the payment hash)


class OpenCalls(Generic[K]):
    """key -> the open call of an HTLC (its responder, its ``AnswerBy``)."""

    def __init__(self) -> None:
        self._calls: dict[K, OpenCall] = {}
        self._lock = threading.Lock()

    def open(self, key: K, respond: Callable[[dict], None], by: AnswerBy, tag: Any = None) -> None:
        with self._lock:
            self._calls[key] = OpenCall(respond, by, tag)

    def pop(self, key: K, default: Any = None) -> Callable[[dict], None] | Any:
        """Take the call out to answer it: its responder, or ``default``."""
        with self._lock:
            call = self._calls.pop(key, None)
        return default if call is None else call.respond

    def get(self, key: K) -> OpenCall | None:
        with self._lock:
            return self._calls.get(key)

    def take_one(self, key: K) -> OpenCall | None:
        """Take the call out to answer it (None: answered already, or not ours)."""
        with self._lock:
            return self._calls.pop(key, None)

    def set_by(self, key: K, by: AnswerBy) -> None:
        with self._lock:
            call = self._calls.get(key)
            if call is not None:
                call.by = by

    def overdue(self, height: int, now: int) -> list[tuple[K, OpenCall]]:
        """Take out every call whose time came."""
        with self._lock:
            due = [(k, c) for k, c in self._calls.items() if c.by.due(height, now)]
            for k, _ in due:
                del self._calls[k]
        return due

    def take(self, keep: Callable[[K, OpenCall], bool]) -> list[tuple[K, OpenCall]]:
        """Take out every call ``keep`` says no to."""
        with self._lock:
            out = [(k, c) for k, c in self._calls.items() if not keep(k, c)]
            for k, _ in out:
                del self._calls[k]
        return out

    def keys(self) -> frozenset[K]:
        with self._lock:
            return frozenset(self._calls)

    def items(self) -> list[tuple[K, OpenCall]]:
        with self._lock:
            return list(self._calls.items())

    def earliest(self) -> int | None:
        """The soonest ``AnswerBy.seconds`` of the open calls (for a timer)."""
        with self._lock:
            return min((c.by.seconds for c in self._calls.values()), default=None)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._calls

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)

    def __iter__(self) -> Iterator[K]:
        return iter(self.keys())
