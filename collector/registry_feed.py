"""The device registry, each time it is (re)loaded, handed to the rule engine and to InfluxDB.

The engine's fleet follows the file: new devices are judged (deadman included), removed
ones forgotten, changed townships, grids, places and links used from the next tick. The
devices' places and labels are written to `device_location` for the county map: all of
them at start-up, then on each reload only the devices added or changed (the map takes
each device's last place), so a reload of 100,000 devices that changed one writes one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from airgrid.interpreter_lock import sharing
from alert_rules.engine import Engine, RegistryChange
from alert_rules.registry import Device as ExpectedDevice
from collector.county_points import CountyPoints, location_lines
from collector.registry import Device, RegistryWatcher

log = logging.getLogger(__name__)


def expected(devices: Iterable[Device]) -> list[ExpectedDevice]:
    """The registry as the engine knows it (no I/O types cross into alert_rules)."""
    return [ExpectedDevice(id=d.id, township=d.township, grid=d.grid, lat=d.lat, lon=d.lon,
                           link=d.link, name=d.name) for d in devices]


def describes(e: ExpectedDevice, d: Device) -> bool:
    """`e` is the engine's view of registry entry `d` (what `expected` would build)."""
    return (e.id == d.id and e.township == d.township and e.grid == d.grid
            and e.lat == d.lat and e.lon == d.lon and e.link == d.link and e.name == d.name)


@dataclass(frozen=True)
class Handover:
    """What a registry generation hands on, worked out on the registry's parse thread
    (`prepare`), so the pipeline's thread only applies it."""

    devices: dict[str, Device]
    handed: dict[str, tuple[Device, ExpectedDevice]]
    changed: list[Device]
    expected: list[ExpectedDevice]
    lines: list[str]  # device_location points of the changed devices
    change: RegistryChange  # the engine's side: added, removed, changed, moved


class RegistryFeed:
    def __init__(self, registry: RegistryWatcher, engine: Engine, points: CountyPoints) -> None:
        self.registry = registry
        self.engine = engine
        self.points = points
        self.generation = 0  # the registry generation last handed on
        # what was handed on: device id → (its registry entry, the engine's view of it);
        # an unchanged row is the same object after a reload (collector.registry)
        self._handed: dict[str, tuple[Device, ExpectedDevice]] = {}
        # The registry in force at start-up, prepared with the engine's entries
        # `build_engine` made from it (100,000 of them are not made twice). With a
        # background watcher this runs beside ingest (at 100,000 devices ~1 s of CPU: the
        # places of every device, the neighbour layouts), and is handed on by the first
        # `update` after it is ready; the engine judges the fleet it was built with
        # meanwhile.
        self._first: Handover | None = None
        self._first_ready = threading.Event()
        if registry.path is None:
            self._first_ready.set()
        elif registry.background:
            threading.Thread(target=self._prepare_first, args=(
                registry.devices, engine.fleet.registry), name="registry-first-prepare",
                daemon=True).start()
        else:
            self._prepare_first(registry.devices, engine.fleet.registry)
        registry.prepare = self.prepare

    def _prepare_first(self, devices: dict[str, Device],
                       known: Mapping[str, ExpectedDevice]) -> None:
        try:
            first = self.prepare(devices, known)
            if self.generation == 0:  # else a reload was handed on first: not needed
                self._first = first
        except Exception:  # prepared again on the pipeline's thread at the hand-on
            log.exception("preparing the registry at start-up failed")
        finally:
            self._first_ready.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Whether the start-up registry is prepared (waits up to `timeout`)."""
        return self._first_ready.wait(timeout)

    def prepare(self, devices: dict[str, Device],
                known: Mapping[str, ExpectedDevice] | None = None) -> Handover:
        """On the parse thread: the engine's view of each device and which changed since
        what was last handed on (`_handed` is replaced, never changed, so reading it
        here is safe; one parse runs at a time, and after the previous hand-on).
        `known`: engine entries to reuse where they describe the device."""
        old = self._handed
        known = known or {}
        handed: dict[str, tuple[Device, ExpectedDevice]] = {}
        changed: list[Device] = []
        for device_id, d in sharing(devices.items(), 256):  # beside ingest
            prev = old.get(device_id)
            if prev is not None and (prev[0] is d or prev[0] == d):
                # the same pair when the row is the same object: dropping the old map
                # on the ingest thread then frees no pairs
                handed[device_id] = prev if prev[0] is d else (d, prev[1])
                continue
            e = known.get(device_id)
            handed[device_id] = (d, e if e is not None and describes(e, d)
                                 else expected((d,))[0])
            changed.append(d)
        entries = [e for _, e in handed.values()]
        return Handover(devices, handed, changed, entries,
                        location_lines(changed, int(time.time() * 1000)),
                        self.engine.prepare_registry(entries))

    def update(self, now_ms: int) -> bool:
        """On the pipeline's thread after the registry's poll; True when it handed on."""
        gen = self.registry.generation
        if gen == self.generation or self.registry.path is None:
            return False
        if gen == 1 and not self._first_ready.is_set():
            return False  # still being prepared beside ingest: handed on when it is
        self.generation = gen
        devices = self.registry.devices
        ready = self._first if gen == 1 else self.registry.prepared
        self._first = None
        h = ready if isinstance(ready, Handover) and ready.devices is devices \
            else self.prepare(devices)
        self._handed = h.handed
        added, removed = self.engine.set_registry(h.expected, h.change)
        if gen > 1:
            log.info("registry generation %d: %d devices judged, %d added, %d removed, "
                     "%d changed", gen, len(devices), len(added), len(removed),
                     len(h.changed) - len(added))
        self.points.add(h.lines)
        return True
