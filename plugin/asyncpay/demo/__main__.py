"""``python -m asyncpay.demo``: the same as ``asyncpay-demo``."""

import sys

from . import main

sys.exit(main())
