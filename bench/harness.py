"""Shared entry point of the benchmarks: run one as a pytest test on real
nodes (pyln-testing fixtures), then print the JSON it wrote."""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")


def result_path(name: str) -> str:
    return os.path.join(RESULTS, f"{name}.json")


def write_result(name: str, out: dict) -> None:
    os.makedirs(RESULTS, exist_ok=True)
    with open(result_path(name), "w") as f:
        json.dump(out, f, indent=2)


def main(test_file: str, name: str, flags: dict) -> None:
    """`flags` maps command-line flags to the environment variables they set."""
    import pytest

    for flag, env in flags.items():
        if flag in sys.argv:
            os.environ[env] = sys.argv[sys.argv.index(flag) + 1]
    path = result_path(name)
    if os.path.exists(path):
        os.remove(path)  # never print a stale result
    sys.path.insert(0, ROOT)
    code = pytest.main([test_file, "-q", "-p", "no:cacheprovider", "--rootdir", ROOT])
    if code != 0 or not os.path.exists(path):
        sys.exit(code or 1)
    with open(path) as f:
        print(f.read())
