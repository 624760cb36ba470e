#!/usr/bin/env python3
"""Benchmark helper: accept every channel open as zero-conf (the floor's client)."""
from pyln.client import Plugin

plugin = Plugin()


@plugin.hook("openchannel")
def on_openchannel(openchannel, **kwargs):
    return {"result": "continue", "mindepth": 0}


plugin.run()
