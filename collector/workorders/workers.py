"""Who uses the app: grid workers (网格员) and the officers above them, from the registry.

The device registry's YAML may carry a `workers:` list beside `devices:`:

    workers:
      - {id: zhangsan, name: 张三, phone: "+8613800000001", role: grid_worker,
         township: 城关镇, grid: g1}
      - {id: wang, name: 王镇长, phone: "+8613900000009", role: township_officer,
         township: 城关镇}
      - {id: bureau, name: 县环保局, phone: "+8613700000007", role: county_officer}

A device's first contact is its grid worker (as the alert lifecycle already takes it);
one not listed under `workers:` is a grid worker of that device's grid, with their phone
number's digits as id (a CSV registry has no `workers:`, so this is how its workers get
links). What a person sees follows their role: a grid worker their grid, a township officer
their township, a county officer everything.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from airgrid.interpreter_lock import sharing
from collector.alerting.phones import e164_or_none
from collector.registry import Device, RegistryError, decode_utf8
from collector.registry import load as load_devices

log = logging.getLogger(__name__)

Role = Literal["grid_worker", "township_officer", "county_officer"]
ROLES: tuple[Role, ...] = ("grid_worker", "township_officer", "county_officer")
KEYS = ("id", "name", "phone", "role", "township", "grid")


@dataclass(frozen=True)
class Worker:
    id: str
    name: str
    phone: str  # E.164
    role: Role
    township: str = ""
    grid: str = ""

    def sees(self, township: str, grid: str) -> bool:
        """Whether a work order of this township and grid is within this person's area."""
        if self.role == "county_officer":
            return True
        if self.role == "township_officer":
            return township == self.township
        return township == self.township and grid == self.grid


def _field(raw: Mapping[str, Any], key: str, where: str, required: bool) -> str:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise RegistryError(f"{where}.{key}: required, expected a non-empty string")
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise RegistryError(f"{where}.{key}: expected a string, got {value!r}")
    return str(value).strip()


def parse_worker(raw: object, where: str) -> Worker:
    if not isinstance(raw, Mapping):
        raise RegistryError(f"{where}: expected a table, got {raw!r}")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise RegistryError(f"{where}: unknown key {unknown[0]!r}, expected {KEYS}")
    wid = _field(raw, "id", where, True)
    if not wid.isascii() or not wid.replace("-", "").replace("_", "").isalnum() \
            or len(wid) > 64:
        raise RegistryError(f"{where}.id: expected letters, digits, - and _ (at most 64), "
                            f"got {wid!r}")
    role = _field(raw, "role", where, False) or "grid_worker"
    if role not in ROLES:
        raise RegistryError(f"{where}.role: expected one of {ROLES}, got {role!r}")
    phone_raw = _field(raw, "phone", where, True)
    phone = e164_or_none(phone_raw)
    if phone is None:
        raise RegistryError(f"{where}.phone: expected a number like +8613800000000, "
                            f"got {phone_raw!r}")
    township = _field(raw, "township", where, role != "county_officer")
    grid = _field(raw, "grid", where, role == "grid_worker")
    return Worker(wid, _field(raw, "name", where, False) or wid, phone, role,
                  township, grid)


def listed_workers(path: Path) -> dict[str, Worker]:
    """Worker id → Worker of the registry's `workers:` list (a CSV registry has none).
    RegistryError names the file, entry and key of the first problem."""
    if path.suffix.lower() == ".csv":
        return {}
    try:
        doc = yaml.safe_load(decode_utf8(path, path.read_bytes()))
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"{path}: {exc}") from exc
    raw = doc.get("workers") if isinstance(doc, Mapping) else None
    if raw is not None and not isinstance(raw, list):
        raise RegistryError(f"{path}: workers: expected a list of worker tables")
    out: dict[str, Worker] = {}
    for i, entry in enumerate(raw or []):
        w = parse_worker(entry, f"{path}: workers[{i}]")
        if w.id in out:
            raise RegistryError(f"{path}: workers: duplicate id {w.id!r}")
        out[w.id] = w
    return out


