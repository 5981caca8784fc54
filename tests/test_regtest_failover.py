"""Regtest: an LSP fails over on PostgreSQL.

The first test: l2 is the LSP: its lightningd
keeps its wallet on PostgreSQL (``--wallet=postgres://…``) and asyncpay its
state in the same cluster (a schema of its own in CLN's database). A wallet
(on l3) stores its static invoice and has mail queued; l2's lightningd is
killed, and a fresh lightningd with the same ``hsm_secret`` and database
starts in a new directory: it serves the same static invoice and delivers
the queued mail when the wallet connects.

The failover runs (``test_failover_*``): a primary and a synchronous
streaming standby (``.ci/postgres standby``: ``pg_basebackup -R``); the
holding LSP Ls of the four-node network (tests/test_regtest_hold.py) keeps
its wallet and asyncpay's state on the primary, holds two HTLCs of a
sleeping recipient, stores a sleeping wallet's static invoice and queues
mail for it. Then (a) the primary's server restarts (``pg_ctl restart -m
fast``) under the running LSP, or (b) the primary is killed (SIGKILL of the
postmaster), the standby promoted, and Ls's lightningd started against it
with the same ``hsm_secret``. CLN exits when its database connection
breaks; the test starts it again, as a supervisor would. Each prints a
table: the HTLCs held at the fault, when each was answered, the channels,
the mail and invoices before and after, the books.

Needs lightningd built with PostgreSQL (libpq) and a PostgreSQL server: the
cluster of ``ASYNCPAY_TEST_PG``, else a throwaway one started with
``.ci/postgres``; skipped, saying which is missing, otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from pg_replicated import (
    CI_POSTGRES,
    DATABASE_GONE_BROKEN,
    Replicated,
    lightningd_has_postgres,
    server_binaries,
    with_database,
)
from regtest import ASYNCPAY, RECORDER, handshake, inject, node_id, require_binaries, take, wait_for

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from asyncpay.blinded_path import EncryptedData  # noqa: E402
from asyncpay.onion_message import OnionMessagePayload, build_path  # noqa: E402
from wallet import Wallet  # noqa: E402


@pytest.fixture
def cluster():
    """The URI of a PostgreSQL cluster we may create databases in."""
    if not lightningd_has_postgres():
        pytest.skip("regtest failover: lightningd is built without PostgreSQL (no libpq)")
    if os.environ.get("ASYNCPAY_TEST_PG"):
        yield os.environ["ASYNCPAY_TEST_PG"]
        return
    if not server_binaries():
        pytest.skip("regtest failover: no PostgreSQL server (set ASYNCPAY_TEST_PG, or install postgresql)")
    # Straight under the temporary root: run as root, .ci/postgres hands the
    # cluster to an unprivileged user, who cannot enter pytest's private
    # (0700, root's) base directory.
    where = tempfile.mkdtemp(prefix="asyncpay-pg-")
    started = subprocess.run([str(CI_POSTGRES), "start", where], capture_output=True, text=True)
    if started.returncode != 0:
        shutil.rmtree(where, ignore_errors=True)
        pytest.fail(f"regtest failover: .ci/postgres could not start a cluster: {started.stderr.strip()}")
    yield started.stdout.strip()
    subprocess.run([str(CI_POSTGRES), "stop", where], capture_output=True)
    shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
def lsp_database(cluster):
    """A database of its own for the LSP: CLN's tables, and asyncpay's in schema ``asyncpay_state``
    (not named after the role CLN connects as: ``"$user"`` comes first in its search_path)."""
    import psycopg

    name = "failover_" + uuid.uuid4().hex[:12]
    with psycopg.connect(cluster, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    wallet = with_database(cluster, name).replace("postgresql://", "postgres://", 1)
    yield wallet, with_database(cluster, name, options="-csearch_path=asyncpay_state")
    with psycopg.connect(cluster, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def sleeping_wallet_with_mail(lsp, w, sender, text: bytes):
    """``w``'s wallet stores its static invoice at ``lsp`` and sleeps; ``sender`` sends it
    one onion message, which ``lsp`` queues. The wallet, its offer and its invoice."""
    wallet, offer, invoice = handshake(lsp, w)
    w.stop()
    dest = build_path(os.urandom(32), [
        (node_id(lsp), EncryptedData(next_node_id=node_id(w))),
        (node_id(w), EncryptedData(next_node_id=wallet.endpoint)),
        (wallet.endpoint, EncryptedData(path_id=os.urandom(32))),
    ])
    inject(sender, Wallet(node_id(sender)).onion_to(dest, OnionMessagePayload(unknown={71: text})))
    wait_for(lambda: lsp.rpc.call("asyncpay-listmailbox")["messages"] == 1, what="mail queued")
    return wallet, offer, invoice


def test_a_fresh_lightningd_on_the_same_database_takes_over(lsp_database, node_factory):  # the nodes stop first
    wallet_db, asyncpay_db = lsp_database
    lsp_opts = {"plugin": ASYNCPAY, "wallet": wallet_db, "asyncpay-db": asyncpay_db}
    l1 = node_factory.get_node(options={"plugin": RECORDER}, may_reconnect=True)
    l2 = node_factory.get_node(options=lsp_opts, may_reconnect=True, may_fail=True)
    l3 = node_factory.get_node(options={"plugin": RECORDER}, may_reconnect=True)
    node_factory.join_nodes([l1, l2], wait_for_announce=False)
    node_factory.join_nodes([l2, l3], wait_for_announce=False)
    assert l2.rpc.call("asyncpay-status")  # running, on PostgreSQL
    assert l2.daemon.is_in_log("database postgresql://")

    # The wallet stores its static invoice, goes to sleep, and mail comes for it.
    recipient, offer, invoice = sleeping_wallet_with_mail(l2, l3, l1, b"queued before failover")

    # The active LSP dies without a goodbye (its plugins die with it).
    l2.daemon.proc.kill()
    l2.daemon.proc.wait()

    # The standby: a new directory, the same hsm_secret, the same databases.
    l2b = node_factory.get_node(options=lsp_opts, may_reconnect=True, start=False)
    shutil.copy(os.path.join(l2.daemon.lightning_dir, "regtest", "hsm_secret"),
                os.path.join(l2b.daemon.lightning_dir, "regtest", "hsm_secret"))
    l2b.start()
    assert l2b.info["id"] == l2.info["id"]
    assert l2b.rpc.call("asyncpay-listmailbox")["messages"] == 1
    [stored] = l2b.rpc.call("asyncpay-listinvoices", {"recipient_id": l3.info["id"]})["invoices"]
    assert stored["invoice"] == invoice.encode().hex()

    # It serves the same static invoice to a payer...
    l1.rpc.connect(l2b.info["id"], "localhost", l2b.port)
    payer = Wallet(node_id(l1))
    _, onion = payer.invoice_request(offer)
    inject(l1, onion)
    assert take(l1, payer).static_invoice == invoice.encode()

    # ...and delivers the queued mail when the wallet connects.
    l3.start()
    l3.rpc.connect(l2b.info["id"], "localhost", l2b.port)
    assert take(l3, recipient).unknown == {71: b"queued before failover"}
    wait_for(lambda: l2b.rpc.call("asyncpay-listmailbox")["messages"] == 0, what="mailbox emptied")


# -- the failover runs: a primary, a synchronous standby, the holding LSP on them -------------------

HOLD_SECONDS = 60  # Ls's asyncpay-hold-max-seconds: the held HTLCs' deadline
ANSWER_SLACK = 30  # seconds past a deadline still "at" it (the hold timer's tick on a loaded 2-core box)


@pytest.fixture
def replicated():
    if not lightningd_has_postgres():
        pytest.skip("regtest failover: lightningd is built without PostgreSQL (no libpq)")
    if not server_binaries():
        pytest.skip("regtest failover: no PostgreSQL server binaries (install postgresql)")
    r = Replicated()
    yield r
    r.close()


def _ls_options(cluster: Replicated) -> dict:
    return {**cluster.lightningd_options("ls"), "asyncpay-hold-max-seconds": HOLD_SECONDS}


def _in_flight(node) -> set[str]:
    """Payment hashes of the HTLCs in the node's channels."""
    return {h["payment_hash"] for c in node.rpc.listpeerchannels()["channels"] for h in c.get("htlcs") or []}


