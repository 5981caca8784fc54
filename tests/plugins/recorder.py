#!/usr/bin/env python3
"""Test-only plugin: records what a node would hand a wallet.

* every ``onionmessage_forward_fail`` notification (a wallet's endpoint key
  is never a peer, so messages for it surface here, whole);
* every ``invoice_request`` seen by the onion-message hooks (to capture the
  raw request a CLN ``fetchinvoice`` sends). The hook always continues: an
  exception or non-result reply from an onion-message hook stops lightningd.
"""

import threading

from pyln.client import Plugin

plugin = Plugin()
lock = threading.Lock()
forward_fails: list = []
invoice_requests: list = []


@plugin.subscribe("onionmessage_forward_fail")
def on_forward_fail(plugin, onionmessage_forward_fail=None, **kwargs):
    with lock:
        forward_fails.append(onionmessage_forward_fail or kwargs)


def _record(onion_message):
    try:
        if onion_message.get("invoice_request"):
            with lock:
                invoice_requests.append(onion_message["invoice_request"])
    except Exception:
        pass
    return {"result": "continue"}


@plugin.hook("onion_message_recv_secret", before=["offers"])
def on_recv_secret(plugin, onion_message=None, **kwargs):
    return _record(onion_message or {})


@plugin.hook("onion_message_recv", before=["offers"])
def on_recv(plugin, onion_message=None, **kwargs):
    return _record(onion_message or {})


@plugin.method("recorder-list")
def recorder_list(plugin):
    with lock:
        return {"forward_fails": list(forward_fails), "invoice_requests": list(invoice_requests)}


plugin.run()
