"""Errors of the grafana package: one base class, subclasses named for what the caller does."""

from __future__ import annotations


class GrafanaError(Exception):
    """Base class of every error raised by the grafana package."""


class GenerateError(GrafanaError):
    """A dashboard cannot be generated from its source (fix the source)."""


class PushRejected(GrafanaError):
    """Grafana refused a request (bad token, bad payload): retrying will not help."""


class PushUnavailable(GrafanaError):
    """Grafana could not be reached or answered 5xx: retry later."""
