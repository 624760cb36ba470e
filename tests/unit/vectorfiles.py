"""The official test vectors: shared/vectors beside the repository. Without them the tests
that need them skip, saying where they were looked for."""
import json
import os

import pytest

DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared",
                   "vectors")
MISSING = f"official vectors not found in {DIR} (shared/ beside the repo)"


def load(relative):
    """One vector file (e.g. "bolt04/onion-test.json"); skips the test when it is absent."""
    path = os.path.join(DIR, relative)
    if not os.path.exists(path):
        pytest.skip(f"official vectors not found at {path} (shared/ beside the repo)")
    with open(path) as f:
        return json.load(f)


def cases(relative):
    """A vector file's cases for parametrize at import time; [] when absent."""
    path = os.path.join(DIR, relative)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)
