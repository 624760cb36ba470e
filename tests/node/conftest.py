"""Real regtest nodes through pyln-testing; skipped (see tests/conftest.py) when absent."""
import os

import pytest
from pyln.testing.fixtures import *  # noqa: F401,F403  (fixtures: node_factory, bitcoind, ...)

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "plugin.py")


@pytest.fixture
def plugin_path():
    return PLUGIN
