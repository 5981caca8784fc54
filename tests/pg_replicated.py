"""A PostgreSQL primary with a synchronous streaming standby, for the runs
that fail a database over under real nodes (tests/test_regtest_failover.py,
the chaos run's ``CHAOS_STORE=postgresql``): throwaway clusters from the
server packages, made by ``.ci/postgres`` (``standby``: ``pg_basebackup -R``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

CI_POSTGRES = Path(__file__).resolve().parent.parent / ".ci" / "postgres"
# lightningd exits when its connection to PostgreSQL breaks (CLN v26.06's db_error is
# fatal): the BROKEN lines a database fault is expected to cause (pyln's broken_log).
DATABASE_GONE_BROKEN = ("DB transaction|executing statement|query failed|terminating connection|backtrace|"
                        "FATAL SIGNAL|db_error|database")


def lightningd_has_postgres() -> bool:
    out = subprocess.run(["ldd", shutil.which("lightningd")], capture_output=True, text=True)
    return "libpq" in out.stdout


def server_binaries() -> bool:
    return shutil.which("initdb") is not None or any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


def with_database(uri: str, database: str, **query: str) -> str:
    parts = urlsplit(uri)
    q = [(k, v) for k, v in parse_qsl(parts.query) if k not in query] + list(query.items())
    return urlunsplit(parts._replace(path="/" + database, query=urlencode(q)))


class Replicated:
    """A primary and a synchronous streaming standby, each on its own Unix socket directory."""

    def __init__(self) -> None:
        self.primary, self.standby = tempfile.mkdtemp(prefix="asyncpay-pgp-"), tempfile.mkdtemp(prefix="asyncpay-pgs-")
        # Synchronous: a commit is acknowledged once the standby has it (nothing acknowledged is lost
        # when the primary dies). Given at the primary's start only, so the promoted standby does
        # not wait for a standby of its own.
        env = {**os.environ, "ASYNCPAY_PG_OPTS": "-c synchronous_standby_names=*"}
        self._run("start", self.primary, env=env)
        self._run("standby", self.standby, self.primary)

    def _run(self, *args: str, env=None) -> str:
        out = subprocess.run([str(CI_POSTGRES), *args], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            pytest.fail(f".ci/postgres {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout.strip()

    def uri(self, where: str, database: str = "postgres", **query: str) -> str:
        return with_database(f"postgresql://asyncpay@/postgres?host={where}", database, **query)

    def restart_primary(self) -> None:
        self._run("restart", self.primary)

    def kill_primary_and_promote(self) -> None:
        """SIGKILL of the primary's postmaster, then the standby promoted: it is the
        primary from now on (with no standby of its own)."""
        assert self.standby is not None, "the standby was promoted already"
        with open(os.path.join(self.primary, "data", "postmaster.pid")) as f:
            os.kill(int(f.readline()), signal.SIGKILL)
        self._run("promote", self.standby)
        self.dead, self.primary, self.standby = self.primary, self.standby, None

    def close(self) -> None:
        for where in (self.standby, self.primary, getattr(self, "dead", None)):
            if where:
                subprocess.run([str(CI_POSTGRES), "stop", where], capture_output=True)
                shutil.rmtree(where, ignore_errors=True)

    def lightningd_options(self, database: str, schema: str = "asyncpay_state") -> dict:
        """lightningd's wallet and asyncpay's store in ``database`` on the current primary
        (asyncpay in a schema of its own, not named after the role CLN connects as)."""
        return {"wallet": self.uri(self.primary, database).replace("postgresql://", "postgres://", 1),
                "asyncpay-db": self.uri(self.primary, database, options=f"-csearch_path={schema}")}

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.uri(self.primary), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
