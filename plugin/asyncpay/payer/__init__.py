"""The payer: pays any BOLT 12 offer, static invoices included, and waits
for an offline recipient's release.

Sans-IO: ``Payer`` takes offers, decoded messages, payment outcomes and the
time, and returns onions to inject and payments for the adapter to make.
"""

from .config import PayerConfig
from .payer import KINDS, Action, Payer, PayError, PayInvoice, PayStatic, parse_offer, payer_key
from .records import PaymentRow

__all__ = ["KINDS", "Action", "PayError", "PayInvoice", "PayStatic", "Payer", "PayerConfig", "PaymentRow",
           "parse_offer", "payer_key"]
