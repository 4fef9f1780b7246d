"""collector: MQTT/AMQP ingest → validation → dedup → InfluxDB → rule engine → alerting.

`load` validates a config file with its rules and registry; `CollectorApp` builds and runs
a whole collector from it (the composition root, `collector.app`).
"""

from collector.app import CollectorApp, LoadedConfig, load
from collector.config import CollectorConfig
from collector.delivery import Delivery
from collector.pipeline import Pipeline
from collector.storage_sink import StorageSink

__all__ = [
    "CollectorApp",
    "CollectorConfig",
    "Delivery",
    "LoadedConfig",
    "Pipeline",
    "StorageSink",
    "load",
]
