"""InfluxDB measurement names: what the collector writes and the dashboards query.

One place for them, so the writer and the readers cannot drift apart (a renamed
measurement would otherwise leave every panel empty without an error).
"""

from __future__ import annotations

from typing import Final

#: One point per reading: tags device, sensor and the registry tags; the reading's fields.
READINGS: Final = "readings"
#: One point per status message: online, outbox depth, dropped, clock sync, ...
DEVICE_STATUS: Final = "device_status"
#: Hourly aggregates per device (mean, count, max of pm2_5, pm10 and the calibrated
#: pm2_5_corr), beside the readings.
READINGS_HOURLY: Final = "readings_hourly"
#: Alert lifecycle, written by the collector for every event: tags rule, device, state
#: (firing, resolved, acknowledged, escalated; notified, notify_failed per delivery),
#: township, grid and channel (deliveries only); fields alert_id, value, severity,
#: started_ms, open (1 on firing, 0 on resolved), ack_delay_s and acked_by
#: (acknowledged), level (escalated), late_s (decided on readings that arrived late: the
#: point's time is the readings' time). Time: the event's. A province (AMQP) collector
#: without the lifecycle writes its announced firing and resolved (no alert_id): a
#: collector taking a device over reads `open` to know what was announced.
ALERT_EVENTS: Final = "alert_events"
#: Where each device stands (WGS-84), written by the collector from the device registry
#: on start and on every reload: tags device, site, township, grid; fields latitude,
#: longitude, name, sensor, link.
DEVICE_LOCATION: Final = "device_location"
#: One point per work order step (acknowledged, arrived, handled, reported), written by the
#: collector: tags source (alert or complaint), step, township, grid, worker, cause
#: (handled only, else "none"), rule; fields order_id, response_s (seconds from the order's
#: opening to this step), within_2h (1 when response_s <= 7200, else 0). Time: the step's.
WORK_ORDER_STEPS: Final = "work_order_steps"