def from_registry(path: Path, devices: Mapping[str, Device] | None = None) -> dict[str, Worker]:
    """Worker id → Worker, from the registry file (its `workers:` and device contacts).
    RegistryError names the file, entry and key of the first problem."""
    devices = load_devices(path) if devices is None else devices
    out = listed_workers(path)
    phones = {w.phone for w in out.values()}
    for d in sharing(devices.values(), 256):  # beside ingest, on the warm-up thread
        first = d.contacts[0] if d.contacts else None
        phone = e164_or_none(first.phone) if first else None
        if first is None or phone is None or phone in phones:
            continue
        phones.add(phone)
        wid = phone.lstrip("+")
        out.setdefault(wid, Worker(wid, first.name, phone, "grid_worker", d.township, d.grid))
    return out


class WorkerDirectory:
    """The registry's workers, re-read when the file changes (a removed worker's link stops
    working at once: every request looks its worker up here).

    `devices` gives the registry the collector already parsed (its watcher's, swapped in
    after a reload), so device contacts come from there instead of a second parse of the
    whole file on a request thread; without it (tools, tests) the file is parsed here.
    With it, the `workers:` list is checked at once (a bad one stops start-up) and the
    device contacts' workers (100,000 devices: about half a second) are made on a thread
    of their own, so start-up does not wait for them; what needs them waits instead."""

    #: how long a look-up waits for the start-up directory before answering from none
    WARM_WAIT_S = 30.0

    def __init__(self, path: Path | None,
                 devices: Callable[[], Mapping[str, Device]] | None = None) -> None:
        self.path = path
        self.devices = devices
        self._stamp: tuple[int, int] | None = None
        self._seen: Mapping[str, Device] | None = None  # the parsed registry last used
        self._first = True
        self._workers: dict[str, Worker] = {}
        self.reload_errors = 0
        self._lock = threading.Lock()  # one (re)build at a time
        self._ready = threading.Event()  # the start-up directory is made
        if path is None or devices is None:
            self.get("")  # a bad file at start-up stops start-up
            self._ready.set()
            return
        listed_workers(path)  # a bad `workers:` list stops start-up
        threading.Thread(target=self._warm, name="worker-directory", daemon=True).start()

    def _warm(self) -> None:
        try:
            self.all()
        except RegistryError as exc:  # the file changed since start-up's check
            self.reload_errors += 1
            log.error("worker directory: %s", exc)
        finally:
            self._ready.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def _stat(self) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def all(self) -> dict[str, Worker]:
        if self.path is None:
            return {}
        with self._lock:
            devices = self.devices() if self.devices is not None else None
            # the file's stamp, and which parsed registry is in force (a reload's parse
            # ends after the file changed: its devices are picked up when swapped in)
            stamp = self._stat()
            if self._first or stamp != self._stamp or devices is not self._seen:
                first, self._first = self._first, False
                self._stamp, self._seen = stamp, devices
                try:
                    self._workers = from_registry(self.path, devices)
                except RegistryError:
                    if first:
                        raise
                    self.reload_errors += 1  # the registry watcher logs the file's problem
            return self._workers

    def get(self, worker_id: str) -> Worker | None:
        return self.all().get(worker_id)

    # by_phone / by_name run inside the alert lifecycle's transaction (an SMS or MQTT
    # acknowledgement): they read what was last loaded (the start-up directory once it
    # is made) and never parse the file
    def by_phone(self, phone: str) -> Worker | None:
        self._ready.wait(self.WARM_WAIT_S)
        p = e164_or_none(phone)
        return next((w for w in self._workers.values() if w.phone == p), None)

    def by_name(self, name: str) -> Worker | None:
        self._ready.wait(self.WARM_WAIT_S)
        return next((w for w in self._workers.values() if w.name == name), None)
