"""edge_agent: reads a PM sensor on a Raspberry Pi, buffers durably, publishes over MQTT.

The root exports what is cheap to import on a Pi (no MQTT client, no I2C stack); the agent
itself is `edge_agent.agent.EdgeAgent`.
"""

__version__ = "0.1.0"  # before the imports: submodules read it

from edge_agent.config import EdgeConfig
from edge_agent.drivers import SENSOR_MODELS
from edge_agent.outbox import Outbox
from edge_agent.sampler import Sampler

__all__ = [
    "SENSOR_MODELS",
    "EdgeConfig",
    "Outbox",
    "Sampler",
    "__version__",
]
