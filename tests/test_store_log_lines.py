"""``storage.shown``: what the log says about ``asyncpay-db`` carries no secret,
in any form a PostgreSQL connection string can take one."""

from __future__ import annotations

import pytest

from asyncpay.storage import shown


@pytest.mark.parametrize("target, secret, kept", [
    ("postgresql://lsp:s3cret@db.example/ln", "s3cret", "postgresql://lsp:***@db.example/ln"),
    ("postgresql://lsp@db.example/ln?password=s3cret&sslmode=require", "s3cret", "sslmode=require"),
    ("postgres://lsp@db.example/ln?sslpassword=keypass&sslkey=/k.pem", "keypass", "sslkey=/k.pem"),
    ("postgresql://lsp@db.example/ln?PASSWORD=s3cret", "s3cret", "db.example/ln"),
    ("postgresql://lsp:p%40ss@h1:5432,h2:5433/ln?password=s3cret", "p%40ss", "h1:5432,h2:5433"),
    ("postgresql://lsp@/ln?host=/run/pg&password=s%20cret&options=-csearch_path%3Dasyncpay", "s%20cret",
     "options=-csearch_path%3Dasyncpay"),
    ("host=db.example user=lsp password=s3cret dbname=ln", "s3cret", "host=db.example user=lsp"),
    ("host=db.example password = 's3 cr\\'et' dbname=ln", "cr", "dbname=ln"),
    ("host=db.example sslpassword=keypass", "keypass", "host=db.example"),
])
def test_no_secret_reaches_a_log_line(target, secret, kept):
    line = shown(target)
    assert secret not in line and "***" in line
    assert kept in line


@pytest.mark.parametrize("target", ["/var/lib/ln/asyncpay.sqlite3", ":memory:", "postgresql://lsp@db.example/ln",
                                    "postgresql://lsp@db.example/ln?passfile=/etc/asyncpay/pgpass"])
def test_a_target_without_a_secret_is_shown_as_given(target):
    assert shown(target) == target
