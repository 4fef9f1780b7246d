"""Label matchers shared by routes, silences and inhibition: `key = value` or `key =~ regex`.

A regex comes from people (a silence posted over HTTP, a config file), so it is compiled
and matched by RE2 (google-re2): time linear in the label's length whatever the pattern,
so no silence can stall the collector's loop with catastrophic backtracking. RE2 refuses
what it cannot run in linear time (backreferences, lookaround): such a matcher is a
ValueError naming it, at the door, like any other bad regex.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import re2

#: Bounds on what a person may write: a pattern longer than this, or one whose compiled
#: program exceeds RE2's default memory budget, is refused rather than run.
MAX_PATTERN_CHARS = 1024
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the error goes back to the caller, not to stderr


def compile_regex(pattern: str) -> Any:
    """An RE2 program for `pattern`; ValueError (with RE2's reason) if it is refused."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"longer than {MAX_PATTERN_CHARS} characters")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        why = exc.args[0] if exc.args else "not a valid RE2 pattern"
        raise ValueError(why.decode(errors="replace") if isinstance(why, bytes) else str(why)
                         ) from exc


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    regex: bool = False
    negate: bool = False
    program: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.regex and self.program is None:
            object.__setattr__(self, "program", compile_regex(self.value))

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = labels.get(self.name, "")
        ok = self.program.fullmatch(have) is not None if self.regex else have == self.value
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
        try:
            out.append(Matcher(name, body, regex, negate))
        except ValueError as exc:
            raise ValueError(f"matcher {name!r}: bad regex {body!r}: {exc}") from exc
    return tuple(out)


def all_match(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
