"""InfluxDB line protocol for readings and device status, built as plain strings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from airgrid.wire import COUNT_FIELDS, ENV_FIELDS, PM_FIELDS, Reading, Status

READINGS = "readings"
DEVICE_STATUS = "device_status"

_TAG_ESCAPE = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\="})


def escape_tag(value: str) -> str:
    return value.translate(_TAG_ESCAPE)


def escape_string_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tag_set(tags: Mapping[str, str]) -> str:
    """`,k=v,...` in key order (InfluxDB's preferred order), empty values left out."""
    return "".join(f",{k}={escape_tag(v)}" for k, v in sorted(tags.items()) if v)


def reading_line(device_tags: str, r: Reading) -> str:
    """One point: `readings,<tags> <fields> <ts ms>`; `device_tags` comes from tag_set()."""
    fields: list[str] = []
    for name in PM_FIELDS:
        v = getattr(r, name)
        if v is not None:
            fields.append(f"{name}={float(v)!r}")
    for name in COUNT_FIELDS:
        v = getattr(r, name)
        if v is not None:
            fields.append(f"{name}={int(v)}i")
    for name in ENV_FIELDS:
        v = getattr(r, name)
        if v is not None:
            fields.append(f"{name}={float(v)!r}")
    fields.append(f"seq={r.seq}i")
    fields.append(f"flags={escape_string_field(','.join(r.flags))}")
    fields.append(f"clock_synced={'true' if r.clock_synced else 'false'}")
    return f"{READINGS}{device_tags},sensor={escape_tag(r.sensor)} {','.join(fields)} {r.ts}"


def reading_lines(device_tags: str, readings: Iterable[Reading]) -> list[str]:
    return [reading_line(device_tags, r) for r in readings]


def status_line(device_tags: str, s: Status, ts_ms: int) -> str:
    fields = [
        f"online={'true' if s.state == 'online' else 'false'}",
        f"outbox_depth={s.outbox_depth}i",
        f"dropped={s.dropped}i",
        f"uptime_s={float(s.uptime_s)!r}",
        f"clock_synced={'true' if s.clock_synced else 'false'}",
        f"agent_version={escape_string_field(s.agent_version)}",
    ]
    fields += [f"err_{k}={int(v)}i" for k, v in sorted(s.sensor_errors.items())
               if k.isidentifier()]
    return f"{DEVICE_STATUS}{device_tags} {','.join(fields)} {ts_ms}"