def _balances(nodes: dict) -> dict[str, int]:
    return {name: sum(c["to_us_msat"] for c in n.rpc.listpeerchannels()["channels"]) for name, n in nodes.items()}


def _alive(node) -> bool:
    return node.daemon.proc is not None and node.daemon.proc.poll() is None


def _exit_reason(node) -> str:
    """The first **BROKEN** line of lightningd's last run (its log file)."""
    with open(os.path.join(node.daemon.lightning_dir, "log"), errors="replace") as f:
        lines = f.read().split("Server started with public key")[-1].splitlines()
    broken = [line for line in lines if "**BROKEN**" in line and "backtrace" not in line]
    return broken[0].split("**BROKEN**", 1)[1].strip()[:100] if broken else "no reason logged"


def _failover_run(node_factory, cluster: Replicated, fault: str) -> None:
    from test_regtest_hold import assert_channels_normal, connect_to_server, four_nodes, wake
    from test_regtest_recipient import ready_offer

    cluster.create_database("ls")
    s, ls, lr, r = four_nodes(node_factory, ls_opts=_ls_options(cluster))
    ls.may_fail = True  # its lightningd exits with its database connection (CLN's db_error is fatal)
    ls.broken_log = DATABASE_GONE_BROKEN
    assert ls.daemon.is_in_log("database postgresql://")
    # W: a sleeping wallet whose static invoice and mail Ls keeps.
    w = node_factory.get_node(options={"plugin": RECORDER}, may_reconnect=True)
    node_factory.join_nodes([ls, w], announce_channels=False)
    wallet, _, w_invoice = sleeping_wallet_with_mail(ls, w, s, b"queued before the fault")
    nodes = {"S": s, "Ls": ls, "Lr": lr, "R": r, "W": w}
    awake = {k: v for k, v in nodes.items() if k != "W"}
    books = _balances(awake)

    # Two HTLCs of S held at Ls while R sleeps.
    offer = ready_offer(r, description="failover")["bolt12"]
    r.stop()
    pays = [s.rpc.call("asyncpay-pay", {"offer": offer, "amount_msat": amount, "timeout": 60})
            for amount in (40_000, 41_000)]
    assert all(p["status"] == "held" for p in pays), pays
    rows = wait_for(lambda: (x := ls.rpc.call("asyncpay-listheld")["held"]) and len(x) == 2 and x, what="two held")
    held = {h["payment_hash"]: h for h in rows}
    assert {h["state"] for h in held.values()} == {"held"}
    mail_before = ls.rpc.call("asyncpay-listmailbox")["messages"]
    invoices_before = ls.rpc.call("asyncpay-listinvoices", {"recipient_id": w.info["id"]})["invoices"]

    # The fault.
    t_fault = time.time()
    events: list[str] = []

    def supervise() -> None:
        """What a supervisor (systemd) does: lightningd exits when its database connection
        breaks (CLN's db_error is fatal); start it again."""
        if not _alive(ls):
            events.append(f"Ls's lightningd exited {time.time() - t_fault:.0f} s after the fault "
                          f"({_exit_reason(ls)}); started again")
            ls.daemon.proc = None
            ls.start()
            for peer in (s, lr):
                if not any(p["connected"] for p in ls.rpc.listpeers(peer.info["id"])["peers"]):
                    ls.rpc.connect(peer.info["id"], "localhost", peer.port)

    if fault == "restart":
        cluster.restart_primary()
        time.sleep(5)  # the LSP runs on, or its lightningd exits with its database connection
        supervise()
    else:
        cluster.kill_primary_and_promote()
        if _alive(ls):  # fencing: the old active node goes before the standby starts
            ls.daemon.proc.kill()
        ls.daemon.proc.wait()
        events.append(f"Ls's lightningd on the promoted standby {time.time() - t_fault:.0f} s after the kill")
        ls.daemon.opts.update(_ls_options(cluster))
        ls.daemon.proc = None
        ls.start()
    for peer in (s, lr):
        if not any(p["connected"] for p in ls.rpc.listpeers(peer.info["id"])["peers"]):
            ls.rpc.connect(peer.info["id"], "localhost", peer.port)

    # Every held HTLC answered by its deadline (R sleeps: failed back at it).
    answered: dict[str, float] = {}

    def all_answered() -> bool:
        supervise()
        now, out = time.time(), _in_flight(ls)
        for h in held:
            if h not in out and h not in answered:
                answered[h] = now
        return len(answered) == len(held)

    wait_for(all_answered, timeout=HOLD_SECONDS + 120, what="every held HTLC answered")
    rows_after = {h["payment_hash"]: h for h in ls.rpc.call("asyncpay-listheld")["held"]}
    late = {h: answered[h] - held[h]["deadline"] for h in held if answered[h] > held[h]["deadline"] + ANSWER_SLACK}
    for p in pays:
        wait_for(lambda p=p: s.rpc.call("asyncpay-listpays", {"id": p["id"]})["pays"][0]["status"] == "failed",
                 what="failed at S")

    # The service goes on: R wakes, a new payment completes; W wakes and gets its mail.
    wake(r, lr)
    connect_to_server(lr, r)
    s.rpc.connect(ls.info["id"], "localhost", ls.port)
    done = s.rpc.call("asyncpay-pay", {"offer": offer, "amount_msat": 42_000, "timeout": 120})
    done = wait_for(lambda: (x := s.rpc.call("asyncpay-listpays", {"id": done["id"]})["pays"][0])["status"]
                    in ("complete", "failed") and x, what="the payment after the fault")
    mail_after = ls.rpc.call("asyncpay-listmailbox")["messages"]
    invoices_after = ls.rpc.call("asyncpay-listinvoices", {"recipient_id": w.info["id"]})["invoices"]
    w.start()
    w.rpc.connect(ls.info["id"], "localhost", ls.port)
    delivered = take(w, wallet).unknown == {71: b"queued before the fault"}

    wait_for(lambda: not _in_flight(ls), what="no HTLC left at Ls")
    channels = {name: sorted({c["state"] for c in n.rpc.listpeerchannels()["channels"]})
                for name, n in nodes.items()}
    after = _balances(awake)
    received = sum(x["amount_msat"] for x in r.rpc.call("asyncpay-listreceived")["payments"])
    sent = sum(x["amount_sent_msat"] for x in s.rpc.listsendpays()["payments"] if x["status"] == "complete")
    moved = {k: after[k] - books[k] for k in books}

    table = [
        ("fault", {"restart": "primary restarted (pg_ctl restart -m fast)",
                   "promote": "primary killed (SIGKILL), standby promoted"}[fault]),
        *[("event", e) for e in events],
        ("HTLCs held at the fault", str(len(held))),
        *[(f"  {h[:16]}…", f"answered {answered[h] - t_fault:.0f} s after the fault, "
                           f"{answered[h] - held[h]['deadline']:+.0f} s from its deadline, "
                           f"row {rows_after.get(h, {}).get('state')}/{rows_after.get(h, {}).get('reason')}")
          for h in held],
        ("payment after the fault", f"{done['status']}"),
        ("channels", ", ".join(f"{k} {'/'.join(v)}" for k, v in channels.items())),
        ("mail for W (before / after / delivered)", f"{mail_before} / {mail_after} / {delivered}"),
        ("static invoices of W (before / after)", f"{len(invoices_before)} / {len(invoices_after)}"),
        ("books: sum of balances moved", f"{sum(moved.values())} msat; S {moved['S']}, R {moved['R']}, "
                                         f"Ls {moved['Ls']}, Lr {moved['Lr']}; sent {sent}, received {received}"),
    ]
    print(f"\nfailover run ({fault}):")
    for name, value in table:
        print(f"  {name:<48} {value}")

    assert not late, f"answered after the deadline: {late}"
    assert done["status"] == "complete", done
    assert_channels_normal(s, ls, lr, r, w)
    assert mail_before == 1 and mail_after == 1 and delivered
    assert [i["invoice"] for i in invoices_after] == [i["invoice"] for i in invoices_before] == [
        w_invoice.encode().hex()]
    assert sum(moved.values()) == 0 and moved["R"] == received and moved["S"] == -sent


def test_failover_a_the_primary_restarts_under_a_running_lsp(replicated, node_factory):
    _failover_run(node_factory, replicated, "restart")


def test_failover_b_the_primary_dies_and_the_standby_takes_over(replicated, node_factory):
    _failover_run(node_factory, replicated, "promote")
