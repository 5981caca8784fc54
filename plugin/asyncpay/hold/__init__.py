"""The sender's LSP: holds an HTLC that carries our hold request until the
recipient releases it, then forwards it.

Sans-IO: ``Holder`` takes HTLCs, decoded releases, blocks and the time, and
returns verdicts and onions to send.
"""

from .config import HoldConfig
from .holder import KINDS, Forward, Hold, Holder, HtlcToHold, Refuse

__all__ = ["KINDS", "Forward", "Hold", "HoldConfig", "Holder", "HtlcToHold", "Refuse"]
