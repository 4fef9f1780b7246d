"""Work order errors, named for what the caller does (the HTTP app maps each to a status)."""

from __future__ import annotations

from collector.errors import CollectorError


class WorkOrderError(CollectorError):
    """Base class of the work order package's errors."""


class NotSignedIn(WorkOrderError):
    """The sign-in link is unknown, expired or revoked: ask for a new one (401)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # "unknown", "expired", "revoked": the page says which


class OutsideArea(WorkOrderError):
    """The work order is outside the signed-in person's grid or township: refuse (403)."""


class NoSuchOrder(WorkOrderError):
    """No open work order with that id (404)."""


class BadStep(WorkOrderError):
    """The step request is malformed or not allowed in the order's state (400 / 409)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class UnknownWorker(WorkOrderError):
    """A worker id the registry does not list (the admin command's error)."""
