"""tools/sandbox.py refuses to start, with exit code 2 and what to install, when the
node binaries or pyln-client are missing; nothing is started or written then."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SANDBOX = os.path.join(ROOT, "tools", "sandbox.py")


def run(tmp_path, *args, binaries=(), python=(sys.executable,)):
    """The sandbox with PATH = a directory holding only fake `binaries`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in binaries:
        fake = bin_dir / name
        fake.write_text("#!/bin/sh\nexit 1\n")
        fake.chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    return subprocess.run([*python, SANDBOX, *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)


def test_without_any_node_binary_it_exits_2_naming_them(tmp_path):
    out = run(tmp_path, "--once")
    assert out.returncode == 2, out
    for name in ("lightningd", "lightning-cli", "bitcoind", "bitcoin-cli"):
        assert name in out.stderr
    assert "Core Lightning v26.06" in out.stderr and "Bitcoin Core v30" in out.stderr
    assert "https://docs.corelightning.org/docs/installation" in out.stderr
    assert out.stdout == ""


def test_only_what_is_missing_is_named(tmp_path):
    out = run(tmp_path, "--once", binaries=("lightningd", "lightning-cli"))
    assert out.returncode == 2, out
    assert out.stderr.startswith("sandbox: bitcoind, bitcoin-cli not found on PATH")


def test_without_pyln_client_it_exits_2_saying_what_to_install(tmp_path):
    # -S: no site-packages, so no pyln (the binaries are fakes that are never run).
    out = run(tmp_path, "--once", python=(sys.executable, "-S"),
              binaries=("lightningd", "lightning-cli", "bitcoind", "bitcoin-cli"))
    assert out.returncode == 2, out
    assert "pyln-client" in out.stderr and "pip install -r requirements.txt" in out.stderr


def test_a_directory_that_is_not_empty_is_refused(tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "something").write_text("")
    out = run(tmp_path, "--once", "--dir", str(taken),
              binaries=("lightningd", "lightning-cli", "bitcoind", "bitcoin-cli"))
    assert out.returncode == 2, out
    assert "is not empty" in out.stderr
    assert os.listdir(taken) == ["something"]


def test_help_needs_no_binaries(tmp_path):
    out = run(tmp_path, "--help")
    assert out.returncode == 0 and "--once" in out.stdout
