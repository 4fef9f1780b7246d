"""Line-protocol tags per device and per sensor, from the device registry, cached.

A registered device carries its registry tags (site, township, grid, …) and `cal` naming
its calibration formula; with a registry in use, an unknown device is tagged
`unregistered=true`. The cache is dropped whenever the registry file is reloaded.
"""

from __future__ import annotations

from collector.line_protocol import READINGS, escape_tag, tag_set
from collector.registry import Device, RegistryWatcher


class TagCache:
    def __init__(self, registry: RegistryWatcher) -> None:
        self.registry = registry
        self._readings: dict[tuple[str, str, int], str] = {}
        self._devices: dict[str, str] = {}

    @property
    def in_use(self) -> bool:
        """A registry file is configured: devices it does not list are unknown."""
        return self.registry.path is not None

    def registered(self, device: str) -> Device | None:
        return self.registry.devices.get(device)

    def refresh(self) -> bool:
        """Reload the registry if its file changed; True (and the cache dropped) if so."""
        if self.registry.poll():
            self._readings.clear()
            self._devices.clear()
            return True
        return False

    def forget(self, devices: list[str]) -> None:
        """Drop the cached tags of devices no longer heard (collector.retention)."""
        gone = set(devices)
        for device in devices:
            self._devices.pop(device, None)
        for key in [k for k in self._readings if k[0] in gone]:
            del self._readings[key]

    def __len__(self) -> int:
        return len(self._devices) + len(self._readings)

    def device(self, device: str) -> str:
        """`,device=…` plus registry tags (or unregistered=true when a registry is in use)."""
        tags = self._devices.get(device)
        if tags is None:
            known = self.registry.devices.get(device)
            d = {"device": device}
            if known is not None:
                d.update(known.tags())
                if known.calibration is not None:
                    d["cal"] = known.calibration.formula
            elif self.registry.path is not None:
                d["unregistered"] = "true"
            tags = self._devices[device] = tag_set(d)
        return tags

    def reading(self, device: str, sensor: str, idx: int) -> str:
        """Measurement and tags of one sensor's readings."""
        key = (device, sensor, idx)
        tags = self._readings.get(key)
        if tags is None:
            extra = f",sensor={escape_tag(sensor)}" + (f",idx={idx}" if idx else "")
            tags = self._readings[key] = f"{READINGS}{self.device(device)}{extra}"
        return tags

    def devices(self, devices: set[str] | list[str]) -> dict[str, str]:
        """Device tags of each of `devices` (for the hourly aggregates' lines)."""
        for device in devices:
            self.device(device)
        return self._devices
