"""Payment onions: hop payloads (BOLT 4 ``payload``) and onion construction."""

from .hop_payload import HopPayload, PaymentData
from .onion import build_payment_onion, peel_payment_onion

__all__ = ["HopPayload", "PaymentData", "build_payment_onion", "peel_payment_onion"]
