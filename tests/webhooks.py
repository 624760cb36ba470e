"""A real HTTPS webhook endpoint for the LSPS5 tests: a TLS server on 127.0.0.1 whose
certificate a test CA (trustme) issued, recording every request it gets."""
import http.server
import ssl
import threading
import time


class HttpsHooks:
    """`url(path)`, `ca_file`, `seen` [(method, path, headers, body)]; `status` and
    `delay` set how it answers."""

    def __init__(self, ca_dir):
        import trustme
        ca = trustme.CA()
        self.ca_file = str(ca_dir / "webhook-ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        self.seen, self.status, self.delay = [], 200, 0.0
        hooks = self

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hooks.seen.append((self.command, self.path,
                                   {k.lower(): v for k, v in self.headers.items()}, body))
                time.sleep(hooks.delay)
                self.send_response(hooks.status)
                if hooks.status == 302:
                    self.send_header("Location", "https://127.0.0.1:1/elsewhere")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}{path}"

    def methods(self, path_prefix: str = "/") -> list:
        import json
        return [json.loads(body)["method"] for _, path, _, body in self.seen
                if path.startswith(path_prefix)]

    def close(self) -> None:
        self.server.shutdown()
