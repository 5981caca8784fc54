"""The sender's LSP: holds an HTLC that carries our hold request until the
recipient releases it, then forwards it.

Sans-IO: ``Holder`` takes HTLCs, decoded releases, blocks and the time, and
returns verdicts and onions to send.
"""

from .config import HoldConfig
from .holder import KINDS, Answer, Continue, FailBack, Forward, Hold, Holder, HtlcToHold, Refuse, Step

__all__ = ["KINDS", "Answer", "Continue", "FailBack", "Forward", "Hold", "HoldConfig", "Holder", "HtlcToHold", "Refuse",
           "Step"]
