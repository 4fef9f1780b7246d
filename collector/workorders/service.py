"""Wiring: the alerting service, registry and InfluxDB → work orders, complaints, the app."""

from __future__ import annotations

from collections.abc import Callable

from collector.alerting.config import AppSettings
from collector.alerting.service import AlertingService
from collector.registry import RegistryWatcher
from collector.workorders.complaints import ComplaintIntake
from collector.workorders.http_app import WorkerApp
from collector.workorders.links import SignInLinks
from collector.workorders.orders import WorkOrders
from collector.workorders.readings import ReadingsQuery
from collector.workorders.workers import WorkerDirectory


class WorkOrderService:
    def __init__(self, settings: AppSettings, alerting: AlertingService,
                 registry: RegistryWatcher, points: Callable[[list[str]], None],
                 readings: ReadingsQuery | None) -> None:
        store = alerting.store
        self.workers = WorkerDirectory(registry.path, lambda: registry.devices)
        self.orders = WorkOrders(alerting.manager, self.workers, points,
                                 alerting.cfg.event_channels)
        alerting.listeners.append(self.orders.on_event)
        self.links = SignInLinks(store.db, store.lock)
        # an expired link signs nobody in: it leaves with the resolved retention
        store.attach_expiring_table("worker_links", "expires_ms")
        self.complaints = ComplaintIntake(self.orders, lambda: registry.devices, readings)
        self.app: WorkerApp | None = None
        if settings.http_port is not None:
            self.app = WorkerApp(
                self.orders, self.complaints, self.links, self.workers,
                lambda: registry.devices, readings, settings.complaints.secret,
                settings.http_host, settings.http_port, settings.http_max_connections,
                settings.http_request_timeout_ms / 1000, settings.tianditu_key,
                settings.public_url)

    def start(self) -> None:
        if self.app is not None:
            self.app.start()

    def stop(self) -> None:
        if self.app is not None:
            self.app.stop()
