"""The plugin as lightningd sees it at start: usage, manifest, names."""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN = os.path.join(ROOT, "plugin.py")


def run_plugin(stdin: bytes, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "LIGHTNINGD_PLUGIN"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, PLUGIN], input=stdin, capture_output=True,
                          env=env, timeout=30)


def test_outside_lightningd_prints_usage_and_exits_0():
    proc = run_plugin(b"")
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert "lsps0-listprotocols" in out and "lsp-service" in out


def manifest():
    req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "getmanifest",
                      "params": {"allow-deprecated-apis": False}}).encode() + b"\n\n"
    proc = run_plugin(req, {"LIGHTNINGD_PLUGIN": "1"})
    assert proc.returncode == 0, proc.stderr.decode()
    for chunk in proc.stdout.decode().split("\n\n"):
        if chunk.strip():
            msg = json.loads(chunk)
            if msg.get("id") == 1:
                return msg["result"]
    raise AssertionError("no manifest")


def test_names_do_not_clash_with_bundled_lsps_plugins():
    m = manifest()
    methods = [r["name"] for r in m["rpcmethods"]]
    options = [o["name"] for o in m["options"]]
    assert methods and options
    assert not any(n.startswith("lsps-") for n in methods)
    # protocol commands, and the operator's overview (lsp-, as the options)
    assert all(re.match(r"^(lsps\d-|asyncpay-|bolt12ext-|lsp-summary$)", n) for n in methods)
    assert all(o.startswith("lsp-") for o in options)
    assert not any(o.startswith("experimental-lsps") for o in options)


def test_custommsg_hook_is_filtered_to_37913():
    hooks = {h["name"]: h for h in manifest()["hooks"]}
    assert hooks["custommsg"]["filters"] == [37913]


def test_client_only_start_sets_no_feature_bits():
    # The test runner is this plugin's "parent" here, and has no --lsp-service.
    m = manifest()
    assert not m.get("featurebits")
    assert m["dynamic"] is True


def test_readme_test_command_is_what_ci_runs():
    readme = open(os.path.join(ROOT, "README.md")).read()
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    block = re.search(r"<!-- test-command -->\s*```sh\n(.+?)\n```", readme, re.S)
    assert block, "README must mark its test command"
    command = block.group(1).strip()
    assert command in ci


def test_service_start_sets_bit_729_as_lightningd_accepts_it():
    # Make the plugin's parent a process whose command line has --lsp-service,
    # as lightningd's has on an LSP (see lsps/node/startup.py).
    req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "getmanifest",
                      "params": {}}).encode() + b"\n\n"
    env = {k: v for k, v in os.environ.items()}
    env["LIGHTNINGD_PLUGIN"] = "1"
    proc = subprocess.run(["sh", "-c", f'"{sys.executable}" "{PLUGIN}"; true',
                           "lightningd", "--lsp-service"],
                          input=req, capture_output=True, env=env, timeout=30)
    m = next(json.loads(c) for c in proc.stdout.decode().split("\n\n")
             if c.strip() and json.loads(c).get("id") == 1)["result"]
    assert m["dynamic"] is False
    for kind in ("init", "node"):
        bits = m["featurebits"][kind]
        assert len(bits) % 2 == 0  # lightningd rejects odd-length hex
        assert int(bits, 16) == 1 << 729


def test_every_command_binds_positionally_as_lightning_cli_calls_it():
    # pyln inserts `plugin` and `request` at their index in the signature; a short
    # positional call must still bind them to themselves, never to a parameter.
    import importlib
    import inspect
    sys.path.insert(0, ROOT)
    module = importlib.import_module("plugin")
    plugin = module.plugin
    marker = object()
    checked = 0
    for name, method in plugin.methods.items():
        if name in ("init", "getmanifest") or not name.startswith(("lsps", "asyncpay", "bolt12")):
            continue
        params = [p for p in inspect.signature(method.func).parameters.values()
                  if p.name not in ("plugin", "request") and p.kind == p.POSITIONAL_OR_KEYWORD]
        required = sum(1 for p in params if p.default is p.empty)
        for count in range(required, len(params) + 1):
            values = [f"v{i}" for i in range(count)]
            bound = plugin._bind_pos(method.func, values, marker).arguments
            for i, p in enumerate(params[:count]):
                assert bound[p.name] == f"v{i}", (name, count, p.name)
            if "plugin" in bound:
                assert bound["plugin"] is plugin, (name, count)
            if "request" in bound:
                assert bound["request"] is marker, (name, count)
            checked += 1
    assert checked > 40


def test_no_two_test_files_share_a_name():
    """pytest imports test files by basename (rootdir-less "prepend" mode): two of one
    name in tests/unit and tests/node make the whole run fail to collect."""
    import collections
    tests = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    names = collections.Counter(f for d in ("unit", "node")
                                for f in os.listdir(os.path.join(tests, d))
                                if f.startswith("test_") and f.endswith(".py"))
    assert [n for n, c in names.items() if c > 1] == []


def test_the_readme_python_examples_run():
    readme = open(os.path.join(ROOT, "README.md")).read()
    blocks = readme.split("```python\n")[1:]
    assert blocks
    for block in blocks:
        exec(compile(block.split("```")[0], "README.md", "exec"), {})
