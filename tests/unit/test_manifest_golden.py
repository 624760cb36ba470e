"""The whole getmanifest reply, frozen: every option (name, default, type,
description), every command (name, usage, description), hook, subscription and
notification. A change of layout must leave it the same; a change of interface
updates the golden file on purpose (`UPDATE_GOLDEN=1`). Lists are compared by
name: the order of declaration is not part of the interface."""
import json
import os

from test_plugin_manifest import manifest

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures",
                      "manifest_golden.json")


def canonical(m: dict) -> dict:
    out = dict(m)
    for key in ("options", "rpcmethods", "hooks"):
        out[key] = sorted(m[key], key=lambda entry: entry["name"])
    out["subscriptions"] = sorted(m["subscriptions"])
    return out


def test_manifest_is_unchanged():
    got = json.dumps(canonical(manifest()), indent=1, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        with open(GOLDEN, "w") as f:
            f.write(got)
    with open(GOLDEN) as f:
        assert got == f.read()
