#!/usr/bin/env python3
"""Test-only plugin: a push-notification service in miniature. It records
every ``asyncpay_mailbox_queued`` notification (docs/rpc.md) it is sent."""

import threading

from pyln.client import Plugin

plugin = Plugin()
lock = threading.Lock()
seen: list = []


@plugin.subscribe("asyncpay_mailbox_queued")
def on_mail(plugin, **kwargs):
    with lock:
        seen.append(kwargs)


@plugin.method("wakeup-list")
def wakeup_list(plugin):
    with lock:
        return {"notifications": list(seen)}


plugin.run()
