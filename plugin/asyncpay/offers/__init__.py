"""BOLT 12 offers, invoice requests, invoices, invoice errors and LDK's static
invoices; their string form and merkle-tree signatures."""

from .invoice import Invoice
from .invoice_error import InvoiceError
from .invoice_request import InvoiceRequest
from .message import BITCOIN_CHAIN, CHAINS
from .offer import Offer, ldk_offer_id
from .static_invoice import StaticInvoice

__all__ = ["BITCOIN_CHAIN", "CHAINS", "Invoice", "InvoiceError", "InvoiceRequest", "Offer", "StaticInvoice",
           "ldk_offer_id"]
