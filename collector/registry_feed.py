"""The device registry, each time it is (re)loaded, handed to the rule engine and to InfluxDB.

The engine's fleet follows the file: new devices are judged (deadman included), removed
ones forgotten, changed townships, grids, places and links used from the next tick. The
devices' places and labels are written to `device_location` for the county map.
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

    def update(self, now_ms: int) -> bool:
        """On the pipeline's thread after the registry's poll; True when it handed on."""
        gen = self.registry.generation
        if gen == self.generation or self.registry.path is None:
            return False
        self.generation = gen
        devices = self.registry.devices
        added, removed = self.engine.set_registry(expected(devices.values()))
        if gen > 1:
            log.info("registry generation %d: %d devices judged, %d added, %d removed",
                     gen, len(devices), len(added), len(removed))
        self.points.add(location_lines(devices.values(), now_ms))
        return True
