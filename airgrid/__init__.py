"""The shared core: what every component needs and nothing else.

Wire format, config mechanism, secrets, durations, measurement names, errors and
sd_notify. It imports only the standard library and third-party packages, never another
package of this project. The names below are the core's public API; the modules hold the
rest.
"""

from airgrid.config import ConfigError, load_file
from airgrid.durations import parse_duration_ms
from airgrid.errors import AirgridError
from airgrid.wire import (
    SCHEMA_VERSION,
    Reading,
    Status,
    UpBatch,
    WireError,
    decode_status,
    decode_up,
    encode_status,
    encode_up,
)

__all__ = [
    "SCHEMA_VERSION",
    "AirgridError",
    "ConfigError",
    "Reading",
    "Status",
    "UpBatch",
    "WireError",
    "decode_status",
    "decode_up",
    "encode_status",
    "encode_up",
    "load_file",
    "parse_duration_ms",
]
