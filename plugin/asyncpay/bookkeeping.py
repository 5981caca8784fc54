"""Counters and "served" marks, kept off the path of every answer.

A payer's static invoice, a recipient's ``release_held_htlc`` or a forwarded
HTLC depends on nothing we count about it. With ``synchronous=FULL`` each
statement outside a transaction is one fsync, so counting on the way would
make every answer wait for the disk (issue 15: two such commits put the
LSP's round trip from 0.47 to 0.61 of CLN's ``fetchinvoice``).

``Bookkeeping`` is an in-memory accumulator: ``bump`` and ``served`` only add
to it; ``flush`` writes everything accumulated in one transaction. Once
``start``-ed, a background thread flushes every ``interval`` seconds
(``asyncpay-counters-interval-ms``);
``stop`` (the plugin's shutdown) flushes what is left, and every reader of
the counters flushes first (``asyncpay-status``, ``asyncpay-listinvoices``,
``Node.drain``). A crash of the plugin or of the machine loses at most the
increments of the last interval (docs/architecture.md): they are statistics,
never state an acknowledgement or an HTLC verdict depends on, which stays
on the path and durable (the static invoice, the mailbox, held HTLCs).

Before ``start`` (and after ``stop``) every call writes through at once, as
the store itself would: the daemon-free tests and tools see no difference.
Bounded: the pending entries are one per counter name (fixed strings in our
code, with the reasons and purposes they name) and one per stored invoice.
"""

from __future__ import annotations

import threading
from collections import Counter

from .store import Store

FLUSH_INTERVAL = 1.0  # seconds; what a crash may lose, and how often one fsync is paid


class Bookkeeping:
    def __init__(self, store: Store, lock: threading.RLock | None = None) -> None:
        self.store = store
        # The lock over the store's connection (the node's); taken to write.
        self.lock = lock if lock is not None else threading.RLock()
        self._mu = threading.Lock()  # over the accumulators only: never held while writing
        self._counts: Counter[str] = Counter()
        self._served: Counter[tuple[str, int]] = Counter()
        self._deferred = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.flushes = 0  # transactions written (bench and tests)

    @property
    def deferred(self) -> bool:
        return self._deferred

    # -- recording ----------------------------------------------------------

    def bump(self, name: str, by: int = 1) -> None:
        """Add ``by`` to the counter ``name`` (Store.bump, deferred)."""
        with self._mu:
            if self._deferred:
                self._counts[name] += by
                return
        with self.lock:
            self.store.bump(name, by)

    def served(self, recipient_id: str, slot: int) -> None:
        """One more payer got the static invoice of (recipient, slot) (Store.mark_served, deferred)."""
        with self._mu:
            if self._deferred:
                self._served[(recipient_id, slot)] += 1
                return
        with self.lock:
            self.store.mark_served(recipient_id, slot)

    def pending(self) -> int:
        """Entries waiting for the next flush."""
        with self._mu:
            return len(self._counts) + len(self._served)

    def pending_counts(self) -> dict[str, int]:
        """The counter increments waiting for the next flush (a reader that
        must not write adds them to the stored values: cln/metrics.py)."""
        with self._mu:
            return dict(self._counts)

    # -- writing ------------------------------------------------------------

    def flush(self) -> None:
        """Write everything accumulated so far in one transaction (one fsync).
        On a failure (a locked or full disk) nothing is dropped: the entries
        go back to the accumulator for the next flush, and the error is raised."""
        with self.lock:
            with self._mu:
                counts, served = self._counts, self._served
                self._counts, self._served = Counter(), Counter()
            if not counts and not served:
                return
            try:
                with self.store.tx():
                    for name, by in sorted(counts.items()):
                        self.store.bump(name, by)
                    for (rid, slot), n in sorted(served.items()):
                        self.store.mark_served(rid, slot, n)
            except BaseException:
                with self._mu:
                    self._counts.update(counts)
                    self._served.update(served)
                raise
            self.flushes += 1

    def start(self, interval: float = FLUSH_INTERVAL, on_error=None) -> None:
        """From now on, accumulate; a background thread flushes every ``interval``
        seconds (``on_error`` gets the exception of a failed flush)."""
        with self._mu:
            if self._deferred:
                return
            self._deferred = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(interval, on_error), daemon=True,
                                        name="bookkeeping")
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Flush what is left and write through from now on (clean shutdown).
        False if the store stayed busy for ``timeout`` seconds (a call stuck
        with the lock held): what is pending is then lost, as on a crash."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if not self.lock.acquire(timeout=timeout):
            return False
        try:  # holding the lock, no increment slips in between the last flush and the switch
            with self._mu:
                self._deferred = False
            self.flush()
        finally:
            self.lock.release()
        return True

    def _run(self, interval: float, on_error) -> None:
        while not self._stop.wait(interval):
            try:
                self.flush()
            except Exception as e:
                if on_error is not None:
                    on_error(e)
