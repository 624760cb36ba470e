"""Does lightningd's configuration turn on `lsp-service`? Read before `init`.

Feature bits go into the `getmanifest` reply, which lightningd asks for
before it tells the plugin its option values. To set bit 729 only on an LSP,
we read lightningd's own command line and config files, the same places it
reads the option from, and check our answer against the real value at
`init` (see plugin.py).
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, List, Optional

NETWORK_FLAGS = {"--mainnet": "bitcoin", "--testnet": "testnet", "--signet": "signet",
                 "--regtest": "regtest", "--testnet4": "testnet4"}


def _value(argv: List[str], name: str) -> Optional[str]:
    """Last value of `--name=value` or `--name value` on a command line."""
    found = None
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            found = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(argv):
            found = argv[i + 1]
    return found


def _config_lines(path: str, read_text: Callable[[str], Optional[str]],
                  seen: set) -> Iterable[str]:
    real = os.path.abspath(path)
    if real in seen:
        return
    seen.add(real)
    text = read_text(real)
    if text is None:
        return
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("include "):
            target = line[len("include "):].strip()
            if not os.path.isabs(target):
                target = os.path.join(os.path.dirname(real), target)
            yield from _config_lines(target, read_text, seen)
        elif line:
            yield line


def flag_set(flag: str, argv: List[str], read_text: Callable[[str], Optional[str]],
             home: str, cwd: str = "/") -> bool:
    """Is `flag` given on lightningd's command line or in its config files?"""
    if f"--{flag}" in argv:
        return True
    lightning_dir = _value(argv, "lightning-dir") or os.path.join(home, ".lightning")
    lightning_dir = os.path.join(cwd, os.path.expanduser(lightning_dir))
    network = _value(argv, "network")
    for arg in argv:
        network = NETWORK_FLAGS.get(arg, network)
    network = network or "bitcoin"
    files = [os.path.join(lightning_dir, "config"),
             os.path.join(lightning_dir, network, "config")]
    conf = _value(argv, "conf")
    if conf:
        files.append(conf if os.path.isabs(conf) else os.path.join(lightning_dir, conf))
    seen: set = set()
    return any(line == flag for path in files
               for line in _config_lines(path, read_text, seen))


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def parent_flag_set(flag: str) -> bool:
    """flag_set() for the lightningd that started this plugin process."""
    proc = f"/proc/{os.getppid()}"
    try:
        with open(f"{proc}/cmdline", "rb") as f:
            argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
        cwd = os.readlink(f"{proc}/cwd")
    except OSError:
        return False
    return flag_set(flag, argv, _read_text, os.path.expanduser("~"), cwd)
