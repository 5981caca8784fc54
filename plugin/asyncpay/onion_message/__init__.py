"""Onion messages (BOLT 4 "Onion Messages") and LDK's async-payments messages.

``payload``         the ``onionmsg_tlv`` stream each hop decrypts.
``async_payments``  types 72, 74, 75540-75546 (LDK ``onion_message/async_payments.rs``).
``packet``          building, joining and peeling blinded onion messages.
"""

from .async_payments import (
    HeldHtlcAvailable,
    OfferPaths,
    OfferPathsRequest,
    ReleaseHeldHtlc,
    ServeStaticInvoice,
    StaticInvoicePersisted,
)
from .packet import (
    Forward,
    OnionMessage,
    Receive,
    build_onion_message,
    build_path,
    onion_from_node,
    peel_onion_message,
    prepend_hop,
)
from .payload import OnionMessagePayload

__all__ = [
    "Forward",
    "HeldHtlcAvailable",
    "OfferPaths",
    "OfferPathsRequest",
    "OnionMessage",
    "OnionMessagePayload",
    "Receive",
    "ReleaseHeldHtlc",
    "ServeStaticInvoice",
    "StaticInvoicePersisted",
    "build_onion_message",
    "build_path",
    "onion_from_node",
    "peel_onion_message",
    "prepend_hop",
]
