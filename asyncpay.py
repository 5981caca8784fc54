#!/usr/bin/env python3
"""asyncpay as a plugin file at the repository's root: what CLN's plugin
manager runs after ``reckless install asyncpay`` (it looks for
``<name>.py`` next to a ``requirements.txt``; tools/reckless in CLN v26.06),
and what ``lightningd --plugin=/path/to/asyncpay.py`` runs from a checkout
whose dependencies are installed. It runs the package in ``plugin/``;
``pip install .`` installs the same package with its ``asyncpay`` command."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "plugin"))

from asyncpay.cln.plugin import main  # noqa: E402

if __name__ == "__main__":
    main()
