"""The collector's checks of an `up` payload around the wire validator.

`airgrid.wire.decode_up_readings` judges the payload itself (schema, ranges, flags,
version, device id, agreement with the topic's device), each reading on its own. What
depends on this collector is checked here: its size cap, before anything is parsed, and
its clock with the configured tolerance for readings stamped in the future.
"""

from __future__ import annotations

from operator import attrgetter

import msgspec

from airgrid.wire import BadReading, UpBatch, WireError, decode_up_readings, encode_reading

_TS = attrgetter("ts")


def decode_up(payload: bytes, topic_device: str, now_ms: int, max_payload_bytes: int,
              max_future_ms: int) -> tuple[UpBatch, list[BadReading]]:
    """Decode one `up` payload: the batch of its valid readings and the rejected ones.

    Raises WireError(reason, detail naming the JSON path) when the message as a whole is
    unusable (too large, not JSON, a bad envelope).
    """
    if len(payload) > max_payload_bytes:
        raise WireError("too_large", f"{len(payload)} bytes > {max_payload_bytes}")
    up, bad = decode_up_readings(payload, topic_device)
    if up.readings:
        limit = now_ms + max_future_ms
        if max(map(_TS, up.readings)) > limit:
            keep = []
            for i, r in enumerate(up.readings):
                if r.ts > limit:
                    bad.append(BadReading(i, "future_ts", f"$.readings[{i}].ts = {r.ts} is "
                                          f"{r.ts - now_ms} ms in the future",
                                          encode_reading(r)))
                else:
                    keep.append(r)
            up = msgspec.structs.replace(up, readings=tuple(keep))
    return up, bad
