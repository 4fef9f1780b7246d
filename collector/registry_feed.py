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
from dataclasses import dataclass

from airgrid.interpreter_lock import sharing
from alert_rules.engine import Engine, RegistryChange
from collector.county_points import CountyPoints, location_lines
from collector.registry import Device, RegistryWatcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Handover:
    """What a registry generation hands on, worked out on the registry's parse thread
    (`prepare`), so the pipeline's thread only applies it. The engine takes the
    registry's own entries (`alert_rules.registry.Registered`)."""

    devices: dict[str, Device]
    changed: list[Device]
    lines: list[str]  # device_location points of the changed devices
    change: RegistryChange  # the engine's side: added, removed, changed, moved


class RegistryFeed:
    def __init__(self, registry: RegistryWatcher, engine: Engine, points: CountyPoints) -> None:
        self.registry = registry
        self.engine = engine
        self.points = points
        self.generation = 0  # the registry generation last handed on
        # what was handed on (replaced, never changed); an unchanged row is the same
        # object after a reload (collector.registry)
        self._handed: dict[str, Device] = {}
        # The registry in force at start-up: the engine was built with these very
        # entries, so only the places of every device and the neighbour layouts are
        # left to work out. With a background watcher this runs beside ingest (at
        # 100,000 devices ~1 s of CPU), and is handed on by the first `update` after it
        # is ready; the engine judges the fleet it was built with meanwhile.
        self._first: Handover | None = None
        self._first_ready = threading.Event()
        if registry.path is None:
            self._first_ready.set()
        elif registry.background:
            threading.Thread(target=self._prepare_first, args=(registry.devices,),
                             name="registry-first-prepare", daemon=True).start()
        else:
            self._prepare_first(registry.devices)
        registry.prepare = self.prepare

    def _prepare_first(self, devices: dict[str, Device]) -> None:
        try:
            first = self.prepare(devices)
            if self.generation == 0:  # else a reload was handed on first: not needed
                self._first = first
        except Exception:  # prepared again on the pipeline's thread at the hand-on
            log.exception("preparing the registry at start-up failed")
        finally:
            self._first_ready.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Whether the start-up registry is prepared (waits up to `timeout`)."""
        return self._first_ready.wait(timeout)

    def prepare(self, devices: dict[str, Device]) -> Handover:
        """On the parse thread: which devices changed since what was last handed on
        (`_handed` is replaced, never changed, so reading it here is safe; one parse
        runs at a time, and after the previous hand-on)."""
        old = self._handed
        changed = [d for device_id, d in sharing(devices.items(), 256)  # beside ingest
                   if (prev := old.get(device_id)) is not d and prev != d]
        return Handover(devices, changed, location_lines(changed, int(time.time() * 1000)),
                        self.engine.prepare_registry(devices))

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
        self._handed = devices
        added, removed = self.engine.set_registry(devices, h.change)
        if gen > 1:
            log.info("registry generation %d: %d devices judged, %d added, %d removed, "
                     "%d changed", gen, len(devices), len(added), len(removed),
                     len(h.changed) - len(added))
        self.points.add(h.lines)
        return True
