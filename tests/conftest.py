"""Shared test setup: real-node prerequisites and keeping logs of failed tests."""
import os
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _missing_binaries():
    return [b for b in ("lightningd", "bitcoind") if shutil.which(b) is None]


def _lightningd_has_rust_plugins() -> bool:
    lightningd = shutil.which("lightningd")
    if lightningd is None:
        return False
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(lightningd)))
    return os.path.exists(os.path.join(prefix, "libexec", "c-lightning", "plugins", "cln-grpc"))


# pyln-testing passes --grpc-port unless RUST=0; a build without Rust plugins
# then refuses to start every node.
if "RUST" not in os.environ and not _lightningd_has_rust_plugins():
    os.environ["RUST"] = "0"

MISSING = _missing_binaries()
NODE_SKIP_REASON = (
    f"real-node test: {' and '.join(MISSING)} not found on PATH "
    "(install Core Lightning v26.06 and Bitcoin Core >= 30, see README 'Real-node tests')"
)


def pytest_collection_modifyitems(config, items):
    node_dir = os.path.join(ROOT, "tests", "node") + os.sep
    for item in items:
        if str(item.fspath).startswith(node_dir):
            item.add_marker(pytest.mark.node)
            if MISSING:
                item.add_marker(pytest.mark.skip(reason=NODE_SKIP_REASON))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # pyln-testing's `directory` fixture keeps node logs when rep_call failed.
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)

