#!/usr/bin/env python3
"""Bench-only plugin: stamps each onion message a node hands a wallet, and
each HTLC it forwards.

Every ``onionmessage_forward_fail`` (a wallet's endpoint key is never a
peer, so its messages surface here) and every ``forward_event`` is kept with
``time.monotonic()`` read when the notification arrives: CLOCK_MONOTONIC,
shared by every process on the machine, so a bench compares stamps of
several nodes and its own clock without polling.
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


@plugin.subscribe("forward_event")
def on_forward_event(plugin, forward_event=None, **kwargs):
    at = time.monotonic()
    p = forward_event or kwargs
    with lock:
        stamps.append({"at": at, "forward": p.get("status"), "payment_hash": p.get("payment_hash")})


@plugin.method("stamp-list")
def stamp_list(plugin, since=0):
    with lock:
        return {"stamps": stamps[int(since):]}


plugin.run()
