"""The sandbox's processes: one bitcoind and lightningd nodes in regtest, each in its own
directory on free ports, and a local HTTPS endpoint for LSPS5 webhooks.

Only pyln-client (a runtime dependency of clnlsp) and cryptography are used, not
pyln-testing: the sandbox runs wherever the plugin itself can run."""
from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import threading
import time

from pyln.client import LightningRpc, RpcError

RPC_USER, RPC_PASSWORD = "sandbox", "sandbox"


class SandboxError(Exception):
    """A step that did not do what it should; the message says what."""


def free_port() -> int:
    # Port 0: the kernel picks one nobody uses (other test runs share the machine).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check, timeout: float = 60, interval: float = 0.25):
    """check()'s first truthy value; SandboxError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SandboxError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


class Bitcoind:
    """bitcoind -regtest with its own datadir; bitcoin.conf there so that a plain
    `bitcoin-cli -datadir=DIR` (and lightningd's bcli) find the RPC port and password."""

    def __init__(self, datadir: str):
        self.datadir, self.rpcport = datadir, free_port()
        os.makedirs(datadir)
        with open(os.path.join(datadir, "bitcoin.conf"), "w") as f:
            f.write(f"regtest=1\nserver=1\nrpcuser={RPC_USER}\nrpcpassword={RPC_PASSWORD}\n"
                    # regtest has no fee estimates: sendtoaddress needs a fallback.
                    "fallbackfee=0.00001\ntxindex=1\n"
                    f"[regtest]\nrpcport={self.rpcport}\nrpcbind=127.0.0.1\n"
                    "rpcallowip=127.0.0.1\nlisten=0\n")
        self.proc = None

    @property
    def cli_line(self) -> str:
        return f"bitcoin-cli -datadir={self.datadir}"

    def cli(self, *args):
        out = subprocess.run(["bitcoin-cli", f"-datadir={self.datadir}", *map(str, args)],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise SandboxError(f"bitcoin-cli {' '.join(map(str, args))}: {out.stderr.strip()}")
        try:
            return json.loads(out.stdout)
        except ValueError:
            return out.stdout.strip()

    def start(self) -> None:
        log = open(os.path.join(self.datadir, "bitcoind.out"), "w")
        self.proc = subprocess.Popen(["bitcoind", f"-datadir={self.datadir}"],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise SandboxError("bitcoind exited:\n" + log_tail(log.name))
            try:
                return self.cli("getblockchaininfo")
            except SandboxError:
                return None
        wait_until("bitcoind to answer RPC", ready, timeout=60)
        self.cli("createwallet", "sandbox")

    def mine(self, blocks: int = 1) -> int:
        self.cli("generatetoaddress", blocks, self.cli("getnewaddress"))
        return self.height()

    def height(self) -> int:
        return self.cli("getblockcount")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.cli("stop")
            self.proc.wait(timeout=30)
        except (SandboxError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


# What pyln-testing gives its nodes for fast regtest runs: short CLTV deltas and
# watch time, gossip every second, bitcoind polled every second, no DNS.
REGTEST_OPTIONS = ["--developer", "--dev-fast-gossip", "--dev-bitcoind-poll=1",
                   "--cltv-delta=6", "--cltv-final=5", "--watchtime-blocks=5",
                   "--disable-dns", "--log-level=debug"]


class Node:
    """One lightningd in regtest with clnlsp loaded; `rpc` is a pyln LightningRpc."""

    def __init__(self, name: str, root: str, bitcoind: Bitcoind, plugin: str,
                 options: dict):
        self.name, self.dir, self.port = name, os.path.join(root, name), free_port()
        os.makedirs(self.dir)
        self.log = os.path.join(self.dir, "log")
        self.args = ["lightningd", f"--lightning-dir={self.dir}", "--network=regtest",
                     f"--alias={name}", f"--addr=127.0.0.1:{self.port}",
                     f"--bitcoin-datadir={bitcoind.datadir}", "--bitcoin-rpcconnect=127.0.0.1",
                     f"--bitcoin-rpcport={bitcoind.rpcport}", f"--bitcoin-rpcuser={RPC_USER}",
                     f"--bitcoin-rpcpassword={RPC_PASSWORD}", f"--log-file={self.log}",
                     *REGTEST_OPTIONS, f"--plugin={plugin}"]
        self.args += [f"--{k}" if v is None else f"--{k}={v}" for k, v in options.items()]
        self.rpc = LightningRpc(os.path.join(self.dir, "regtest", "lightning-rpc"))
        self.proc, self.id = None, None

    @property
    def cli_line(self) -> str:
        return f"lightning-cli --lightning-dir={self.dir} --network=regtest"

    def call(self, method: str, params=None):
        """A clnlsp (or any) command by name, as `lightning-cli -k` would send it."""
        return self.rpc.call(method, params or {})

    def start(self, timeout: float = 90) -> None:
        start_at = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        out = open(os.path.join(self.dir, "lightningd.out"), "a")
        # Own session: a Ctrl-C in the terminal reaches the sandbox only, which then
        # stops every node cleanly.
        self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

        def plugin_ready():
            if self.proc.poll() is not None:
                raise SandboxError(f"{self.name}: lightningd exited:\n"
                                   + log_tail(out.name) + log_tail(self.log))
            if not os.path.exists(self.log):
                return False
            with open(self.log, errors="replace") as f:
                f.seek(start_at)
                if "clnlsp ready" not in f.read():
                    return False
            try:
                return self.rpc.getinfo()
            except (OSError, RpcError):
                return False
        # The plugin logs "clnlsp ready" at the end of its init: its commands work then.
        self.id = wait_until(f"{self.name}'s lightningd and clnlsp to start", plugin_ready,
                             timeout=timeout)["id"]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.rpc.stop()
        except (OSError, RpcError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def connect(self, other: Node) -> None:
        self.rpc.connect(other.id, "127.0.0.1", other.port)

    def channels_with(self, other: Node) -> list:
        return self.rpc.listpeerchannels(other.id)["channels"]

    def connected_to(self, other: Node) -> bool:
        peers = self.rpc.listpeers(other.id)["peers"]
        return bool(peers) and peers[0]["connected"]


def make_certificates(directory: str) -> tuple:
    """A CA and a certificate for 127.0.0.1 it signed (like trustme, with cryptography):
    the LSP trusts the CA through `lsp-lsps5-ca-file`. Returns (ca, cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject, issuer, key, signer, *extensions):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=30)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clnlsp sandbox CA")])
    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False,
                 key_agreement=False, encipher_only=False, decipher_only=False)
    ca = certificate(ca_name, ca_name, ca_key, ca_key,
                     (x509.BasicConstraints(ca=True, path_length=0), True),
                     (x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                    **usage), True),
                     (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False))
    leaf = certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]),
                       ca_name, key, ca_key,
                       (x509.BasicConstraints(ca=False, path_length=None), True),
                       (x509.SubjectAlternativeName(
                           [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
                       (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
                       (x509.AuthorityKeyIdentifier.from_issuer_public_key(
                           ca_key.public_key()), False))
    files = {"ca.pem": ca.public_bytes(serialization.Encoding.PEM),
             "webhook.pem": leaf.public_bytes(serialization.Encoding.PEM),
             "webhook.key": key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())}
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    return tuple(os.path.join(directory, name) for name in files)


class WebhookReceiver:
    """What a wallet's push service would run: an HTTPS endpoint on 127.0.0.1 that
    answers 200 to every POST and keeps it (path, headers, body) in `posts`."""

    def __init__(self, directory: str):
        os.makedirs(directory)
        self.ca_file, cert, key = make_certificates(directory)
        self.posts = []
        receiver = self

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.posts.append((self.path, headers, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}{path}"

    def methods(self, path: str) -> list:
        return [json.loads(body)["method"] for p, _, body in self.posts if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
