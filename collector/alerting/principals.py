"""Who acknowledges: per-person credentials and the authority over one alert.

Each person or app holds its own token (`[[alerting.ack.principals]]`), bound to a phone
number (a person in the contacts: grid worker, township officer, county bureau) and/or an
app id (the grid worker's app). A token names its holder; the holder's name, not what the
request claims, goes into the alert's history. An SMS names its holder by the sender's
number.

Authority over an alert: its device's grid worker and the chain above them, the officers
of its township and the county-wide ones (the contacts), plus any literal number or app
id its route and escalation levels notify.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

from collector.alerting.phones import e164_or_none


@dataclass(frozen=True)
class Principal:
    name: str
    token: str = field(repr=False)
    phone: str = ""  # E.164
    app_id: str = ""


@dataclass(frozen=True)
class Responsible:
    """The people and apps that may acknowledge one alert."""

    phones: frozenset[str]
    app_ids: frozenset[str]

    def allows(self, who: Principal) -> bool:
        phone = e164_or_none(who.phone) if who.phone else None
        return (phone is not None and phone in self.phones) or \
            (bool(who.app_id) and who.app_id in self.app_ids)


def by_token(principals: Iterable[Principal], given: str) -> Principal | None:
    """The principal holding `given`; every token is compared in constant time."""
    found = None
    raw = given.encode("utf-8", "surrogateescape")
    for p in principals:
        if hmac.compare_digest(raw, p.token.encode("utf-8", "surrogateescape")):
            found = p
    return found
