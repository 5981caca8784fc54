"""The LSP adapter while its store is gone (a PostgreSQL restart, the lock
lost): a mailbox batch that cannot be committed is a store outage, logged as
such in one line, not a bug report with a traceback at BROKEN level (which
also fails pyln-testing's runs on real CLN, as in the chaos run on
PostgreSQL)."""

from __future__ import annotations

from asyncpay.cln.lsp import IntakeWriter
from asyncpay.storage import StoreLocked


class _Node:
    def __init__(self) -> None:
        self.logged: list[tuple[str, str]] = []

    def log(self, message: str, level: str = "info") -> None:
        self.logged.append((level, message))


class _Role:
    def __init__(self, error: Exception) -> None:
        self.node, self.error = _Node(), error

    def commit_intake(self, items) -> None:
        raise self.error


def _logged_for(error: Exception) -> list[tuple[str, str]]:
    role = _Role(error)
    writer = IntakeWriter(role)
    writer.submit(("peer", None, b"k", b"onion", 0))
    writer.drain()
    return role.node.logged


def test_a_batch_lost_to_a_store_outage_is_unusual_not_broken():
    [(level, message)] = _logged_for(StoreLocked("PostgreSQL x: lost the advisory lock"))
    assert level == "unusual" and "lost the advisory lock" in message and "Traceback" not in message


def test_a_batch_lost_to_a_bug_is_still_broken_with_its_traceback():
    [(level, message)] = _logged_for(KeyError("bug"))
    assert level == "broken" and "Traceback" in message
