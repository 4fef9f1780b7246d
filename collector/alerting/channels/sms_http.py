"""What the SMS channels that speak HTTP share: the per-recipient limit checked before a
request, one POST whose answer is returned whatever its status (providers put their error
codes in the body of 4xx answers too), and the verdict on a status the body cannot explain."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from collector.alerting.channels.rate_limit import RateLimiter
from collector.alerting.errors import DeliveryRejected, DeliveryRetry


def admit(limiter: RateLimiter, recipient: str) -> float:
    """The time of this attempt; DeliveryRetry (not counted as a failure) while the
    recipient's limit is reached."""
    now = time.time()
    wait = limiter.wait_s(recipient, now)
    if wait > 0:
        raise DeliveryRetry(f"rate limit for {recipient}", after_s=wait, counts=False)
    return now


def post(provider: str, url: str, body: bytes, headers: dict[str, str],
         timeout_s: float) -> tuple[int, bytes]:
    """(status, body) of one POST; DeliveryRetry when no answer came at all."""
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise DeliveryRetry(f"{provider} {url}: {exc}") from exc


def unexplained(status: int, what: str) -> DeliveryRetry | DeliveryRejected:
    """An answer without the provider's verdict: server trouble and throttling are worth
    another try, anything else will be refused again."""
    if status >= 500 or status in (408, 429):
        return DeliveryRetry(what)
    return DeliveryRejected(what)
