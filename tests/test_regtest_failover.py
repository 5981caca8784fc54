"""Regtest: an LSP fails over on PostgreSQL. l2 is the LSP: its lightningd
keeps its wallet on PostgreSQL (``--wallet=postgres://…``) and asyncpay its
state in the same cluster (a schema of its own in CLN's database). A wallet
(on l3) stores its static invoice and has mail queued; l2's lightningd is
killed, and a fresh lightningd with the same ``hsm_secret`` and database
starts in a new directory: it serves the same static invoice and delivers
the queued mail when the wallet connects.

Needs lightningd built with PostgreSQL (libpq) and a PostgreSQL server: the
cluster of ``ASYNCPAY_TEST_PG``, else a throwaway one started with
``.ci/postgres``; skipped, saying which is missing, otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from regtest import ASYNCPAY, RECORDER, handshake, inject, node_id, require_binaries, take, wait_for

require_binaries()

from pyln.testing.fixtures import *  # noqa: E402,F401,F403

from asyncpay.blinded_path import EncryptedData  # noqa: E402
from asyncpay.onion_message import OnionMessagePayload, build_path  # noqa: E402
from wallet import Wallet  # noqa: E402

CI_POSTGRES = Path(__file__).resolve().parent.parent / ".ci" / "postgres"


def _lightningd_has_postgres() -> bool:
    out = subprocess.run(["ldd", shutil.which("lightningd")], capture_output=True, text=True)
    return "libpq" in out.stdout


def _server_binaries() -> bool:
    return shutil.which("initdb") is not None or any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


@pytest.fixture
def cluster():
    """The URI of a PostgreSQL cluster we may create databases in."""
    if not _lightningd_has_postgres():
        pytest.skip("regtest failover: lightningd is built without PostgreSQL (no libpq)")
    if os.environ.get("ASYNCPAY_TEST_PG"):
        yield os.environ["ASYNCPAY_TEST_PG"]
        return
    if not _server_binaries():
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


def _with(uri: str, database: str, **query: str) -> str:
    parts = urlsplit(uri)
    q = [(k, v) for k, v in parse_qsl(parts.query) if k not in query] + list(query.items())
    return urlunsplit(parts._replace(path="/" + database, query=urlencode(q)))


@pytest.fixture
def lsp_database(cluster):
    """A database of its own for the LSP: CLN's tables, and asyncpay's in schema ``asyncpay_state``
    (not named after the role CLN connects as: ``"$user"`` comes first in its search_path)."""
    import psycopg

    name = "failover_" + uuid.uuid4().hex[:12]
    with psycopg.connect(cluster, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    wallet = _with(cluster, name).replace("postgresql://", "postgres://", 1)
    yield wallet, _with(cluster, name, options="-csearch_path=asyncpay_state")
    with psycopg.connect(cluster, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


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
    recipient, offer, invoice = handshake(l2, l3)
    l3.stop()
    dest = build_path(os.urandom(32), [
        (node_id(l2), EncryptedData(next_node_id=node_id(l3))),
        (node_id(l3), EncryptedData(next_node_id=recipient.endpoint)),
        (recipient.endpoint, EncryptedData(path_id=os.urandom(32))),
    ])
    inject(l1, Wallet(node_id(l1)).onion_to(dest, OnionMessagePayload(unknown={71: b"queued before failover"})))
    wait_for(lambda: l2.rpc.call("asyncpay-listmailbox")["messages"] == 1, what="queued")

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
