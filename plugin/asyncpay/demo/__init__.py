"""``asyncpay-demo``: an async payment on a private regtest network, in one
command (issue 18).

It starts bitcoind and four lightningd nodes on loopback in a temporary
directory, S (a wallet that pays) -- Ls (its LSP) -- Lr (the recipient's
LSP) -- R (a wallet that sleeps), all running the installed ``asyncpay``
plugin, and walks through a payment made while both wallets sleep, then a
stock CLN payment for comparison. A tool, not part of the plugin: it only
drives the daemons with subprocess and pyln-client's ``LightningRpc``.

Modules: ``plan`` (steps, arguments, messages, the summary table: pure),
``config`` (ports and configuration files: pure), ``progress`` (the display
and the time limit), ``daemons`` (the processes), ``run`` (the walk-through).
"""

from .run import main

__all__ = ["main"]
