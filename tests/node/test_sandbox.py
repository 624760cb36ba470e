"""The regtest sandbox end to end: `tools/sandbox.py --once` sets up bitcoind and four
nodes, runs every flow, reports each one ok and exits 0 after cleaning up."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLOWS = ("LSPS2 JIT payment (BOLT12 offer)", "LSPS2 JIT payment (BOLT11)",
         "LSPS1 channel order paid and opened", "LSPS7 lease extension (paid by offer)",
         "Async payment to an offline recipient", "LSPS5 wake-up of an offline client",
         "Operator overview: lsp-summary, metrics")


@pytest.mark.timeout(960)
def test_sandbox_once_runs_every_flow_ok(tmp_path):
    work = tmp_path / "sandbox"   # under pytest's tmp_path: the logs stay when it fails
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "sandbox.py"), "--once",
                          "--dir", str(work)], capture_output=True, text=True, timeout=900,
                         cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    steps = [line for line in out.stdout.splitlines() if re.match(r"\[ ?\d+/\d+\] ", line)]
    assert len(steps) == 3 + len(FLOWS), out.stdout
    for title in FLOWS:
        (line,) = [line for line in steps if title in line]
        assert re.search(r" ok +\d+\.\d s", line), line
    assert all(" ok " in line for line in steps), out.stdout
    # every process stopped: nothing holds the nodes' RPC sockets any more
    assert "Stopped;" in out.stdout
