"""Drop repeats by (device, seq) and track sequence gaps (data completeness)."""

from __future__ import annotations

from dataclasses import dataclass, field

#: A gap wider than this is not tracked seq by seq; readings below it are written again
#: (a rewrite overwrites the same point) rather than risk dropping one as a repeat.
MAX_TRACKED_GAP = 100_000


@dataclass
class DeviceSeq:
    max_seq: int = 0
    floor: int = 1  # seqs below the floor are unknown: never called repeats
    missing: set[int] = field(default_factory=set)


class SeqTracker:
    """In-memory; after a restart everything is unknown again and simply rewritten."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceSeq] = {}
        self.duplicates = 0

    def seen(self, device: str, seq: int) -> bool:
        d = self.devices.get(device)
        if d is None:
            return False
        return d.floor <= seq <= d.max_seq and seq not in d.missing

    def mark(self, device: str, seq: int) -> None:
        d = self.devices.get(device)
        if d is None:
            d = self.devices[device] = DeviceSeq(max_seq=seq, floor=seq)
            return
        if seq > d.max_seq:
            gap = seq - d.max_seq - 1
            if gap > MAX_TRACKED_GAP:
                d.floor = seq
                d.missing.clear()
            elif gap:
                d.missing.update(range(d.max_seq + 1, seq))
            d.max_seq = seq
        else:
            d.missing.discard(seq)

    def gaps(self, device: str) -> int:
        d = self.devices.get(device)
        return len(d.missing) if d else 0
