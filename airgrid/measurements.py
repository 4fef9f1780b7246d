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
#: Hourly aggregates per device (mean, count, max of pm2_5 and pm10), beside the readings.
READINGS_HOURLY: Final = "readings_hourly"
#: Alert lifecycle: tags rule, device, state (firing, resolved, acknowledged, escalated,
#: notified, notify_failed) and channel (notifications only); fields value, severity,
#: open (1 on firing, 0 on resolved), ack_delay_s (acknowledged), level (escalated).
ALERT_EVENTS: Final = "alert_events"
#: Where each device stands (WGS-84): tags device, site, township, grid; fields
#: latitude, longitude. Written by the device registry when a device is registered.
DEVICE_LOCATION: Final = "device_location"
