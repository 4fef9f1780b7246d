"""Label matchers shared by routes, silences and inhibition: `key = value` or `key =~ regex`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    regex: bool = False
    negate: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = labels.get(self.name, "")
        ok = re.fullmatch(self.value, have) is not None if self.regex else have == self.value
        return ok != self.negate


def parse(spec: Mapping[str, object]) -> tuple[Matcher, ...]:
    """{"township": "城关镇", "rule": "~pm25_.*", "grid": "!g3"}: "~" regex, "!" not equal."""
    out = []
    for name, raw in spec.items():
        if not isinstance(raw, str):
            raise ValueError(f"matcher {name!r}: expected a string, got {raw!r}")
        negate = raw.startswith("!")
        body = raw[1:] if negate else raw
        regex = body.startswith("~")
        body = body[1:] if regex else body
        if regex:
            try:
                re.compile(body)
            except re.error as exc:
                raise ValueError(f"matcher {name!r}: bad regex {body!r}: {exc}") from exc
        out.append(Matcher(name, body, regex, negate))
    return tuple(out)


def all_match(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
