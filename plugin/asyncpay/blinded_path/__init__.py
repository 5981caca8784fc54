"""BOLT 4 route blinding: path structures and the data each hop decrypts.

Mirrors LDK's ``lightning/src/blinded_path/`` split: ``message`` paths for
onion messages, ``payment`` paths with their payinfo, ``encrypted_data`` for
what a hop finds inside, ``builder`` to mint new paths.
"""

from .encrypted_data import EncryptedData, PaymentConstraints, PaymentRelay
from .path import BlindedHop, BlindedPath, IntroductionNode
from .payment import BlindedPayInfo, BlindedPaymentPath

__all__ = [
    "BlindedHop",
    "BlindedPath",
    "BlindedPayInfo",
    "BlindedPaymentPath",
    "EncryptedData",
    "IntroductionNode",
    "PaymentConstraints",
    "PaymentRelay",
]
