"""`bolt12ext-decode`'s output, byte for byte, frozen before the decoders became typed.

Each fixture entry holds an input and what `messages.decode` gave for it: the
`json.dumps` text (so key order counts) or the DecodeError message. Rerecord with
`python tests/unit/bolt12_snapshot.py` only for an intended change of the RPC's output.
"""
import json

import pytest
from bolt12_snapshot import FIXTURE, snapshot, vector_inputs

with open(FIXTURE) as f:
    ENTRIES = json.load(f)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_decode_output_unchanged(entry):
    want = {k: entry[k] for k in ("json", "error") if k in entry}
    assert snapshot(entry["input"]) == want


def test_snapshot_covers_every_vector_string():
    vectors = vector_inputs()
    if not vectors:
        pytest.skip("official vectors not found (shared/ beside the repo)")
    recorded = {e["name"]: e["input"] for e in ENTRIES}
    assert all(recorded.get(name) == text for name, text in vectors)


def test_snapshot_has_every_kind():
    kinds = {json.loads(e["json"])["type"] for e in ENTRIES if "json" in e}
    assert kinds == {"bolt12 offer", "bolt12 invoice_request", "bolt12 invoice",
                     "bolt12 static invoice"}
    assert any('"signature_valid": false' in e.get("json", "") for e in ENTRIES)
