"""Alerting errors, named for what the caller does."""

from __future__ import annotations


class AlertingError(Exception):
    """Base class of the alerting package's errors."""


class DeliveryRetry(AlertingError):
    """The channel could not deliver now (timeout, 5xx, modem busy): try again later."""

    def __init__(self, message: str, after_s: float | None = None, counts: bool = True) -> None:
        super().__init__(message)
        self.after_s = after_s  # the channel knows when it is worth trying again
        self.counts = counts  # False for a rate limit: waiting is not a failed attempt


class DeliveryRejected(AlertingError):
    """The endpoint refused this message for good (4xx, bad number): dead-letter it."""


class UnknownAlert(AlertingError):
    """An acknowledgement named an alert id that does not exist."""


class NotResponsible(AlertingError):
    """The sender is known but is not among the alert's responsible people: refuse (403)."""
