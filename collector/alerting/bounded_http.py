"""An HTTP server for hostile clients: few threads, short deadlines, small bodies.

`http.server.ThreadingHTTPServer` spends one thread per connection for as long as the
client likes and reads whatever `Content-Length` says. Here:

- at most `max_connections` are served at once; one more is answered 503 at once by the
  accepting thread and closed (200 idle sockets cost `max_connections` threads, not 200);
- each connection has `request_timeout_s` in all, from accept to answer: a client that
  sends a byte every few seconds (slowloris) is cut off at the deadline by one reaper
  thread, not only when a single read stalls, and answered 408;
- `read_body` answers 400 for a missing, negative or garbled `Content-Length` and 413 for
  one above the limit, before reading a byte of the body;
- an unknown method is 405, and a handler's unexpected error is a bare 500 (logged, no
  traceback to the client), never a dropped connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

_BUSY_BODY = b'{"error": "too many connections, try again"}'
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
        + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)


class BoundedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int = 16, request_timeout_s: float = 10.0,
                 counters: Counter[str] | None = None) -> None:
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        # http_busy, http_timeouts, http_bad_length, http_too_large, http_errors
        self.counters: Counter[str] = Counter() if counters is None else counters
        self._slots = threading.BoundedSemaphore(max_connections)
        self._deadlines: dict[socket.socket, float] = {}
        self._expired: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        super().__init__(address, handler)
        self._reaper = threading.Thread(target=self._reap, name="http-deadlines", daemon=True)
        self._reaper.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.counters["http_busy"] += 1
            try:
                request.setblocking(False)
                request.send(BUSY)  # a fresh socket's send buffer holds it: never blocks
            except OSError:
                pass
            self.shutdown_request(request)
            return
        with self._lock:
            self._deadlines[request] = time.monotonic() + self.request_timeout_s
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(request)

    def _release(self, request: Any) -> None:
        with self._lock:
            self._deadlines.pop(request, None)
            self._expired.discard(request)
        self._slots.release()

    def _reap(self) -> None:
        while not self._closing.wait(0.25):
            now = time.monotonic()
            with self._lock:
                late = [s for s, t in self._deadlines.items() if t < now]
                for s in late:
                    del self._deadlines[s]
                self._expired.update(late)
            for s in late:
                self.counters["http_timeouts"] += 1
                with contextlib.suppress(OSError):
                    # the handler's read returns (EOF); writing still works, for the 408
                    s.shutdown(socket.SHUT_RD)

    def expired(self, request: Any) -> bool:
        """Whether the reaper cut `request` off (what was read of it is incomplete)."""
        with self._lock:
            return request in self._expired

    def server_close(self) -> None:
        self._closing.set()
        super().server_close()


class BoundedHandler(BaseHTTPRequestHandler):
    """Base handler: per-read timeout, 405 for other methods, 500 without a traceback."""

    server: BoundedHTTPServer
    max_body_bytes = 64 * 1024
    allowed_methods: tuple[str, ...] = ("POST",)
    # a request line without a version (HTTP/0.9) still gets a status line back
    default_request_version = "HTTP/1.0"

    def setup(self) -> None:
        super().setup()
        # each read, a little after the reaper's deadline for the whole (which answers 408)
        self.connection.settimeout(self.server.request_timeout_s + 1.0)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # any other method, whatever its spelling
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self.answer(405, {"error": f"method not allowed; use {', '.join(self.allowed_methods)}"},
                    {"Allow": ", ".join(self.allowed_methods)})

    def answer(self, code: int, body: dict[str, object],
               headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.close_connection = True

    def read_body(self) -> bytes | None:
        """The body, or None after answering 400 / 411 / 413 (nothing of it was read)."""
        if self.headers.get("Transfer-Encoding"):
            self.answer(411, {"error": "send a Content-Length, not Transfer-Encoding"})
            return None
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return b""
        raw = values[0].strip()
        if len(values) > 1 or not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            self.server.counters["http_bad_length"] += 1
            self.answer(400, {"error": f"bad Content-Length {values!r:.80}"})
            return None
        length = int(raw)
        if length > self.max_body_bytes:
            self.server.counters["http_too_large"] += 1
            self.answer(413, {"error": f"body of {length} bytes; at most "
                              f"{self.max_body_bytes}"})
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self._too_slow()  # the deadline cut it off, or the client went away
            return None
        return body

    def parse_request(self) -> bool:
        if self.server.expired(self.connection):  # request line cut off at the deadline
            self._too_slow()
            return False
        ok = super().parse_request()
        if ok and self.server.expired(self.connection):  # headers cut off
            self._too_slow()
            return False
        return ok

    def _too_slow(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.answer(408, {"error": f"request not complete within "
                              f"{self.server.request_timeout_s:g} s"})

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (TimeoutError, ConnectionError):
            self.close_connection = True
        except Exception:
            log.exception("HTTP handler failed on %s %s", self.command, self.path)
            self.server.counters["http_errors"] += 1
            with contextlib.suppress(OSError):
                self.answer(500, {"error": "internal error (logged)"})
            self.close_connection = True
