"""Collector errors, named for what the caller does."""

from __future__ import annotations


class CollectorError(Exception):
    """Base class of the collector's errors."""


class RetryLater(CollectorError):
    """A dependency is unavailable (InfluxDB down, timeout, 5xx): keep the data, try again."""


class TimedOut(RetryLater):
    """The dependency did not answer in time: it may be slow rather than down, and a
    smaller request may get through (the spool splits a batch that keeps timing out)."""


class Rejected(CollectorError):
    """The data itself is refused (4xx): send it to the dead letter, do not retry."""

    def __init__(self, message: str, bad_lines: list[int] | None = None) -> None:
        super().__init__(message)
        self.bad_lines = bad_lines or []
