"""Stand-ins for lightningd in runtime unit tests: a datastore, a node, a clock."""
import threading

import lsps.lsps1.service as lsps1_service
import lsps.orders.payment as P

MIN_CLTV = 10  # cltv-final plus the hold margin, as the LSPS1 runtime passes it
SECRET = "5e" * 32


def order_part(order, key, amount, cltv, **changes):
    """An honest part of an LSPS1/LSPS7 order's invoice, as lightningd parsed its onion."""
    order["bolt11"].setdefault("payment_secret", SECRET)
    fields = dict(key=key, amount_msat=amount, cltv_expiry=cltv, forward_msat=amount,
                  outgoing_cltv=cltv, total_msat=order["order_total_sat"] * 1000,
                  payment_secret=order["bolt11"]["payment_secret"])
    fields.update(changes)
    return P.Part(**fields)


class MemoryRpc:
    """The datastore calls of lightningd's RPC, in memory."""

    def __init__(self):
        self.data = {}

    def call(self, method, params):
        key = tuple(params["key"])
        if method == "datastore":
            self.data[key] = params["string"]
            return {}
        if method == "listdatastore":
            return {"datastore": [{"key": list(k), "string": v} for k, v in self.data.items()
                                  if k[:len(key)] == key]}
        if method == "deldatastore":
            self.data.pop(key, None)
            return {}
        raise NotImplementedError(method)


class Workers:
    """A worker pool that runs jobs when told to (run_all), on this thread."""

    def __init__(self):
        self.jobs = []
        self.lock = threading.Lock()

    def submit(self, fn, *args):
        with self.lock:
            self.jobs.append((fn, args))

    def run_all(self):
        while self.jobs:
            with self.lock:
                fn, args = self.jobs.pop(0)
            fn(*args)


class Dispatcher:
    def __init__(self):
        self.methods = {}

    def register(self, spec):
        self.methods[spec.name] = spec


def htlc_event(onion=None, peer_id=None, **htlc):
    """An htlc_accepted request as the services get it (lsps/node/events.py Htlc)."""
    from lsps.node.events import Htlc
    base = {"short_channel_id": "1x1x1", "id": 1, "payment_hash": "00" * 32,
            "amount_msat": 1000, "cltv_expiry": 500, "cltv_expiry_relative": 400}
    return Htlc.parse(onion or {}, {**base, **htlc}, peer_id)
