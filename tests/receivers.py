"""Channels on loopback: an HTTP server Apprise's JSON, form and XML webhooks post to."""

import http.server
import re
import threading
import time
from collections import Counter


class Receivers:
    """An HTTP server on loopback whose paths behave as channels do: ``/ok...`` takes every message,
    ``/refuse-N`` answers 500 to the first N, ``/slow`` answers after ``slow_seconds``."""

    def __init__(self, slow_seconds: float = 3.0):
        self.posts: list[tuple[str, str, bytes]] = []
        receivers = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receivers.posts.append((self.path, self.headers["Content-Type"], body))
                refusals = re.fullmatch(r"/refuse-(\d+)", self.path)
                seen = sum(path == self.path for path, _, _ in receivers.posts)
                if self.path == "/slow":
                    time.sleep(slow_seconds)
                status = 500 if refusals and seen <= int(refusals[1]) else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> Counter:
        return Counter(path for path, _, _ in self.posts)

    def stop(self):
        self.server.shutdown()
