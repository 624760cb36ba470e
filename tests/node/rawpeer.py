"""Talk raw LSPS0 to an LSP from a node running tests/node/plugins/fake_lsp.py."""
import itertools
import json

from pyln.testing.utils import wait_for


class RawPeer:
    def __init__(self, raw_node, lsp_node):
        self.raw = raw_node
        self.lsp = lsp_node
        self._ids = itertools.count()

    def send(self, payload):
        data = payload if isinstance(payload, bytes) else payload.encode()
        self.raw.rpc.sendcustommsg(self.lsp.info["id"], "9419" + data.hex())

    def received(self):
        return [json.loads(m["text"]) for m in self.raw.rpc.call("fakelsp-received")["messages"]]

    def ask(self, method, params):
        """Send one request and return the LSP's answer to it."""
        rid = f"q{next(self._ids)}"
        self.send(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}))

        def answer():
            return next((m for m in self.received() if m.get("id") == rid), None)
        wait_for(lambda: answer() is not None)
        return answer()
