"""Benchmarks run real nodes through pyln-testing, with the tests' setup (RUST=0 etc.)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.conftest import MISSING, pytest_runtest_makereport  # noqa: E402,F401

if MISSING:
    raise SystemExit(f"benchmarks need {' and '.join(MISSING)} on PATH")

from pyln.testing.fixtures import *  # noqa: E402,F401,F403
