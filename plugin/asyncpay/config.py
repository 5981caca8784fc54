"""What every role's settings are made of: ``option(default, help)`` fields.

Each role's ``config.py`` (lsp/, recipient/, payer/, hold/) declares a
dataclass of such fields; ``cln/options.py`` turns each into the plugin option
``asyncpay-<name with dashes>`` whose help is the field's ``help`` metadata
(docs/configuration.md).
"""

from __future__ import annotations

from dataclasses import field

DAY = 24 * 3600


def option(default, help: str):
    """A config field: its default and the one sentence ``lightningd --help`` shows."""
    return field(default=default, metadata={"help": help})
