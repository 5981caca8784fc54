"""How the plugin is installed (issue 25): ``pip install .`` (setup.cfg) and
CLN's plugin manager, ``reckless install asyncpay``, which installs a
``requirements.txt`` into a virtualenv and runs ``asyncpay.py`` at the
plugin directory's root (CLN v26.06 tools/reckless: ``python3venv``
installer, entry guesses ``{name}.py``, ``{name}``). Both must install the
same dependencies and run the same plugin."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _requirements(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(re.sub(r"\s+", "", line).lower())
    return out


def test_requirements_txt_lists_exactly_setup_cfg_install_requires():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    from_setup = _requirements(cfg["options"]["install_requires"].splitlines())
    from_reckless = _requirements((ROOT / "requirements.txt").read_text().splitlines())
    assert from_setup, "setup.cfg has no install_requires"
    assert sorted(from_reckless) == sorted(from_setup)


def test_plugin_file_at_the_root_is_executable_and_runs_the_package_from_plugin_dir(tmp_path):
    entry = ROOT / "asyncpay.py"
    assert os.access(entry, os.X_OK)
    # Run from elsewhere, with nothing of ours importable but the file's own directory:
    # pyln prints its usage (exit 0) only once the whole plugin module imported.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LIGHTNINGD_PLUGIN")}
    out = subprocess.run([sys.executable, "-I", str(entry)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "plugin" in out.stdout.lower()


def test_plugin_file_speaks_the_plugin_protocol_with_every_option(tmp_path):
    """lightningd's first call: the manifest lists asyncpay's options and methods."""
    import json
    from dataclasses import fields

    from asyncpay.cln.options import CONFIGS, option_name
    env = {**os.environ, "LIGHTNINGD_PLUGIN": "1"}
    req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "getmanifest", "params": {}}) + "\n\n"
    out = subprocess.run([sys.executable, "-I", str(ROOT / "asyncpay.py")], input=req, cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    manifest = json.loads(out.stdout.split("\n\n")[0])["result"]
    names = {o["name"] for o in manifest["options"]}
    assert {"asyncpay-db", *(option_name(f.name) for c in CONFIGS for f in fields(c))} <= names
    assert "asyncpay-status" in {m["name"] for m in manifest["rpcmethods"]}
