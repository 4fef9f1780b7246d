"""A throttling HTTP proxy in front of a real InfluxDB: a write of more than `slow_over`
lines is held `delay_s` before it is forwarded (the InfluxDB of a starved machine that
takes a big write but not within the client's timeout). It speaks HTTP for real and
forwards every request, late or not, as a slow server would still apply it."""

from __future__ import annotations

import gzip
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ThrottlingProxy:
    def __init__(self, upstream: str, slow_over: int, delay_s: float) -> None:
        self.upstream = upstream.rstrip("/")
        self.slow_over = slow_over
        self.delay_s = delay_s
        self.writes: list[int] = []  # lines per write request, in arrival order
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                text = gzip.decompress(body) if self.headers.get(
                    "Content-Encoding") == "gzip" else body
                lines = len([x for x in text.split(b"\n") if x.strip()])
                with proxy._lock:
                    proxy.writes.append(lines)
                if lines > proxy.slow_over:
                    time.sleep(proxy.delay_s)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "content-encoding", "authorization")}
                req = urllib.request.Request(proxy.upstream + self.path, data=body,
                                             headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        status, answer = resp.status, resp.read()
                except urllib.error.HTTPError as exc:
                    status, answer = exc.code, exc.read()
                except OSError as exc:  # upstream gone (stopped at the end of a test)
                    status, answer = 503, str(exc).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the client gave up waiting: the write was applied all the same

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
