"""Errors of `airgrid-admin`, named for what the operator does."""

from __future__ import annotations


class AdminError(Exception):
    """Base class: the command did nothing and says why."""


class NotInitialised(AdminError):
    """The admin home has no CA yet: run `airgrid-admin ca init` first."""


class Conflict(AdminError):
    """The name is taken (a device or an account of that name exists)."""


class UnknownName(AdminError):
    """No device or account of that name in the registry."""
