"""asyncpay: LDK-style async payments for Core Lightning.

Layers, from the bottom up:

* ``wire``          BOLT 1 primitives: BigSize, TLV streams, fixed-width ints.
* ``crypto``        ECDH, ChaCha20, route blinding, Sphinx packets.
* ``blinded_path``  BOLT 4 blinded paths (message and payment) and their data.
* ``onion_message`` onion-message payloads, packets and the async messages.
* ``offers``        BOLT 12 messages, string form, merkle signatures, static invoices.
* ``payment``       payment-onion hop payloads.
* ``lsp``           sans-IO static-invoice server and mailbox (state machines).
* ``cln``           the only layer that talks to lightningd.

Nothing below ``cln`` performs I/O.
"""

__version__ = "0.1.0"
