#!/usr/bin/env python3
"""asyncpay as a plugin file at the repository's root: what CLN's plugin
manager runs after ``reckless install asyncpay`` (it looks for
``<name>.py`` next to a ``requirements.txt`` and runs it with
``runpy.run_module("asyncpay")``; tools/reckless in CLN v26.06), and what
``lightningd --plugin=/path/to/asyncpay.py`` runs from a checkout whose
dependencies are installed. It runs the package in ``plugin/``;
``pip install .`` installs the same package with its ``asyncpay`` command."""

import importlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "plugin"))

if __name__ == "__main__":
    from asyncpay.cln.plugin import main

    main()
else:
    # Imported as ``asyncpay`` because the repository's root is on sys.path
    # (``python -m pytest`` from the root): stand aside for the package in
    # plugin/, so that ``import asyncpay.x`` works as it does once installed.
    del sys.modules[__name__]
    sys.modules[__name__] = importlib.import_module(__name__)
