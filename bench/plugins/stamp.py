#!/usr/bin/env python3
"""Bench-only plugin: stamps each onion message a node hands a wallet.

Every ``onionmessage_forward_fail`` (a wallet's endpoint key is never a
peer, so its messages surface here) is kept with ``time.monotonic()`` read
when the notification arrives: CLOCK_MONOTONIC, shared by every process on
the machine, so the bench subtracts its own start time without polling.
"""

import threading
import time

from pyln.client import Plugin

plugin = Plugin()
lock = threading.Lock()
stamps: list = []


@plugin.subscribe("onionmessage_forward_fail")
def on_forward_fail(plugin, onionmessage_forward_fail=None, **kwargs):
    at = time.monotonic()
    p = onionmessage_forward_fail or kwargs
    with lock:
        stamps.append({"at": at, "next_node_id": p.get("next_node_id"), "outgoing": p.get("outgoing")})


@plugin.method("stamp-list")
def stamp_list(plugin, since=0):
    with lock:
        return {"stamps": stamps[int(since):]}


plugin.run()
