"""Plugin options: one per field of every role's config dataclass.

A field ``name`` becomes ``asyncpay-<name with dashes>``; its help is the
field's ``help`` metadata (one sentence with its unit; lightningd adds the
default). ``int`` fields are typed ``int`` options and must be positive;
``str`` fields are strings (``None`` default: unset); ``bool`` fields are
flags-with-values.
"""

from __future__ import annotations

from dataclasses import MISSING, fields

from pyln.client import Plugin

from ..hold import HoldConfig
from ..lsp import LspConfig
from ..lsps.config import Lsps5Config
from ..metrics import MetricsConfig
from ..payer import PayerConfig
from ..recipient import RecipientConfig

# Every role's config class; a role adds its own here.
CONFIGS: tuple[type, ...] = (LspConfig, RecipientConfig, PayerConfig, HoldConfig, Lsps5Config, MetricsConfig)

def option_name(field_name: str) -> str:
    return "asyncpay-" + field_name.replace("_", "-")


def _kind(f) -> str:
    """pyln's option type for a field (annotations are strings here: ``from __future__``)."""
    t = f.type if isinstance(f.type, str) else f.type.__name__
    return {"int": "int", "bool": "bool"}.get(t, "string")


def register(plugin: Plugin, configs: tuple[type, ...] = CONFIGS) -> None:
    for cls in configs:
        for f in fields(cls):
            kind = _kind(f)
            default = None if f.default is MISSING else f.default
            plugin.add_option(option_name(f.name), default, f.metadata.get("help", f.name), opt_type=kind)


def load(options: dict, configs: tuple[type, ...] = CONFIGS) -> list[object]:
    """One instance per config class from lightningd's option values (ValueError names a bad one)."""
    out = []
    for cls in configs:
        cfg = cls()
        for f in fields(cls):
            name = option_name(f.name)
            value = options.get(name)
            if value is None:
                continue
            kind = _kind(f)
            if kind == "int":
                if isinstance(value, bool) or not isinstance(value, int | str):
                    raise ValueError(f"{name}: must be a whole number, got {value!r}")
                try:
                    value = int(value)
                except ValueError:
                    raise ValueError(f"{name}: must be a whole number, got {value!r}") from None
                if value <= 0:
                    raise ValueError(f"{name}: must be positive, got {value}")
            elif kind == "bool":
                value = value if isinstance(value, bool) else str(value).lower() == "true"
            setattr(cfg, f.name, value)
        if hasattr(cfg, "validate"):
            cfg.validate()
        out.append(cfg)
    return out
