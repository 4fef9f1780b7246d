"""The device registry as the alert lifecycle's contact directory.

A device's first registry contact is its grid worker (网格员), its `technician` gets
the maintenance alerts; officers (township,
county) come from the `[alerting.contacts]` table, which also covers devices the registry
does not list. Reads the watcher's current registry, so a reload takes effect at once.
"""

from __future__ import annotations

from collector.alerting.contacts import DeviceContact, Officer, StaticContacts
from collector.alerting.phones import e164_or_none, same_number
from collector.registry import Contact, RegistryWatcher


class RegistryContacts:
    def __init__(self, registry: RegistryWatcher, fallback: StaticContacts) -> None:
        self.registry = registry
        self.fallback = fallback

    def for_device(self, device: str) -> DeviceContact | None:
        d = self.registry.devices.get(device)
        if d is None:
            return self.fallback.for_device(device)
        worker = d.contacts[0] if d.contacts else None
        return DeviceContact(
            device=d.id, name=d.name or d.site or d.id, township=d.township, grid=d.grid,
            worker_name=worker.name if worker else "",
            worker_phone=(e164_or_none(worker.phone) or "") if worker else "",
            technician_name=d.technician.name if d.technician else "",
            technician_phone=(e164_or_none(d.technician.phone) or "") if d.technician else "",
        )

    def officer(self, role: str, township: str) -> Officer | None:
        return self.fallback.officer(role, township)

    def officers_of(self, township: str) -> list[Officer]:
        return self.fallback.officers_of(township)

    def by_phone(self, phone: str) -> str | None:
        for d in self.registry.devices.values():
            people: tuple[Contact, ...] = (*d.contacts, *((d.technician,) if d.technician else ()))
            for c in people:
                if same_number(c.phone, phone):
                    return c.name
        return self.fallback.by_phone(phone)
