#!/usr/bin/env python3
"""Entry point for `reckless install clnlsp`: reckless (and the lightningd/plugins
convention) looks for `<name>/<name>.py`. It runs plugin.py, the plugin itself."""

import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugin.py"),
                   run_name="__main__")
