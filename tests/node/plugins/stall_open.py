#!/usr/bin/env python3
"""Test helper: a peer whose openchannel hook never answers (a stalled open)."""
from pyln.client import Plugin

plugin = Plugin()
stalled = []


def on_openchannel(openchannel, request, plugin, **kwargs):
    stalled.append(request)  # never answered


plugin.add_hook("openchannel", on_openchannel, background=True, before=["plugin.py"])
plugin.run()
