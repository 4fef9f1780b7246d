"""The device registry, each time it is (re)loaded, handed to the rule engine and to InfluxDB.

The engine's fleet follows the file: new devices are judged (deadman included), removed
ones forgotten, changed townships, grids, places and links used from the next tick. The
devices' places and labels are written to `device_location` for the county map: all of
them at start-up, then on each reload only the devices added or changed (the map takes
each device's last place), so a reload of 100,000 devices that changed one writes one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from alert_rules.engine import Engine
from alert_rules.registry import Device as ExpectedDevice
from collector.county_points import CountyPoints, location_lines
from collector.registry import Device, RegistryWatcher

log = logging.getLogger(__name__)


def expected(devices: Iterable[Device]) -> list[ExpectedDevice]:
    """The registry as the engine knows it (no I/O types cross into alert_rules)."""
    return [ExpectedDevice(id=d.id, township=d.township, grid=d.grid, lat=d.lat, lon=d.lon,
                           link=d.link, name=d.name) for d in devices]


class RegistryFeed:
    def __init__(self, registry: RegistryWatcher, engine: Engine, points: CountyPoints) -> None:
        self.registry = registry
        self.engine = engine
        self.points = points
        self.generation = 0  # the registry generation last handed on
        # what was handed on: device id → (its registry entry, the engine's view of it);
        # an unchanged row is the same object after a reload (collector.registry)
        self._handed: dict[str, tuple[Device, ExpectedDevice]] = {}

    def update(self, now_ms: int) -> bool:
        """On the pipeline's thread after the registry's poll; True when it handed on."""
        gen = self.registry.generation
        if gen == self.generation or self.registry.path is None:
            return False
        self.generation = gen
        devices = self.registry.devices
        old = self._handed
        handed: dict[str, tuple[Device, ExpectedDevice]] = {}
        changed: list[Device] = []
        for device_id, d in devices.items():
            prev = old.get(device_id)
            if prev is not None and (prev[0] is d or prev[0] == d):
                handed[device_id] = (d, prev[1])
            else:
                handed[device_id] = (d, expected((d,))[0])
                changed.append(d)
        self._handed = handed
        added, removed = self.engine.set_registry([e for _, e in handed.values()])
        if gen > 1:
            log.info("registry generation %d: %d devices judged, %d added, %d removed, "
                     "%d changed", gen, len(devices), len(added), len(removed),
                     len(changed) - len(added))
        self.points.add(location_lines(changed, now_ms))
        return True
