"""Entry point loaded by ``lightningd --plugin=asyncpay``."""

from __future__ import annotations

from pyln.client import Plugin

plugin = Plugin()


def main() -> None:
    plugin.run()


if __name__ == "__main__":
    main()
