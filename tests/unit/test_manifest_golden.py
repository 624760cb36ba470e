"""The whole getmanifest reply, frozen: every option (name, default, type,
description), every command (name, usage, description), hook, subscription and
notification. A change of layout must leave it byte for byte the same; a change
of interface updates the golden file on purpose (`UPDATE_GOLDEN=1`)."""
import json
import os

from test_plugin_manifest import manifest

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures",
                      "manifest_golden.json")


def test_manifest_is_unchanged():
    got = json.dumps(manifest(), indent=1, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        with open(GOLDEN, "w") as f:
            f.write(got)
    with open(GOLDEN) as f:
        assert got == f.read()
