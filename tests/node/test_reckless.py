"""`reckless install clnlsp`, as a CLN user installs plugins: from a local source
directory and from a git source, into a regtest node's lightning dir. reckless ships
with Core Lightning; it finds the entry point clnlsp.py, installs requirements.txt
into its own virtualenv, test-runs the plugin, starts it and adds it to the config."""
import os
import shutil
import subprocess

import pytest
from pyln.testing.utils import only_one

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_SOURCE = "https://github.com/lightningd/plugins"

pytestmark = pytest.mark.skipif(shutil.which("reckless") is None,
                                reason="reckless (installed with Core Lightning) not on PATH")


def copy_of_repository(parent) -> str:
    """The repository as a user's checkout: a directory named after the plugin."""
    target = os.path.join(parent, "clnlsp")
    shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", ".pytest_cache", ".ruff_cache", "venv", ".venv"))
    return target


def reckless(node, *args, timeout=600):
    out = subprocess.run(["reckless", "-v", f"--lightning={node.daemon.lightning_dir}",
                          "--network=regtest", *args],
                         input="Y\n", capture_output=True, text=True, timeout=timeout)
    print(out.stdout, out.stderr)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def installed_entry(node) -> str:
    return os.path.join(node.daemon.lightning_dir, "reckless", "clnlsp", "clnlsp.py")


def active_clnlsp(node):
    return [p for p in node.rpc.plugin("list")["plugins"]
            if p["name"] == installed_entry(node) and p["active"]]


def install_and_check(node):
    out = reckless(node, "install", "clnlsp")
    assert "dependencies installed successfully" in out
    assert "clnlsp enabled" in out
    assert only_one(active_clnlsp(node))
    assert node.rpc.call("lsps2-listbuys") == {"buys": []}
    venv = os.path.join(node.daemon.lightning_dir, "reckless", "clnlsp", ".venv")
    pip_list = subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "list"],
                              capture_output=True, text=True, check=True).stdout
    assert "pyln-client" in pip_list and "bech32" in pip_list


def uninstall_and_check(node):
    assert "uninstalled" in reckless(node, "uninstall", "clnlsp")
    assert not active_clnlsp(node)
    assert not os.path.exists(os.path.dirname(installed_entry(node)))


def test_install_from_a_local_directory_then_from_a_git_source(node_factory, tmp_path):
    node = node_factory.get_node()
    reckless(node, "source", "remove", DEFAULT_SOURCE)   # no network: our sources only

    source_dir = copy_of_repository(tmp_path / "plain")
    reckless(node, "source", "add", source_dir)
    install_and_check(node)
    # reckless wrote the plugin into the node's config: a restart starts it again.
    node.restart()
    assert only_one(active_clnlsp(node))
    assert node.rpc.call("lsps2-listbuys") == {"buys": []}
    uninstall_and_check(node)
    reckless(node, "source", "remove", source_dir)

    git_dir = copy_of_repository(tmp_path / "git")
    for step in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "v"]):
        subprocess.run(["git", *step], cwd=git_dir, check=True)
    reckless(node, "source", "add", git_dir)
    install_and_check(node)
    uninstall_and_check(node)
