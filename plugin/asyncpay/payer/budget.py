"""What a payment may cost, in fees and in blocks, and whether one payment
path with the route askrene proposed to it stays within that.

Sans-IO arithmetic shared by the payer core (which screens a static
invoice's paths before anything is sent) and the adapter (which asks it
about askrene's route before building the onion, and about the built onion
right before ``injectpaymentonion``).

* Fees: the blinded path's ``payinfo`` fee plus the unblinded route's fees
  together at most the cap (``asyncpay-payer-max-fee-base-msat`` +
  ``-ppm``; xpay's ``maxfee`` in the same spirit). What we inject minus
  the amount is the whole fee: our own first channel is free
  (``auto.sourcefree``), so every msat above the amount goes to others.
* Blocks: the HTLC we send expires at most ``asyncpay-payer-max-cltv``
  blocks after the tip, over the route, the blinded path and, when our LSP
  holds the payment, the hold's blocks (xpay ``maxdelay`` default 2016;
  LDK ``routing/router.rs`` ``DEFAULT_MAX_TOTAL_CLTV_EXPIRY_DELTA`` 1008).
* Features: a path whose ``payinfo`` features carry an unknown even bit
  must not be used (BOLT 12 "Requirements for Invoices", reader).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..blinded_path import BlindedPaymentPath
from ..offers.fields import unknown_even_feature
from ..payment.route import RouteHop, fee_for, to_introduction


class OverBudget(Exception):
    """A path (or a built onion) we must not pay over, with the reason."""


@dataclass(frozen=True)
class Budget:
    """The limits of one payment, fixed when the payer decides to pay."""

    max_fee_msat: int  # blinded path fee + route fee, in msat
    max_delay: int  # blocks from the tip to the expiry of the HTLC we send
    hold_blocks: int = 0  # blocks the final CLTV carries for a hold at our LSP

    def final_cltv(self, height: int) -> int:
        """The final hop's CLTV, as xpay: the next block's height, plus the hold."""
        return height + 1 + self.hold_blocks


def fee_cap(amount_msat: int, base_msat: int, ppm: int) -> int:
    return base_msat + amount_msat * ppm // 1_000_000


@dataclass(frozen=True)
class RouteLimits:
    """What askrene may spend on the route to the introduction node."""

    amount_msat: int  # to deliver to the introduction node
    maxfee_msat: int  # for the route alone (the path's fee taken off)
    final_cltv: int  # the path's cltv_expiry_delta (askrene's final_cltv)
    maxdelay: int  # for the route alone (the final hop's and the hold's blocks taken off)


@dataclass(frozen=True)
class PathCost:
    """An accepted path: what we inject and the whole fee and delay."""

    sent_msat: int
    fee_msat: int
    delay: int


def screen(path: BlindedPaymentPath, amount_msat: int, budget: Budget) -> RouteLimits:
    """The route limits for ``path``, or OverBudget when the path alone
    already breaks the budget (before any route is asked for)."""
    info = path.payinfo
    bit = unknown_even_feature(info.features)
    if bit is not None:
        raise OverBudget(f"payinfo requires unknown feature {bit}")
    fee = fee_for(info, amount_msat)
    if fee > budget.max_fee_msat:
        raise OverBudget(f"blinded path fee {fee} msat is over the cap of {budget.max_fee_msat} msat")
    delay = 1 + budget.hold_blocks + info.cltv_expiry_delta
    if delay > budget.max_delay:
        raise OverBudget(f"blinded path needs {delay} blocks, over the cap of {budget.max_delay}")
    return RouteLimits(amount_msat + fee, budget.max_fee_msat - fee, info.cltv_expiry_delta,
                       budget.max_delay - 1 - budget.hold_blocks)


def check_route(path: BlindedPaymentPath, amount_msat: int, budget: Budget, route: Sequence[RouteHop],
                height: int) -> PathCost:
    """Accept askrene's ``route`` (CLTVs absolute) to ``path`` with the
    exact cost, or OverBudget. Never trusts askrene to have kept to the
    limits it was given."""
    screen(path, amount_msat, budget)
    if not route:
        raise OverBudget("empty route")
    for a, b in zip(route, route[1:]):
        if b.amount_msat > a.amount_msat or b.cltv_expiry > a.cltv_expiry:
            raise OverBudget("the route grows along its hops")
    need_amount, need_cltv = to_introduction(path, amount_msat, budget.final_cltv(height))
    if route[-1].amount_msat < need_amount or route[-1].cltv_expiry < need_cltv:
        raise OverBudget("the route does not deliver what the blinded path needs")
    return check_sent(route[0].amount_msat, route[0].cltv_expiry, amount_msat, budget, height)


def check_sent(sent_msat: int, cltv_expiry: int, amount_msat: int, budget: Budget, height: int) -> PathCost:
    """The last guard, on what we are about to inject: its amount minus the
    payment's is the whole fee, its CLTV minus the tip the whole delay."""
    fee, delay = sent_msat - amount_msat, cltv_expiry - height
    if fee > budget.max_fee_msat:
        raise OverBudget(f"fee {fee} msat (blinded path and route) is over the cap of {budget.max_fee_msat} msat")
    if delay > budget.max_delay:
        raise OverBudget(f"the payment would be locked up to {delay} blocks, over the cap of {budget.max_delay}")
    return PathCost(sent_msat, fee, delay)
