"""The core's base error: every error the core raises derives from it."""

from __future__ import annotations


class AirgridError(Exception):
    """Base of the core's errors, so a caller can catch everything the core raises at once."""
