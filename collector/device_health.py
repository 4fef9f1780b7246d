"""Device health from status messages; the Last Will (state offline) marks a device offline."""

from __future__ import annotations

from dataclasses import dataclass

from airgrid.wire import Status


@dataclass
class Health:
    online: bool
    since_ms: int
    last_status_ms: int
    outbox_depth: int
    dropped: int
    clock_synced: bool


class DeviceHealth:
    def __init__(self) -> None:
        self.devices: dict[str, Health] = {}

    def update(self, device: str, s: Status, now_ms: int) -> Health:
        online = s.state == "online"
        h = self.devices.get(device)
        since = h.since_ms if h is not None and h.online == online else now_ms
        h = self.devices[device] = Health(online, since, now_ms, s.outbox_depth, s.dropped,
                                          s.clock_synced)
        return h

    def online_count(self) -> int:
        return sum(1 for h in self.devices.values() if h.online)
