"""Verifying an airgrid webhook, for receivers (copy this function; it needs only stdlib).

Each POST carries `X-Airgrid-Signature: t=<unix seconds>,v1=<hex>` where
`v1 = HMAC-SHA256(secret, f"{t}." + raw body)`. Check the signature over the raw bytes
(before any JSON parsing), in constant time, and reject a timestamp older than a few
minutes so a captured request cannot be replayed. `X-Airgrid-Delivery` is the message
id: the same message retried carries the same id, so receivers can drop repeats.

    from collector.alerting.channels.webhook_verify import verify, SignatureError
    try:
        verify(SECRET, request.headers["X-Airgrid-Signature"], request.body)
    except SignatureError:
        return 401
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Airgrid-Signature"
DELIVERY_HEADER = "X-Airgrid-Delivery"


class SignatureError(ValueError):
    """The request is not from airgrid, was altered, or is too old."""


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: bytes, header: str, body: bytes, now_s: float | None = None,
           tolerance_s: float = 300.0) -> int:
    """Return the signed timestamp; raise SignatureError if anything is off."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
        if not parts["t"].strip().isascii():
            raise ValueError("not ASCII digits")
        given = parts["v1"]
    except (KeyError, ValueError) as exc:
        raise SignatureError(f"malformed {HEADER} header {header!r}") from exc
    now = time.time() if now_s is None else now_s
    if abs(now - ts) > tolerance_s:
        raise SignatureError(f"timestamp {ts} is more than {tolerance_s:.0f} s from now")
    expected = sign(secret, ts, body).split("v1=", 1)[1]
    # compare_digest takes str only when both are ASCII (TypeError otherwise): compare bytes
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape")):
        raise SignatureError("signature does not match the body")
    return ts
