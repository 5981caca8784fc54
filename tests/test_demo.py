"""asyncpay-demo without a daemon (issue 18): its steps, arguments, the
message when binaries are missing, ports, configuration files, the summary
table and the bounded waits. The demo itself runs in
tests/test_regtest_demo.py."""

from __future__ import annotations

import io
import re
import socket
import sys

import pytest

from asyncpay.demo import plan, run
from asyncpay.demo.config import LOOPBACK, BitcoindAuth, bitcoin_conf, free_ports, lightning_conf, stop_script
from asyncpay.demo.daemons import Node
from asyncpay.demo.progress import Deadline, DemoError, DemoTimeout, Progress

AUTH = BitcoindAuth(18443, "demo", "secret")


def test_every_step_is_walked_through_and_announced():
    keys = [s.key for s in plan.STEPS]
    assert len(set(keys)) == len(keys)
    for step in plan.STEPS:
        assert callable(getattr(run.Demo, f"step_{step.key}"))  # run() calls step_<key>
        assert step.label and step.title and step.nodes
    # The story of the issue, in order: R sleeps, S pays, both wake.
    assert keys.index("r_sleeps") < keys.index("pay") < keys.index("s_sleeps") < keys.index("held") \
        < keys.index("r_wakes") < keys.index("s_wakes") < keys.index("stock")
    assert plan.step_line(0, plan.STEPS[0]) == f"[ 1/11] {plan.STEPS[0].title}  (at all)"
    assert plan.step_line(10, plan.STEPS[10]).startswith("[11/11] ")


def test_arguments():
    args = plan.parse_args([])
    assert (args.keep, args.limit, args.amount_msat) == (False, plan.DEFAULT_LIMIT, plan.DEFAULT_AMOUNT_MSAT)
    args = plan.parse_args(["--keep", "--limit", "90", "--amount-msat", "5000"])
    assert (args.keep, args.limit, args.amount_msat) == (True, 90, 5000)
    for bad in (["--limit", "0"], ["--limit", "soon"], ["--amount-msat", "-1"], ["--bogus"]):
        with pytest.raises(SystemExit) as e:
            plan.parse_args(bad)
        assert e.value.code == 2


def test_missing_binaries_are_named_with_how_to_get_them():
    found = {"lightningd": "/x/lightningd"}
    assert plan.missing_binaries(found.get, plugin="/x/asyncpay") == ["bitcoind", "bitcoin-cli"]
    assert plan.missing_binaries(lambda b: "/x/" + b, plugin=None) == ["asyncpay"]
    text = plan.missing_message(["lightningd", "bitcoind", "bitcoin-cli"])
    first, *rest = text.splitlines()
    assert first == "asyncpay-demo cannot run: lightningd, bitcoind, bitcoin-cli not found on PATH."
    assert "Core Lightning v26" in rest[0] and "source" in rest[0]
    assert "bitcoincore.org" in rest[1] and "package" in rest[1]
    assert "PATH" in rest[-1]


def test_without_the_binaries_the_demo_says_so_and_exits_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: nothing is found
    assert run.main([]) == plan.EXIT_CANNOT_RUN == 2
    err = capsys.readouterr().err
    assert "lightningd, bitcoind, bitcoin-cli not found on PATH" in err


def test_the_plugin_script_is_found_next_to_the_interpreter(tmp_path):
    (tmp_path / "asyncpay").write_text("#!/bin/sh\n")
    assert plan.plugin_script(str(tmp_path / "python")) == str(tmp_path / "asyncpay")
    assert plan.plugin_script(sys.executable)  # this venv has it (pip install .)


def test_free_ports_are_distinct_and_bindable_on_loopback():
    ports = free_ports(5)
    assert len(set(ports)) == 5 and all(1024 <= p <= 65535 for p in ports)
    with socket.socket() as s:
        s.bind((LOOPBACK, ports[0]))


def test_bitcoind_listens_on_loopback_only():
    conf = bitcoin_conf(AUTH)
    lines = conf.splitlines()
    assert {"regtest=1", "listen=0", "listenonion=0", "rpcbind=127.0.0.1", "rpcallowip=127.0.0.1",
            "rpcport=18443", "rpcuser=demo", "rpcpassword=secret"} <= set(lines)
    assert lines.index("[regtest]") < lines.index("rpcport=18443")  # bitcoind reads rpcport per network
    assert "0.0.0.0" not in conf


def test_a_node_config_has_the_regtest_options_and_the_plugin():
    conf = lightning_conf("S", "/d/s", 9735, AUTH, "/venv/bin/asyncpay", {"asyncpay-payer-lsp": "02" + "ab" * 32})
    lines = conf.splitlines()
    assert {"network=regtest", "alias=S", "addr=127.0.0.1:9735", "bitcoin-rpcport=18443",
            "bitcoin-rpcconnect=127.0.0.1", "bitcoin-datadir=/d/s", "log-file=/d/s/log", "developer",
            "dev-bitcoind-poll=1", "dev-fast-gossip", "cltv-delta=6", "plugin=/venv/bin/asyncpay",
            "asyncpay-payer-lsp=02" + "ab" * 32} <= set(lines)
    assert all(re.fullmatch(r"[a-z0-9-]+(=\S+)?", line) for line in lines[1:])  # lightningd's key[=value]
    assert "asyncpay-payer-lsp" not in lightning_conf("R", "/d/r", 1, AUTH, "/p")


