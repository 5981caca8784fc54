"""Regtest: ``asyncpay-demo`` end to end, as a newcomer runs it (issue 18):
every step announced, the payment complete, exit 0; with --keep the nodes
still answer afterwards and stop.sh stops them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from regtest import require_binaries

require_binaries()

from pyln.client import LightningRpc  # noqa: E402

from asyncpay.demo.plan import STEPS, TOPOLOGIES, step_line  # noqa: E402

SCRIPT = Path(sys.executable).parent / "asyncpay-demo"


def test_the_demo_runs_end_to_end_and_keeps_working_nodes():
    cmd = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "asyncpay.demo"]
    done = subprocess.run([*cmd, "--keep", "--limit", "400"], capture_output=True, text=True, timeout=450,
                          env={**os.environ, "TERM": "dumb"})
    out = done.stdout
    base = re.search(r"private regtest network in (\S+)", out)
    stop = Path(base.group(1)) / "stop.sh" if base else None
    try:
        assert done.returncode == 0, out + done.stderr
        for i, step in enumerate(STEPS):
            assert step_line(i, step) in out
        assert "S  asyncpay-listpays      complete" in out
        assert "R  asyncpay-listreceived  static" in out
        # --keep: the nodes still answer.
        r = LightningRpc(str(Path(base.group(1)) / "r" / "regtest" / "lightning-rpc"))
        kinds = sorted(p["kind"] for p in r.call("asyncpay-listreceived")["payments"])
        assert kinds == ["invoice", "static"]
        assert f"sh {stop}" in out
    finally:
        if stop is not None and stop.exists():
            subprocess.run(["sh", str(stop)], capture_output=True, timeout=120)
    assert not Path(base.group(1)).exists()


def test_the_one_lsp_topology_runs_end_to_end():
    """``--topology one-lsp`` (issue 22): three nodes, the same story, exit 0."""
    cmd = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "asyncpay.demo"]
    done = subprocess.run([*cmd, "--topology", "one-lsp", "--limit", "400"], capture_output=True, text=True,
                          timeout=450, env={**os.environ, "TERM": "dumb"})
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    steps = TOPOLOGIES["one-lsp"].steps
    for i, step in enumerate(steps):
        assert step_line(i, step, steps) in out
    assert "S  asyncpay-listpays      complete" in out and "L  asyncpay-listheld      forwarded" in out
    base = re.search(r"private regtest network in (\S+)", out)
    assert base and not Path(base.group(1)).exists()  # stopped and removed
