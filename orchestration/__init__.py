"""Orchestration: runs the parts together (local services, demo stack, cluster runner, admin tool).

The top layer: it may import every other package, and nothing imports it.
"""

from orchestration.services import InfluxDB, Mosquitto, ServiceError, free_port, terminate
from orchestration.stack import SimDevice, Stack, Timing

__all__ = [
    "InfluxDB",
    "Mosquitto",
    "ServiceError",
    "SimDevice",
    "Stack",
    "Timing",
    "free_port",
    "terminate",
]
