"""The routing tree: which routes (and so receivers) an alert's labels lead to.

Depth-first like Alertmanager: the deepest matching child routes take the alert; a route
with `continue = true` lets its later siblings match too.
"""

from __future__ import annotations

from collections.abc import Mapping

from collector.alerting.config import Route
from collector.alerting.matchers import all_match


def match(route: Route, labels: Mapping[str, str]) -> list[Route]:
    if not all_match(route.matchers, labels):
        return []
    out: list[Route] = []
    for child in route.routes:
        found = match(child, labels)
        out.extend(found)
        if found and not child.continue_:
            break
    return out or [route]
