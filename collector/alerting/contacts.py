"""Who is responsible for a device: the small interface the device registry fills.

Two implement it: a static mapping here (from the `[alerting.contacts]` table or a TOML
file), and `collector.registry_contacts.RegistryContacts`, which takes each device's grid
worker from the device registry and the officers (and unlisted devices) from the static
mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from collector.alerting.phones import same_number


@dataclass(frozen=True)
class DeviceContact:
    device: str
    name: str  # what people call the device: "城关镇政府楼顶"
    township: str
    grid: str
    worker_name: str = ""
    worker_phone: str = ""  # international form, +86…
    worker_app_id: str = ""  # the grid worker's app: notifications on MQTT
    technician_name: str = ""  # maintains the sensor: recipient `technician`
    technician_phone: str = ""
    technician_app_id: str = ""


@dataclass(frozen=True)
class Officer:
    name: str
    phone: str = ""
    app_id: str = ""


class ContactDirectory(Protocol):
    def for_device(self, device: str) -> DeviceContact | None: ...

    def officer(self, role: str, township: str) -> Officer | None:
        """The officer with `role` (e.g. "township_officer", "county_bureau") for a township."""
        ...

    def officers_of(self, township: str) -> list[Officer]:
        """Every officer above the grid workers of `township` (its own and county-wide)."""
        ...

    def by_phone(self, phone: str) -> str | None:
        """The name of the contact with this number ("" if unnamed), None if unknown.
        Numbers are compared in E.164 (`phones.same_number`), whatever form they came in."""
        ...


class StaticContacts:
    def __init__(self, devices: Mapping[str, DeviceContact],
                 officers: Mapping[tuple[str, str], Officer] | None = None) -> None:
        self.devices = dict(devices)
        self.officers = dict(officers or {})

    def for_device(self, device: str) -> DeviceContact | None:
        return self.devices.get(device)

    def officer(self, role: str, township: str) -> Officer | None:
        # a county-wide officer is configured with township "*"
        return self.officers.get((role, township)) or self.officers.get((role, "*"))

    def officers_of(self, township: str) -> list[Officer]:
        return [o for (_, t), o in self.officers.items() if t in (township, "*")]

    def by_phone(self, phone: str) -> str | None:
        for c in self.devices.values():
            if same_number(c.worker_phone, phone):
                return c.worker_name
            if c.technician_phone == phone:
                return c.technician_name
        for o in self.officers.values():
            if same_number(o.phone, phone):
                return o.name
        return None
