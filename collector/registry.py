"""Device registry: a YAML or CSV file of devices, validated precisely, reloaded on change.

YAML: `devices:` is a list of tables. CSV: one row per device with the same column names;
`calibration` is `formula;key=value;...`, `contacts` is `name:phone|name:phone` (the first
is the grid worker) and `technician` is `name:phone` (who maintains the sensor: the
maintenance alerts go there).
Registry fields become InfluxDB tags (site, township, grid); calibration adds corrected
fields beside the raw ones.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from itertools import islice, repeat
from operator import itemgetter, methodcaller
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import yaml

from airgrid.interpreter_lock import sharing
from airgrid.wire import DEVICE_ID_RE
from collector import calibration
from collector.calibration import Calibration
from collector.errors import CollectorError
from collector.long_lived_heap import building

log = logging.getLogger(__name__)

PHONE_RE = re.compile(r"^\+\d{6,15}$")  # E.164: international form, e.g. +86…
COLUMNS = ("id", "name", "site", "township", "grid", "lat", "lon", "sensor", "link",
           "calibration", "contacts", "technician")
REQUIRED = ("id", "site", "township", "grid", "lat", "lon")
SENSORS = ("pms5003", "pmsa003i", "sds011")
#: how the device reaches the broker; "cellular" gets the deadman rule's `cellular_grace`
LINKS = ("wired", "wifi", "cellular")


class RegistryError(CollectorError):
    """The registry file is wrong; the message names file, entry and key."""


# Registry entries are named tuples: 100,000 of them are made at each start-up, and a
# tuple is made in C from its fields (a frozen dataclass sets each through
# `object.__setattr__`: 0.3 s more at start-up, and a dict of ~460 bytes per device).
class Contact(NamedTuple):
    name: str
    phone: str


class Device(NamedTuple):
    id: str
    name: str
    site: str
    township: str  # 乡镇
    grid: str  # 网格
    lat: float
    lon: float
    sensor: str
    calibration: Calibration | None
    contacts: tuple[Contact, ...]
    technician: Contact | None = None  # maintains the sensor; gets maintenance alerts
    link: str = "wired"

    def tags(self) -> dict[str, str]:
        return {"site": self.site, "township": self.township, "grid": self.grid}


def _text(raw: Mapping[str, Any], key: str, where: str, required: bool) -> str:
    value = raw.get(key)
    if type(value) is str and value:  # the usual case (every CSV cell): no checks to run
        return value.strip()
    if value is None or value == "":
        if required:
            raise RegistryError(f"{where}.{key}: required, expected a non-empty string")
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise RegistryError(f"{where}.{key}: expected a string, got {value!r}")
    return str(value).strip()


def _tag(raw: Mapping[str, Any], key: str, where: str) -> str:
    """A value that becomes an InfluxDB tag: no control character, line or paragraph
    separator, and no backslash (line protocol cannot carry a tag value ending in one,
    and InfluxDB versions read one inside differently)."""
    value = _text(raw, key, where, True)
    if _NOT_A_TAG.search(value) is None:  # one scan in C; the loop below names the culprit
        return value
    for i, ch in enumerate(value):
        if ch == "\\" or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            raise RegistryError(
                f"{where}.{key}: character {i + 1} is U+{ord(ch):04X} "
                f"{unicodedata.name(ch, 'CONTROL CHARACTER')}, which cannot be an InfluxDB "
                f"tag; got {value!r}")
    return value


#: what `_tag` refuses, as one character class: control characters (Cc), surrogates (Cs),
#: the line and paragraph separators (Zl, Zp) and the backslash
_NOT_A_TAG = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\\\\]")


def _number(raw: Mapping[str, Any], key: str, where: str, lo: float, hi: float) -> float:
    value = raw.get(key)
    try:
        number = float(value) if not isinstance(value, bool) else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = None
    if number is None or not lo <= number <= hi:
        raise RegistryError(f"{where}.{key}: expected a number in {lo}..{hi}, got {value!r}")
    return number


def _technician(raw: Any, where: str) -> Contact | None:
    if raw in (None, ""):
        return None
    if isinstance(raw, list):
        raise RegistryError(f"{where}.technician: expected one {{name, phone}}, got a list")
    found = _contacts([raw] if isinstance(raw, Mapping) else raw, where, "technician")
    if len(found) != 1:
        raise RegistryError(f"{where}.technician: expected one name:phone, got {raw!r}")
    return found[0]


def _contacts(raw: Any, where: str, key: str = "contacts") -> tuple[Contact, ...]:
    if raw in (None, ""):
        return ()
    if isinstance(raw, str):  # CSV: name:phone|name:phone
        fast = []
        for part in raw.split("|"):
            name, _, phone = part.partition(":")
            name, phone = name.strip(), phone.strip()
            if not name or PHONE_RE.match(phone) is None:
                break  # the checks below say what is wrong, and where
            fast.append(Contact(name, phone))
        else:
            return tuple(fast)
        items: list[Any] = []
        for part in raw.split("|"):
            name, _, phone = part.partition(":")
            items.append({"name": name.strip(), "phone": phone.strip()})
        raw = items
    if not isinstance(raw, list):
        raise RegistryError(f"{where}.{key}: expected a list of {{name, phone}}, got {raw!r}")
    out = []
    for i, c in enumerate(raw):
        w = f"{where}.{key}" if key == "technician" else f"{where}.{key}[{i}]"
        if not isinstance(c, Mapping):
            raise RegistryError(f"{w}: expected a table with name and phone, got {c!r}")
        name = _text(c, "name", w, True)
        phone = _text(c, "phone", w, True)
        if not PHONE_RE.match(phone):
            raise RegistryError(f"{w}.phone: expected international form like +8613800000000, "
                                f"got {phone!r}")
        out.append(Contact(name, phone))
    return tuple(out)


#: CSV calibration cells already parsed: a county has a few formulas for many devices
_CALIBRATIONS: dict[str, Calibration] = {}


def _calibration(raw: Any, where: str) -> Calibration | None:
    if raw in (None, ""):
        return None
    if isinstance(raw, str):
        known = _CALIBRATIONS.get(raw)
        if known is None:
            known = _calibration_cell(raw, where)
            if len(_CALIBRATIONS) < 10_000:
                _CALIBRATIONS[raw] = known
        return known
    try:
        return calibration.parse(raw, f"{where}.calibration")
    except ValueError as exc:
        raise RegistryError(str(exc)) from exc


def _calibration_cell(raw: str, where: str) -> Calibration:
    """A CSV cell: `formula;key=value;...`."""
    formula, *pairs = [p.strip() for p in raw.split(";") if p.strip()]
    table: dict[str, Any] = {"formula": formula}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise RegistryError(f"{where}.calibration: expected key=value, got {pair!r}")
        try:
            table[key.strip()] = float(value)
        except ValueError as exc:
            raise RegistryError(f"{where}.calibration.{key.strip()}: expected a number, "
                                f"got {value!r}") from exc
    try:
        return calibration.parse(table, f"{where}.calibration")
    except ValueError as exc:
        raise RegistryError(str(exc)) from exc


def parse_device(raw: Mapping[str, Any], where: str) -> Device:
    unknown = set(raw) - set(COLUMNS)
    if unknown:
        raise RegistryError(f"{where}: unknown key {sorted(unknown)[0]!r}, expected {COLUMNS}")
    device_id = _text(raw, "id", where, True)
    if not DEVICE_ID_RE.match(device_id):
        raise RegistryError(f"{where}.id: expected a device id matching "
                            f"{DEVICE_ID_RE.pattern}, got {device_id!r}")
    sensor = _text(raw, "sensor", where, False) or "pms5003"
    if sensor not in SENSORS:
        raise RegistryError(f"{where}.sensor: expected one of {SENSORS}, got {sensor!r}")
    link = _text(raw, "link", where, False) or "wired"
    if link not in LINKS:
        raise RegistryError(f"{where}.link: expected one of {LINKS}, got {link!r}")
    return Device(
        id=device_id, link=link, name=_text(raw, "name", where, False),
        site=_tag(raw, "site", where), township=_tag(raw, "township", where),
        grid=_tag(raw, "grid", where),
        lat=_number(raw, "lat", where, -90, 90), lon=_number(raw, "lon", where, -180, 180),
        sensor=sensor, calibration=_calibration(raw.get("calibration"), where),
        contacts=_contacts(raw.get("contacts"), where),
        technician=_technician(raw.get("technician"), where),
    )


def _csv_row_fast(row: list[str], ix: tuple[int, ...], where: str) -> Device | None:
    """The usual CSV row, checked without the generic path's per-key calls; None when
    any check fails, so that `parse_device` finds and words the error. `ix`: the index
    of each of COLUMNS in the header (-1 when absent). Yields what `parse_device` does."""
    n = len(row)
    (i_id, i_name, i_site, i_town, i_grid, i_lat, i_lon, i_sensor, i_link, i_cal, i_con,
     i_tech) = ix
    device_id = row[i_id].strip() if 0 <= i_id < n else ""
    if not device_id or DEVICE_ID_RE.match(device_id) is None:
        return None
    tags = []
    for i in (i_site, i_town, i_grid):
        cell = row[i] if 0 <= i < n else ""
        if not cell:
            return None
        cell = cell.strip()
        if _NOT_A_TAG.search(cell) is not None:
            return None
        tags.append(cell)
    try:
        lat = float(row[i_lat]) if 0 <= i_lat < n else None
        lon = float(row[i_lon]) if 0 <= i_lon < n else None
    except ValueError:
        return None
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    sensor = (row[i_sensor].strip() if 0 <= i_sensor < n else "") or "pms5003"
    link = (row[i_link].strip() if 0 <= i_link < n else "") or "wired"
    if sensor not in SENSORS or link not in LINKS:
        return None
    try:
        cal = _calibration(row[i_cal] if 0 <= i_cal < n else None, where)
        contacts = _contacts(row[i_con] if 0 <= i_con < n else None, where)
        technician = _technician(row[i_tech] if 0 <= i_tech < n else None, where)
    except RegistryError:
        return None
    return Device(id=device_id, link=link, name=row[i_name].strip() if 0 <= i_name < n else "",
                  site=tags[0], township=tags[1], grid=tags[2], lat=lat, lon=lon,
                  sensor=sensor, calibration=cal, contacts=contacts, technician=technician)


def _contact_cells(cells: list[str]) -> list[tuple[Contact, ...]] | None:
    """The contacts of each CSV cell, checked over the whole column when every cell is
    one `name:phone` (the usual registry); else cell by cell. None when any is wrong."""
    if not all(cells) or any(map(methodcaller("__contains__", "|"), cells)):
        try:
            return list(map(_contacts, cells, repeat("")))
        except RegistryError:
            return None
    parts = list(map(methodcaller("partition", ":"), cells))
    names = list(map(str.strip, map(itemgetter(0), parts)))
    phones = list(map(str.strip, map(itemgetter(2), parts)))
    if not all(names) or not all(map(PHONE_RE.match, phones)):
        return None
    made = map(tuple.__new__, repeat(Contact), zip(names, phones, strict=True))
    return list(zip(made))  # zip of one iterable: 1-tuples


def _csv_rows_bulk(rows: list[list[str]], ix: tuple[int, ...]) -> list[Device] | None:
    """The devices of many usual CSV rows, each check made once over a whole column
    (`map`, `set`, `join`, numpy: loops in C) instead of once per row; None when any
    check fails or a row is short, so the row-wise path finds and words the problem
    (it does what `_csv_row_fast` does). 100,000 rows: about half the row-wise time."""
    (i_id, i_name, i_site, i_town, i_grid, i_lat, i_lon, i_sensor, i_link, i_cal, i_con,
     i_tech) = ix
    n = len(rows)
    if not n or min(map(len, rows)) <= max(ix):
        return None  # a short row: its missing cells are worded row by row

    def column(i: int) -> list[str]:
        return [""] * n if i < 0 else list(map(itemgetter(i), rows))

    ids = list(map(str.strip, column(i_id)))
    if not all(map(DEVICE_ID_RE.match, ids)) or len(set(ids)) != n:
        return None
    tags = []
    for i in (i_site, i_town, i_grid):
        raw = column(i)
        if not all(raw):
            return None
        cells = list(map(str.strip, raw))
        if _NOT_A_TAG.search(",".join(cells)) is not None:  # "," is no culprit
            return None
        tags.append(cells)
    try:
        lat = list(map(float, column(i_lat)))
        lon = list(map(float, column(i_lon)))
    except ValueError:
        return None
    la, lo = np.array(lat), np.array(lon)
    if not ((la >= -90) & (la <= 90) & (lo >= -180) & (lo <= 180)).all():  # NaN: False
        return None
    sensor = list(map(str.strip, column(i_sensor)))
    link = list(map(str.strip, column(i_link)))
    if not set(sensor) <= _SENSOR_CELLS or not set(link) <= _LINK_CELLS:
        return None
    try:
        cals = {cell: _calibration(cell, "") for cell in set(column(i_cal))}
        contacts = _contact_cells(column(i_con))
        tech_cells = column(i_tech)
        technician = (list(map(_technician, tech_cells, repeat(""))) if any(tech_cells)
                      else [None] * n)
    except RegistryError:
        return None
    if contacts is None:
        return None
    by_field: dict[str, list[Any]] = {
                "id": ids, "name": list(map(str.strip, column(i_name))), "site": tags[0],
                "township": tags[1], "grid": tags[2], "lat": lat, "lon": lon,
                "sensor": [c or "pms5003" for c in sensor],
                "calibration": list(map(cals.__getitem__, column(i_cal))),
                "contacts": contacts, "technician": technician,
                "link": [c or "wired" for c in link]}
    # each Device made in C from its fields: `Device(...)` is a Python call per row
    return list(map(tuple.__new__, repeat(Device),
                    zip(*(by_field[f] for f in Device._fields), strict=True)))


_SENSOR_CELLS = frozenset(("", *SENSORS))
_LINK_CELLS = frozenset(("", *LINKS))


def _yaml_entries(path: Path, text: str) -> list[tuple[str, Mapping[str, Any]]]:
    try:
        # libyaml's loader when the system has it: the same documents, several times faster
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, Mapping) or not isinstance(doc.get("devices"), list):
        raise RegistryError(f"{path}: devices: expected a list of device tables")
    out = []
    for i, entry in enumerate(doc["devices"]):
        if not isinstance(entry, Mapping):
            raise RegistryError(f"{path}: devices[{i}]: expected a table, got {entry!r}")
        out.append((f"{path}: devices[{i}]", entry))
    return out


def decode_utf8(path: Path, raw: bytes) -> str:
    """The file's text; a file that is not UTF-8 is refused, not guessed at: a wrong guess
    would put garbled township names into every alert. Excel in China saves "CSV" as GBK."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        try:
            raw.decode("gb18030")
            looks = "it looks like GBK/GB18030 (what Excel in China writes for CSV)"
        except UnicodeDecodeError:
            looks = "its encoding is unknown"
        raise RegistryError(
            f"{path}: line {line}: not UTF-8 (byte 0x{raw[exc.start]:02x}); {looks}. Save it "
            "as UTF-8: in Excel 另存为 → \"CSV UTF-8 (逗号分隔)\" / \"CSV UTF-8 (Comma "
            "delimited)\", or `iconv -f GB18030 -t UTF-8 FILE > NEW`") from exc


