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


def node_ids(value: str, name: str, expected: str = "node ids") -> list[str]:
    """A comma-separated list of node ids (33-byte compressed keys in hex),
    lower-cased; a ``ValueError`` naming the option ``asyncpay-<name>`` and
    what it expected for anything else."""
    ids = [x.strip().lower() for x in value.split(",") if x.strip()]
    for x in ids:
        try:
            ok = len(bytes.fromhex(x)) == 33
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"asyncpay-{name}: must be {expected} (66 hex characters), got {x!r}")
    return ids