def test_the_stop_script_stops_every_daemon_then_removes_the_directory():
    text = stop_script("/b/lightning-cli", ["/t/s", "/t/r"], "/b/bitcoin-cli", "/t/bitcoin", "/t")
    lines = text.splitlines()
    assert lines[0] == "#!/bin/sh"
    stops = [i for i, line in enumerate(lines) if line.endswith("stop >/dev/null 2>&1")]
    assert len(stops) == 3 and "--lightning-dir='/t/s'" in lines[stops[0]] and "bitcoin-cli" in lines[stops[2]]
    assert lines.index("rm -rf '/t'") > max(stops)


def test_summary_table_aligns_columns():
    table = plan.summary_table([("1", "network up", "4.2 s"), ("10", "S wakes, complete", "12.0 s")],
                               ("#", "step", "took"))
    head, rule, a, b = table.splitlines()
    assert head == "#   step               took"
    assert rule == "--  -----------------  ------"
    assert a == "1   network up         4.2 s"
    assert b == "10  S wakes, complete  12.0 s"


def test_shorten_keeps_head_and_tail():
    assert plan.shorten("abc") == "abc"
    assert plan.shorten("0123456789abcdef" * 4, 8) == "01234567...89abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_deadline_ends_the_run_with_a_clear_message():
    clock = Clock()
    deadline = Deadline(100, clock)
    clock.now = 99.5
    deadline.check("waiting for gossip")
    clock.now = 100.0
    with pytest.raises(DemoTimeout, match=r"time limit \(100 s\) passed while waiting for gossip"):
        deadline.check("waiting for gossip")


