"""The recipient's LSP: static invoice server and onion-message mailbox.

Sans-IO: classes here take decoded messages, the store and the time, and
return ``asyncpay.actions`` for the host to carry out.
"""

from ..endpoint import Delivered, Dropped, Endpoint
from .config import LspConfig
from .mailbox import Flush, Mailbox
from .server import StaticInvoiceServer

__all__ = ["Delivered", "Dropped", "Endpoint", "Flush", "LspConfig", "Mailbox", "StaticInvoiceServer"]
