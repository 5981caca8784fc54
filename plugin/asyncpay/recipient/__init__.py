"""The often-offline recipient: gets an async offer from its LSP, keeps it
fresh, releases held HTLCs and claims payments.

Sans-IO: ``Recipient`` and ``Claimer`` take decoded messages and HTLCs, the
store and the time, and return onions to inject and HTLC verdicts.
"""

from .channel import LspChannel, payment_path
from .claim import Claimer, Fail, Htlc, Resolve, Wait
from .config import RecipientConfig
from .recipient import KINDS, PAYMENT, Recipient, Snapshot, offer_key

__all__ = ["KINDS", "PAYMENT", "Claimer", "Fail", "Htlc", "LspChannel", "Recipient", "RecipientConfig", "Resolve",
           "Snapshot", "Wait", "offer_key", "payment_path"]
