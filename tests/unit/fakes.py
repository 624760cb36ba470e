"""Stand-ins for lightningd in runtime unit tests: a datastore, a node, a clock."""
import threading


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
