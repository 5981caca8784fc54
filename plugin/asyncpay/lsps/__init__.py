"""The LSPS service of an LSP: LSPS0 transport and LSPS5 (bLIP-55) webhooks,
their notifications, and the hold of an HTLC for a sleeping client's wake-up.

Sans-IO like ``asyncpay.lsp``: classes here take decoded requests, the store
and the time, and return what to answer, send or decide; ``cln/lsps5.py``
carries that out.
"""
