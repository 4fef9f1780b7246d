"""edge_agent: reads a PM sensor on a Raspberry Pi, buffers durably, publishes over MQTT."""

__version__ = "0.1.0"