class RegistryParser:
    """Parses registry files, remembering the CSV rows of its last good parse: a reload
    parses only the rows that changed (a row identical to one parsed before is the same
    device), so editing one device of 100,000 costs a read of the file, not a parse."""

    def __init__(self) -> None:
        self._header: list[str] = []
        self._rows: dict[str, Device] = {}  # a row's cells joined by U+001F → its device

    def load(self, path: Path, *, beside_ingest: bool = False) -> dict[str, Device]:
        """Device id → Device; RegistryError on the first problem, naming where it is.
        `beside_ingest`: a reload on a thread of its own, which gives the interpreter
        lock away every few rows (`sharing`); a start-up parse has nobody to give it to,
        and each give-away costs ~50 µs (0.35 s per 100,000 rows)."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RegistryError(f"{path}: cannot read: {exc}") from exc
        text = decode_utf8(path, data)
        if path.suffix.lower() == ".csv":
            return self._csv(path, text, beside_ingest)
        devices: dict[str, Device] = {}
        for where, raw in _yaml_entries(path, text):
            device = parse_device(raw, where)
            if device.id in devices:
                raise RegistryError(f"{where}.id: duplicate device id {device.id!r}")
            devices[device.id] = device
        return devices

    def _csv(self, path: Path, text: str, beside_ingest: bool) -> dict[str, Device]:
        reader = csv.reader(io.StringIO(text))
        header = next(reader, [])
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise RegistryError(f"{path}: header: missing column {missing[0]!r}, "
                                f"expected columns {COLUMNS}")
        known = self._rows if header == self._header else {}
        rows: dict[str, Device] = {}
        devices: dict[str, Device] = {}
        # a column outside COLUMNS is an error the generic path words (on the first row)
        ix = (tuple(header.index(c) if c in header else -1 for c in COLUMNS)
              if set(header) - {""} <= set(COLUMNS) else None)
        if ix is not None:
            bulk = self._csv_bulk(header, reader, known, ix, beside_ingest)
            if bulk is not None:
                return bulk
            reader = csv.reader(io.StringIO(text))  # row by row, to word the problem
            next(reader)
        for row in sharing(reader) if beside_ingest else reader:
            if not row:  # a blank line (csv.DictReader skips them too)
                continue
            key = "\x1f".join(row)
            device = known.get(key)
            if device is None:
                # the reader's line_num is the line of the row just read (header: line 1);
                # a short row lacks the last keys, a long row's extra cells are dropped,
                # as csv.DictReader did
                where = f"{path}: line {reader.line_num}"
                device = _csv_row_fast(row, ix, where) if ix is not None else None
                if device is None:
                    device = parse_device(
                        {k: v for k, v in zip(header, row, strict=False) if k}, where)
            if device.id in devices:
                raise RegistryError(f"{path}: line {reader.line_num}.id: duplicate device id "
                                    f"{device.id!r}")
            devices[device.id] = device
            rows[key] = device
        self._header, self._rows = header, rows
        return devices

    def _csv_bulk(self, header: list[str], reader: Iterator[list[str]],
                  known: dict[str, Device], ix: tuple[int, ...],
                  beside_ingest: bool) -> dict[str, Device] | None:
        """The usual file: the rows not parsed before checked column by column
        (`_csv_rows_bulk`), a few at a time: each check is a loop in C that keeps the
        interpreter lock to itself, so a chunk is checked in well under a millisecond
        and, beside ingest, the lock given away after each. None when anything is wrong,
        for the row-wise path to word."""
        devices: dict[str, Device] = {}
        by_key: dict[str, Device] = {}
        size = BULK_ROWS_BESIDE_INGEST if beside_ingest else BULK_ROWS
        chunks: Iterator[list[list[str]]] = iter(lambda: list(islice(reader, size)), [])
        for chunk in sharing(chunks, 1) if beside_ingest else chunks:
            rows = [row for row in chunk if row]  # blank lines skipped, as row by row
            keys = list(map("\x1f".join, rows))
            found: list[Device | None] = list(map(known.get, keys))
            new_at = [i for i, d in enumerate(found) if d is None]
            if new_at:
                made = _csv_rows_bulk([rows[i] for i in new_at], ix)
                if made is None:
                    return None
                for i, d in zip(new_at, made, strict=True):
                    found[i] = d
            done = cast("list[Device]", found)  # every None was filled
            before = len(devices)
            # keyed in C (a device is a tuple, its id first)
            devices.update(zip(map(itemgetter(0), done), done, strict=True))
            if len(devices) != before + len(done):
                return None  # a duplicate id, worded with its line
            by_key.update(zip(keys, done, strict=True))
        self._header, self._rows = header, by_key
        return devices


#: rows checked together by the column-wise path: 256 is the fastest (100,000 rows: 0.9 s
#: of CPU, 1.2 s all at once, 1.4 s by 16); beside ingest 16, so the interpreter lock is
#: given away every ~0.1 ms (a message's handling waited 0.4 ms on average, 1.1 ms by 32)
BULK_ROWS = 256
BULK_ROWS_BESIDE_INGEST = 16


def load(path: Path) -> dict[str, Device]:
    """Device id → Device; RegistryError on the first problem, naming where it is."""
    return RegistryParser().load(path)


def changed_ids(old: dict[str, Device], new: dict[str, Device]) -> list[str]:
    """Devices added, edited or removed from `old` to `new` (an unchanged CSV row is the
    same object after a reload, `RegistryParser` keeps it; a YAML entry is compared)."""
    out = [d for d, dev in sharing(new.items(), 256)
           if (was := old.get(d)) is not dev and was != dev]
    out += [d for d in sharing(old, 256) if d not in new]
    return out


class RegistryWatcher:
    """Holds the current registry; `poll()` reloads when the file changed. A bad new file
    is reported (file and line, counted in `reload_errors`) and the last good registry
    stays in force.

    A reload is parsed on a thread of its own (`background`), so the pipeline's thread,
    which calls `poll()`, only swaps the finished registry in: ingest does not wait for a
    parse. Only one parse runs at a time; a file changed during a parse is parsed again
    after it.
    """

    def __init__(self, path: Path | None, check_interval_s: float = 2.0, *,
                 devices: dict[str, Device] | None = None,
                 parser: RegistryParser | None = None, background: bool = True) -> None:
        self.path = path
        self.check_interval_s = check_interval_s
        self.background = background
        self.devices: dict[str, Device] = {}
        self.reload_errors = 0
        self.generation = 0  # bumps on every successful (re)load
        self.last_parse_s = 0.0  # how long the last (re)load took to parse
        self._parser = parser if parser is not None else RegistryParser()
        #: run on the parse thread with each good parse (e.g. what the engine and the
        #: county map need, worked out there); its result is `prepared` after the swap
        self.prepare: Callable[[dict[str, Device]], object] | None = None
        self.prepared: object = None
        self._stamp: tuple[int, int] | None = None
        self._next_check = 0.0
        self._worker: threading.Thread | None = None
        # set by the worker, taken by poll(): the parsed registry or why it was refused
        self._done: dict[str, Device] | RegistryError | None = None
        self._prepared: object = None
        #: ids added, edited or removed by the last reload (worked out on the parse thread)
        self.changed: list[str] = []
        self._changed: list[str] = []
        if path is not None:
            self._stamp = self._stat()
            # a bad file at start-up stops start-up
            self.devices = devices if devices is not None else self._parser.load(path)
            self.generation = 1

    def _stat(self) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _parse(self) -> None:
        assert self.path is not None
        started = time.perf_counter()
        result: dict[str, Device] | RegistryError
        try:
            # no cycle collection while the new registry is built (a full one walked its
            # million new objects for 100–400 ms, holding the interpreter from ingest),
            # frozen after: it lives until the next reload
            with building():
                result = self._parser.load(self.path, beside_ingest=self.background)
                self._changed = changed_ids(self.devices, result)
                self._prepared = self.prepare(result) if self.prepare is not None else None
        except RegistryError as exc:
            result = exc
        except Exception as exc:  # a parser bug must not end the thread silently
            log.exception("registry parse failed")
            result = RegistryError(f"{self.path}: {type(exc).__name__}: {exc}")
        self.last_parse_s = time.perf_counter() - started
        self._done = result

    @property
    def parsing(self) -> bool:
        """A reload is being parsed (or waits to be swapped in)."""
        return self._worker is not None

    def poll(self) -> bool:
        """True when a changed file was loaded (swapped in on the caller's thread)."""
        if self.path is None:
            return False
        if self._worker is not None:
            if self._done is None:
                return False
            self._worker.join()
            self._worker = None
            return self._take()
        if time.monotonic() < self._next_check:
            return False
        self._next_check = time.monotonic() + self.check_interval_s
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        if not self.background:
            self._parse()
            return self._take()
        self._worker = threading.Thread(target=self._parse, name="registry-parse",
                                        daemon=True)
        self._worker.start()
        return False

    def _take(self) -> bool:
        result, self._done = self._done, None
        if isinstance(result, RegistryError) or result is None:
            self.reload_errors += 1
            log.error("registry not reloaded, keeping the previous one: %s", result)
            return False
        self.devices = result
        self.prepared, self._prepared = self._prepared, None
        self.changed, self._changed = self._changed, []
        self.generation += 1
        log.info("registry reloaded: %d devices (parsed in %.2f s, off the ingest thread)",
                 len(result), self.last_parse_s)
        return True
