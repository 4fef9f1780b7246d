"""InfluxDB line protocol for readings and device status, built as plain strings.

Escaping follows InfluxDB 1.x's line-protocol reference ("Special characters"): tag keys,
tag values and field keys escape commas, equals signs and spaces with a backslash; string
field values are double-quoted and escape double quotes and backslashes. Measurement
names would escape commas and spaces; ours are the constants below, which have neither.

What line protocol cannot carry is replaced, so that no string (device-controlled or
from the registry) can end a point early or start another one:
- a line feed (the one line separator of line protocol; the reference: "Line protocol
  does not support the newline character \n in tag or field values") becomes U+240A ␊,
  in tags and in string fields;
- a backslash in a tag key or value becomes U+29F5 ⧵: InfluxDB 1.x does not unescape
  `\\` in tags (it stores both characters) and refuses a tag value ending in a
  backslash, and 2.x/3.x parse it differently again, so no escaping is faithful;
- a lone surrogate (not encodable in UTF-8) becomes U+FFFD.
Every other character, control characters included (CR, tab, NUL, U+2028, …), is
stored as it is: tested against the real InfluxDB by tests/collector/test_hostile_ingest.
`safe_text` is the mapping; a string read back from InfluxDB equals `safe_text(sent)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

# Re-exported: collector/pipeline.py still takes READINGS from here.
from airgrid.measurements import DEVICE_STATUS
from airgrid.measurements import READINGS as READINGS
from airgrid.wire import COUNT_FIELDS, PM_FIELDS, Reading, Status

LINE_FEED_SIGN = "\u240a"  # ␊ SYMBOL FOR LINE FEED
BACKSLASH_SIGN = "\u29f5"  # ⧵ REVERSE SOLIDUS OPERATOR
_SURROGATE = re.compile("[\ud800-\udfff]")

_TAG_ESCAPE = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\=", "\n": LINE_FEED_SIGN,
                             "\\": BACKSLASH_SIGN})
_TAG_UNSAFE = str.maketrans({"\n": LINE_FEED_SIGN, "\\": BACKSLASH_SIGN})
_FIELD_ESCAPE = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": LINE_FEED_SIGN})


def _no_surrogates(value: str) -> str:
    return value if value.isascii() else _SURROGATE.sub("\ufffd", value)


def safe_text(value: str, tag: bool = True) -> str:
    """What InfluxDB stores for `value` written as a tag (or a string field)."""
    value = _no_surrogates(value)
    if tag:
        return value.translate(_TAG_UNSAFE)
    return value.replace("\n", LINE_FEED_SIGN)


def escape_tag(value: str) -> str:
    """A tag key, tag value or field key."""
    return _no_surrogates(value).translate(_TAG_ESCAPE)


def escape_string_field(value: str) -> str:
    """A string field value, quoted."""
    return '"' + _no_surrogates(value).translate(_FIELD_ESCAPE) + '"'


def tag_set(tags: Mapping[str, str]) -> str:
    """`,k=v,...` in key order (InfluxDB's preferred order), empty values left out."""
    return "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items()) if v)


# the field-grade agent's numeric status fields, in line order: name, integer?
_STATUS_NUMBERS = (("sensor_run_hours", False), ("outbox_bytes", True),
                   ("corrupt_resets", True), ("uncaptured", True), ("clock_hold_s", False))


def status_line(device_tags: str, s: Status, ts_ms: int) -> str:
    if s.state == "offline":
        # The Last Will carries no counters: zeros would read as a reset outbox.
        return f"{DEVICE_STATUS}{device_tags} online=false {ts_ms}"
    fields = [
        f"online={'true' if s.state == 'online' else 'false'}",
        f"outbox_depth={s.outbox_depth}i",
        f"dropped={s.dropped}i",
        f"uptime_s={float(s.uptime_s)!r}",
        f"clock_synced={'true' if s.clock_synced else 'false'}",
        f"agent_version={escape_string_field(s.agent_version)}",
    ]
    # The field-grade agent's additions: absent on the wire (omit_defaults) means the
    # default, and an absent value is an absent field, as for readings.
    if s.sensor_state:
        fields.append(f"sensor_state={escape_string_field(s.sensor_state)}")
    for name, integer in _STATUS_NUMBERS:
        if value := getattr(s, name):
            fields.append(f"{name}={int(value)}i" if integer else f"{name}={float(value)!r}")
    fields += [f"err_{k}={int(v)}i" for k, v in sorted(s.sensor_errors.items())
               if k.isidentifier()]
    return f"{DEVICE_STATUS}{device_tags} {','.join(fields)} {ts_ms}"


# --- the ingest hot path ---------------------------------------------------------------
# One f-string per reading straight from the decoded struct: no dict, no Point object, no
# per-field loop for the usual Plantower reading (all six PM values and six counts present).


def fields_of(r: Reading, extra: str = "") -> str:
    """Field set of a reading; `extra` is more `,key=value` fields (already encoded)."""
    p1, p25, p10, c1, c25, c10 = r.pm1_0, r.pm2_5, r.pm10, r.pm1_0_cf1, r.pm2_5_cf1, r.pm10_cf1
    n03, n05, n1, n25, n5, n10 = r.n0_3, r.n0_5, r.n1_0, r.n2_5, r.n5_0, r.n10
    if None not in (p1, p25, p10, c1, c25, c10, n03, n05, n1, n25, n5, n10):
        text = (f"pm1_0={p1!r},pm2_5={p25!r},pm10={p10!r},pm1_0_cf1={c1!r},"
                f"pm2_5_cf1={c25!r},pm10_cf1={c10!r},n0_3={n03}i,n0_5={n05}i,n1_0={n1}i,"
                f"n2_5={n25}i,n5_0={n5}i,n10={n10}i")
    else:
        parts = [f"{k}={float(v)!r}" for k, v in zip(
            PM_FIELDS, (p1, p25, p10, c1, c25, c10), strict=True) if v is not None]
        parts += [f"{k}={int(v)}i" for k, v in zip(
            COUNT_FIELDS, (n03, n05, n1, n25, n5, n10), strict=True) if v is not None]
        text = ",".join(parts)
    t, h = r.temperature_c, r.humidity_pct
    if t is not None:
        text += f",temperature_c={float(t)!r}"
    if h is not None:
        text += f",humidity_pct={float(h)!r}"
    flags = escape_string_field(",".join(r.flags)) if r.flags else '""'
    synced = "true" if r.clock_synced else "false"
    return f"{text}{extra},seq={r.seq}i,flags={flags},clock_synced={synced}".lstrip(",")


class MissingValue(LookupError):
    """A reading lacks one of the six PM values or six counts: it takes `fields_of`."""


#: numbers whose text is remembered, per kind (a county's readings repeat their values)
NUMBER_TEXTS_MAX = 8192


class _NumberText(dict[float | None, str]):
    """The text line protocol writes for a number, remembered: a dict lookup instead of
    formatting. Kept apart per kind, as 30 and 30.0 are one key with two texts; a float
    zero is not remembered (0.0 and -0.0 are one key with two texts)."""

    def __init__(self, text: Callable[[float], str], keep_zero: bool) -> None:
        super().__init__()
        self.text = text
        self.keep_zero = keep_zero

    def __missing__(self, v: float | None) -> str:
        if v is None:
            raise MissingValue
        text = self.text(v)
        if (v or self.keep_zero) and len(self) < NUMBER_TEXTS_MAX:
            self[v] = text
        return text


_FLOAT_TEXT = _NumberText(lambda v: repr(float(v)), keep_zero=False)
_INT_TEXT = _NumberText(lambda v: str(int(v)), keep_zero=True)
_NO_FLAGS = '""'


def reading_lines(tags: str, readings: Sequence[Reading]) -> list[str]:
    """Lines of one sensor's readings (`tags`: measurement and tags, `TagCache.reading`),
    exactly `f"{tags} {fields_of(r)} {r.ts}"` each: the usual Plantower reading (all six
    PM values and six counts) in one f-string, with the numbers' text remembered."""
    f, n = _FLOAT_TEXT, _INT_TEXT
    try:
        return [
            f"{tags} pm1_0={f[r.pm1_0]},pm2_5={f[r.pm2_5]},pm10={f[r.pm10]},"
            f"pm1_0_cf1={f[r.pm1_0_cf1]},pm2_5_cf1={f[r.pm2_5_cf1]},pm10_cf1={f[r.pm10_cf1]},"
            f"n0_3={n[r.n0_3]}i,n0_5={n[r.n0_5]}i,n1_0={n[r.n1_0]}i,n2_5={n[r.n2_5]}i,"
            f"n5_0={n[r.n5_0]}i,n10={n[r.n10]}i"
            f"{'' if r.temperature_c is None else f',temperature_c={f[r.temperature_c]}'}"
            f"{'' if r.humidity_pct is None else f',humidity_pct={f[r.humidity_pct]}'}"
            f",seq={r.seq}i,flags="
            f"{escape_string_field(','.join(r.flags)) if r.flags else _NO_FLAGS}"
            f",clock_synced={'true' if r.clock_synced else 'false'} {r.ts}"
            for r in readings]
    except MissingValue:
        return [f"{tags} {fields_of(r)} {r.ts}" for r in readings]
