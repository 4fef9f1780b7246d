"""Errors of the report: one base class; subclasses say what the caller does."""

from __future__ import annotations

from airgrid.errors import AirgridError


class ReportError(AirgridError):
    """Anything the report could not do."""


class SourceUnavailable(ReportError):
    """InfluxDB could not be queried (down, refused, bad credentials): retry later."""


class DeliveryFailed(ReportError):
    """A rendered report could not be delivered on one route (the others still run)."""


class RenderFailed(ReportError):
    """The report could not be drawn (e.g. the CJK font is not installed): fix the host."""
