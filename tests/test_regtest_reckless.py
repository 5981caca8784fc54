"""Regtest: ``reckless install asyncpay`` as an operator runs it (CLN
v26.06's plugin manager, tools/reckless), from a local source holding a
clean clone and from a repository laid out as an entry of the community
plugins repository (the plugin in a directory named after it); lightningd
then starts the plugin from the configuration reckless wrote (issue 25).

reckless writes ``<lightning-dir>/regtest/config`` (``include`` of its own
``reckless/regtest-reckless.conf``, which holds the ``plugin=`` line) in
the node's own temporary directory, never in ~/.lightning. It makes a
virtualenv and pip-installs ``requirements.txt`` from the package index."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from dataclasses import fields
from pathlib import Path

import pytest

from asyncpay.cln.options import CONFIGS, option_name
from regtest import require_binaries

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403
from pyln.testing.utils import reserve_unused_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RECKLESS = shutil.which("reckless")
pytestmark = pytest.mark.skipif(RECKLESS is None, reason="regtest: reckless (CLN's tools/reckless) not found on PATH")


def _committed_tree(dest: Path) -> Path:
    """A clean clone of this repository at HEAD (what an operator clones)."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True, timeout=120)
    return dest


def _reckless(ldir: str, *args: str) -> subprocess.CompletedProcess:
    # The first run asks before it creates <lightning-dir>/regtest/config: answer yes.
    out = subprocess.run([RECKLESS, "--lightning", ldir, "--network", "regtest", *args], input="Y\n",
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"reckless {' '.join(args)}: {out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _install_from(source: Path, ldir: str) -> Path:
    """Add ``source`` as reckless's only source and install asyncpay from it;
    the plugin file reckless enabled."""
    _reckless(ldir, "source", "add", str(source))
    # Only our source: the default one (github.com/lightningd/plugins) needs the network.
    _reckless(ldir, "source", "remove", "https://github.com/lightningd/plugins")
    out = _reckless(ldir, "-v", "install", "asyncpay")
    assert "asyncpay enabled" in out.stdout + out.stderr, out.stdout[-3000:]
    entry = Path(ldir) / "reckless" / "asyncpay" / "asyncpay.py"
    conf = (Path(ldir) / "reckless" / "regtest-reckless.conf").read_text()
    assert f"plugin={entry}" in conf.splitlines()
    assert f"include {Path(ldir) / 'reckless' / 'regtest-reckless.conf'}" in \
        (Path(ldir) / "regtest" / "config").read_text().splitlines()
    return entry


def _started_with_the_written_config(node, entry: Path, ldir: str) -> None:
    """lightningd reads <lightning-dir>/regtest/config by itself: the node's
    own options name no asyncpay plugin. Every option the plugin has is set
    or defaulted there, and reaches the installed plugin."""
    port = reserve_unused_port()
    with open(Path(ldir) / "regtest" / "config", "a") as f:
        f.write("\n" + "\n".join(f"{k}={v}" for k, v in {
            "asyncpay-hold-max-seconds": 77,
            "asyncpay-db": Path(ldir) / "regtest" / "asyncpay-reckless.sqlite3",
            "asyncpay-metrics-listen": f"127.0.0.1:{port}",
            "asyncpay-payer-lsp": "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
            "asyncpay-lsps5-ca-file": Path(ldir) / "extra-ca.pem",
        }.items()) + "\n")
    node.start()
    plugins = {p["name"]: p for p in node.rpc.plugin("list")["plugins"]}
    assert str(entry) in plugins and plugins[str(entry)]["active"], plugins.keys()
    status = node.rpc.call("asyncpay-status")
    assert status["endpoint_id"] and status["database"].endswith("asyncpay-reckless.sqlite3")
    configs = node.rpc.listconfigs()["configs"]
    expected = {"asyncpay-db", *(option_name(f.name) for cls in CONFIGS for f in fields(cls))}
    missing = sorted(n for n in expected if n not in configs)
    assert not missing, missing
    assert {configs[n]["plugin"] for n in expected} == {str(entry)}
    assert configs["asyncpay-hold-max-seconds"]["value_int"] == 77
    # The installed plugin's dependencies include prometheus-client: /metrics answers.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        assert b"asyncpay_store_up 1.0" in r.read()


def _node(node_factory):
    node = node_factory.get_node(start=False)
    ldir = node.daemon.lightning_dir
    Path(ldir, "regtest").mkdir(parents=True, exist_ok=True)
    return node, ldir


def test_reckless_installs_from_a_local_clone_and_lightningd_starts_it(node_factory, tmp_path):
    clone = _committed_tree(tmp_path / "src" / "asyncpay")
    node, ldir = _node(node_factory)
    entry = _install_from(clone, ldir)
    assert os.access(entry, os.X_OK)
    _started_with_the_written_config(node, entry, ldir)


def test_reckless_installs_from_a_community_plugins_layout(node_factory, tmp_path):
    """A repository like github.com/lightningd/plugins: one directory per
    plugin, ours named asyncpay, next to others."""
    repo = tmp_path / "plugins"
    (repo / "another-plugin").mkdir(parents=True)
    (repo / "another-plugin" / "README.md").write_text("not ours\n")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
    (repo / "asyncpay").mkdir()
    subprocess.run(["tar", "-x", "-C", str(repo / "asyncpay")], input=archive, check=True)
    git = ["git", "-C", str(repo), "-c", "user.name=operator", "-c", "user.email=operator@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "plugins"], check=True)
    node, ldir = _node(node_factory)
    entry = _install_from(repo, ldir)
    _started_with_the_written_config(node, entry, ldir)
