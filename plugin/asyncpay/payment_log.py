"""One log line per payment state change, at ``info``, that an operator can
grep for a payment hash (docs/metrics.md, "Logs")::

    payment <payment hash> <role>: <state>[ (<detail>)]

Roles and their states: ``hold`` (held, released, forwarded, failed),
``payer`` (each state of an ``asyncpay-pay`` payment, see docs/rpc.md),
``recipient`` (received, claimed, failed), ``wake_hold`` (held, released,
failed). Nothing per onion message is logged at ``info``: a stranger sets
their pace, and they go to ``debug``.

Each change is also counted in memory (``STATE_CHANGES``), exported as
``asyncpay_payment_state_changes_total{role, state}``: the payments by
outcome of the dashboard. Bounded: roles and states are ours.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

log = logging.getLogger("asyncpay.payment")

HOLD, PAYER, RECIPIENT, WAKE_HOLD = "hold", "payer", "recipient", "wake_hold"
# Every (role, state) is exported from zero: Prometheus' rate() sees no
# increase in a series whose first sample is already 1. The payer's are
# payer/records.py's states (tests/test_payment_log.py checks they agree).
STATES = {
    HOLD: ("held", "released", "forwarded", "failed"),
    PAYER: ("requesting", "static", "awaiting_release", "paying", "held_at_lsp", "complete", "failed"),
    RECIPIENT: ("received", "claimed", "failed"),
    WAKE_HOLD: ("held", "released", "failed"),
}


class StateChanges:
    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, role: str, state: str) -> None:
        with self._mu:
            self._counts[(role, state)] += 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        """Every known (role, state), zero or not, and any other seen."""
        with self._mu:
            return {**{(r, s): 0 for r, states in STATES.items() for s in states}, **self._counts}

    def clear(self) -> None:
        with self._mu:
            self._counts.clear()


STATE_CHANGES = StateChanges()  # the process's


def changed(role: str, payment_hash: bytes | str | None, state: str, detail: str = "") -> None:
    """A payment of ``role`` is now in ``state``: log it and count it."""
    h = payment_hash.hex() if isinstance(payment_hash, bytes) else (payment_hash or "-")
    STATE_CHANGES.add(role, state)
    log.info("payment %s %s: %s%s", h, role, state, f" ({detail})" if detail else "")
