"""The CLN adapter: the only part of asyncpay that talks to lightningd."""
