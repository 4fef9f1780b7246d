"""Per-recipient rate limit: at most `limit` messages per `window` to one number."""

from __future__ import annotations

import threading
from collections import defaultdict, deque


class RateLimiter:
    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._sent: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def wait_s(self, recipient: str, now: float) -> float:
        """0 if a message may go now, else seconds until it may."""
        with self._lock:
            q = self._sent[recipient]
            while q and q[0] <= now - self.window_s:
                q.popleft()
            return 0.0 if len(q) < self.limit else q[0] + self.window_s - now

    def record(self, recipient: str, now: float) -> None:
        with self._lock:
            self._sent[recipient].append(now)
