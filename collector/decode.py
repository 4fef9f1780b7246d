"""The collector's checks of an `up` payload around the wire validator.

`airgrid.wire.decode_up` judges the payload itself (schema, ranges, flags, version,
device id, agreement with the topic's device). What depends on this collector is
checked here: its size cap, before anything is parsed, and its clock with the
configured tolerance for readings stamped in the future.
"""

from __future__ import annotations

from airgrid.wire import UpBatch, WireError
from airgrid.wire import decode_up as decode_wire_up


def decode_up(payload: bytes, topic_device: str, now_ms: int, max_payload_bytes: int,
              max_future_ms: int) -> UpBatch:
    """Decode one `up` payload; raise WireError(reason, detail naming the JSON path)."""
    if len(payload) > max_payload_bytes:
        raise WireError("too_large", f"{len(payload)} bytes > {max_payload_bytes}")
    up = decode_wire_up(payload, topic_device)
    if up.readings:
        newest = max(r.ts for r in up.readings)
        if newest > now_ms + max_future_ms:
            i = next(i for i, r in enumerate(up.readings) if r.ts == newest)
            raise WireError(
                "future_ts", f"$.readings[{i}].ts = {newest} is {newest - now_ms} ms in the future"
            )
    return up
