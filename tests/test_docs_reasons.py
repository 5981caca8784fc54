"""Every reason the plugin can drop a message for (``Dropped("reason")``)
is named in docs/rpc.md, so an operator reading the counters of
``asyncpay-status`` can look each one up. The chaos run (docs/chaos.md)
checks the same of the counters a real run produced; this catches a new
reason before any run does (it found ``release_replayed`` undocumented)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_drop_reason_in_the_code_is_documented():
    reasons = set()
    for f in (ROOT / "plugin" / "asyncpay").rglob("*.py"):
        reasons |= set(re.findall(r'Dropped\(\s*"([a-z_]+)"', f.read_text()))
    assert {"release_replayed", "unknown_hold", "unknown_path_id"} <= reasons  # the scan sees the code
    documented = set(re.findall(r"`([a-z_]+)`", (ROOT / "docs" / "rpc.md").read_text()))
    assert sorted(reasons - documented) == []
