"""A TCP relay that can cut a client off from its server: a network outage on demand.

Each edge agent under test talks to the broker through its own relay; `cut()` drops the
live connections and refuses new ones (as an unreachable broker would), `restore()`
accepts again on the same port.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

from orchestration.services import free_port


class NetCut:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self.cut_count = 0
        self._thread = threading.Thread(target=self._run, name=f"netcut-{self.port}", daemon=True)

    @property
    def is_cut(self) -> bool:
        return self._listener is None

    def start(self) -> None:
        self._listen()
        self._thread.start()

    def _listen(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        s.setblocking(False)
        with self._lock:
            self._listener = s

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            pairs, self._pairs = self._pairs, []
        if listener is not None:
            listener.close()
            self.cut_count += 1
        for a, b in pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def restore(self) -> None:
        if self.is_cut:
            self._listen()

    def stop(self) -> None:
        self._stop.set()
        self.cut()
        self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                listener = self._listener
                socks = [s for pair in self._pairs for s in pair]
            sel = selectors.DefaultSelector()
            try:
                if listener is not None:
                    # cut() may close it meanwhile, from another thread
                    with contextlib.suppress(ValueError, OSError):
                        sel.register(listener, selectors.EVENT_READ, None)
                for s in socks:
                    with contextlib.suppress(ValueError, OSError):
                        sel.register(s, selectors.EVENT_READ, None)
                ready = sel.select(0.1)
            finally:
                sel.close()
            for key, _ in ready:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is listener:
                    self._accept(listener)
                else:
                    self._relay(sock)

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            server = socket.create_connection(self.target, timeout=2)
        except OSError:
            client.close()
            return
        with self._lock:
            self._pairs.append((client, server))

    def _relay(self, sock: socket.socket) -> None:
        with self._lock:
            pair = next((p for p in self._pairs if sock in p), None)
        if pair is None:
            return
        other = pair[1] if sock is pair[0] else pair[0]
        try:
            data = sock.recv(65536)
            if data:
                other.sendall(data)
                return
        except OSError:
            pass
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)
        for s in pair:
            with contextlib.suppress(OSError):
                s.close()