class Out(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_a_wait_returns_the_value_and_says_one_plain_line_off_a_terminal():
    out = Out(tty=False)
    answers = iter([None, [], {"ok": 1}])
    value = Progress(out, Deadline(60)).wait_for(lambda: next(answers), "gossip", slow=True, interval=0)
    assert value == {"ok": 1}
    assert out.getvalue() == "        ... waiting for gossip\n"


def test_a_wait_on_a_terminal_spins_and_clears_its_line():
    out = Out(tty=True)
    answers = iter([None, None, True])
    Progress(out, Deadline(60)).wait_for(lambda: next(answers), "gossip", slow=True, interval=0)
    text = out.getvalue()
    assert text.count("gossip") == 2 and text.endswith("\r\x1b[K") and "\n" not in text


def test_every_wait_has_a_timeout_and_names_what_it_waited_for():
    with pytest.raises(DemoTimeout, match="timed out after 0 s waiting for R to claim"):
        Progress(Out(tty=False), Deadline(60)).wait_for(lambda: None, "R to claim", timeout=0, interval=0)
    clock = Clock()
    deadline = Deadline(10, clock)
    clock.now = 11
    with pytest.raises(DemoTimeout, match="time limit"):
        Progress(Out(tty=False), deadline).wait_for(lambda: None, "gossip", timeout=60, interval=0)


def test_a_plugin_that_disabled_itself_stops_the_demo_with_its_reason(tmp_path):
    node = Node("Lr", "LSP", tmp_path, 9735, "lightningd")
    (tmp_path / "log").write_text("DEBUG plugin-asyncpay: Killing plugin: disabled itself at init: "
                                  "asyncpay-db /x: OperationalError: unable to open database file\n")
    with pytest.raises(DemoError, match="Lr: the asyncpay plugin did not start: asyncpay-db /x: OperationalError"):
        node._ready()


def _demo(tmp_path, monkeypatch) -> run.Demo:
    monkeypatch.setattr(run.tempfile, "mkdtemp", lambda prefix: str(tmp_path / "net"))
    (tmp_path / "net").mkdir()
    binaries = {"lightningd": "/b/lightningd", "bitcoind": "/b/bitcoind", "bitcoin-cli": "/b/bitcoin-cli"}
    return run.Demo(Out(tty=False), binaries, "/venv/bin/asyncpay", 60, 40_000)


def test_keep_prints_a_command_line_per_node_and_a_stop_script(tmp_path, monkeypatch):
    monkeypatch.setattr(run.shutil, "which", lambda b: f"/b/{b}")
    demo = _demo(tmp_path, monkeypatch)
    text = demo.keep_instructions()
    for name in ("s", "ls", "lr", "r"):
        assert f"/b/lightning-cli --lightning-dir={tmp_path / 'net' / name} asyncpay-status" in text
    assert text.splitlines()[-1] == f"Stop it all and remove {tmp_path / 'net'}: sh {tmp_path / 'net' / 'stop.sh'}"
    assert "--lightning-dir='" + str(tmp_path / "net" / "r") + "' stop" in (tmp_path / "net" / "stop.sh").read_text()


def test_the_network_is_on_distinct_loopback_ports(tmp_path, monkeypatch):
    demo = _demo(tmp_path, monkeypatch)
    ports = [demo.auth.rpcport] + [n.port for n in demo.nodes]
    assert len(set(ports)) == 5
    assert [n.name for n in demo.nodes] == ["S", "Ls", "Lr", "R"]


@pytest.mark.parametrize("failure, code, said", [
    (DemoError("asyncpay-pay at S failed: no route"), plan.EXIT_FAILED, "FAILED after"),
    (DemoTimeout("gave up: the demo's time limit (5 s) passed"), plan.EXIT_FAILED, "--limit SECONDS"),
    (KeyboardInterrupt(), plan.EXIT_INTERRUPTED, "interrupted"),
])
def test_a_failed_or_interrupted_run_cleans_up(tmp_path, monkeypatch, failure, code, said):
    out = Out(tty=False)
    monkeypatch.setattr(run, "missing_binaries", lambda plugin: [])
    monkeypatch.setattr(run.tempfile, "mkdtemp", lambda prefix: str(tmp_path / "net"))
    (tmp_path / "net").mkdir()
    cleaned: list[bool] = []
    monkeypatch.setattr(run.Demo, "run", lambda self: (_ for _ in ()).throw(failure))
    monkeypatch.setattr(run, "kill_all", lambda nodes, bitcoind: cleaned.append(True) or ["S", "bitcoind"])
    assert run.main([], out=out) == code
    text = out.getvalue()
    assert said in text and f"stopped S, bitcoind; removed {tmp_path / 'net'}" in text
    assert cleaned == [True] and not (tmp_path / "net").exists()


# -- topologies (issue 22) ------------------------------------------------------


def test_topology_argument_defaults_to_two_lsps_and_refuses_others():
    assert plan.parse_args([]).topology == "two-lsps"
    for name in ("one-lsp", "two-lsps", "redundant"):
        assert plan.parse_args(["--topology", name]).topology == name
    with pytest.raises(SystemExit) as e:
        plan.parse_args(["--topology", "mesh"])
    assert e.value.code == 2


@pytest.mark.parametrize("name", sorted(plan.TOPOLOGIES))
def test_every_topology_tells_the_same_story_with_its_own_nodes(name):
    topo = plan.TOPOLOGIES[name]
    keys = [s.key for s in topo.steps]
    assert len(set(keys)) == len(keys)
    for step in topo.steps:
        assert callable(getattr(run.Demo, f"step_{step.key}"))
    assert keys.index("offer") < keys.index("r_sleeps") < keys.index("pay") < keys.index("held") \
        < keys.index("r_wakes") < keys.index("s_wakes")
    names = [n for n, _ in topo.nodes]
    assert "S" in names and "R" in names and set(topo.servers) <= set(names)
    for c in topo.channels:
        assert {c.opener, c.peer} <= set(names)
    # S sleeps only when an LSP holds its HTLC; a server that goes down is not the one R wakes to.
    assert ("s_sleeps" in keys) == (topo.holder is not None)
    assert topo.survivor != topo.down and ("lsp_down" in keys) == (topo.down is not None)
    n = len(topo.steps)
    assert plan.step_line(n - 1, topo.steps[-1], topo.steps).startswith(f"[{n}/{n}] ")


def test_the_topologies_are_the_three_of_the_architecture():
    one, two, red = plan.ONE_LSP, plan.TWO_LSPS, plan.REDUNDANT
    assert two.steps == plan.STEPS and plan.DEFAULT_TOPOLOGY == "two-lsps"
    assert one.holder == one.servers[0] == "L" and len(one.nodes) == 3  # one LSP for both wallets
    assert not any(c.announce for c in one.channels)
    assert two.holder == "Ls" and two.servers == ("Lr",)
    assert red.servers == ("L1", "L2") and red.down == "L1" and red.survivor == "L2" and red.holder is None
    assert all(not c.announce for c in red.channels if "R" in (c.opener, c.peer))


def test_the_demo_builds_the_nodes_of_its_topology(tmp_path, monkeypatch):
    monkeypatch.setattr(run.tempfile, "mkdtemp", lambda prefix: str(tmp_path))
    binaries = {"bitcoind": "/b/bitcoind", "lightningd": "/b/lightningd", "bitcoin-cli": "/b/bitcoin-cli"}
    demo = run.Demo(io.StringIO(), binaries, "/venv/bin/asyncpay", 60, 40_000, plan.REDUNDANT)
    assert [n.name for n in demo.nodes] == ["S", "L1", "L2", "R"]
    assert demo.holder is None and [n.name for n in demo.servers] == ["L1", "L2"] and demo.mailbox.name == "L2"
    demo = run.Demo(io.StringIO(), binaries, "/venv/bin/asyncpay", 60, 40_000, plan.ONE_LSP)
    assert [n.name for n in demo.nodes] == ["S", "L", "R"] and demo.holder is demo.mailbox is demo.by_name["L"]
