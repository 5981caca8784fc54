"""How long an HTLC we forward may still wait before it goes on.

lightningd keeps ``cltv-delta`` blocks between an HTLC's incoming and
outgoing expiry when it forwards (one value for all channels, read from
``listconfigs``). An HTLC held in ``htlc_accepted`` (the async hold at the
sender's LSP, the hold for a sleeping client's wake-up) can therefore be
continued no later than min(incoming ``cltv_expiry`` - ``cltv-delta``,
outgoing CLTV): past that lightningd would refuse to forward it, and the
upstream channel could close on it.
"""

from __future__ import annotations

CLN_CLTV_DELTA = 34  # lightningd's default cltv-delta (lightningd/options.c)


def forward_budget(cltv_expiry: int, outgoing_cltv: int, cltv_delta: int) -> int:
    """The last height at which the HTLC may still be forwarded."""
    return min(cltv_expiry - cltv_delta, outgoing_cltv)
