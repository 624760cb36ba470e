"""Real regtest nodes through pyln-testing; skipped (see tests/conftest.py) when absent."""
import ast
import builtins
import os
import threading

import pytest
from pyln.testing.fixtures import *  # noqa: F401,F403  (fixtures: node_factory, bitcoind, ...)

# CPython 3.11 keeps the AST converter's recursion depth in one global: two threads
# converting at once may fail with "SystemError: AST constructor recursion depth
# mismatch" (seen in CI). pyln-testing's get_nodes starts nodes on a thread pool, each
# building a Flask bitcoind proxy whose werkzeug routes are made with ast.parse and
# compile(). Let one thread at a time do either.
_ast_lock = threading.RLock()


def _one_at_a_time(convert):
    def converting(*args, **kwargs):
        with _ast_lock:
            return convert(*args, **kwargs)
    return converting


ast.parse = _one_at_a_time(ast.parse)
builtins.compile = _one_at_a_time(builtins.compile)

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "plugin.py")


@pytest.fixture
def plugin_path():
    return PLUGIN
