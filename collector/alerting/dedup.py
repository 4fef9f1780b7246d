"""Dedup stage: a group whose content has not changed is not sent again before its
`repeat_interval`, however often its alerts flap in between."""

from __future__ import annotations

from collector.alerting.model import Alert


def fingerprint(firing: list[Alert], resolved: list[Alert]) -> str:
    """What a receiver was told: which alerts were open (and at what level), which closed."""
    parts = [f"f{a.id}" for a in sorted(firing, key=lambda a: a.id)]
    parts += [f"r{a.id}" for a in sorted(resolved, key=lambda a: a.id)]
    return ",".join(parts)


def should_send(fp: str, last: tuple[int, str] | None, now_ms: int, repeat_ms: int) -> bool:
    if not fp:
        return False  # nothing open and nothing to report as resolved
    if last is None:
        return True
    last_ms, last_fp = last
    if fp != last_fp:
        # A subset of what was already said (an alert closed, none opened) is news only
        # to receivers that want resolutions, and those carry "r…" parts in fp.
        said = set(last_fp.split(","))
        return not set(fp.split(",")) <= said or now_ms >= last_ms + repeat_ms
    return now_ms >= last_ms + repeat_ms
