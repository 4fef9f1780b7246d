"""Drop repeats by (device, seq) and track sequence gaps (data completeness)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

#: A gap wider than this is not tracked seq by seq; readings below it are written again
#: (a rewrite overwrites the same point) rather than risk dropping one as a repeat.
MAX_TRACKED_GAP = 100_000


@dataclass
class DeviceSeq:
    max_seq: int = 0
    floor: int = 1  # seqs below the floor are unknown: never called repeats
    missing: set[int] = field(default_factory=set)
    received: int = 0  # distinct seqs seen since the floor (for completeness)


class SeqTracker:
    """Per-device seq state; the pipeline checkpoints it so a restart keeps dropping repeats."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceSeq] = {}
        self.duplicates = 0
        self._touched: dict[str, None] = {}  # devices marked since the last commit, in order

    def seen(self, device: str, seq: int) -> bool:
        d = self.devices.get(device)
        if d is None:
            return False
        return d.floor <= seq <= d.max_seq and seq not in d.missing

    def mark(self, device: str, seq: int) -> None:
        d = self.devices.get(device)
        self._touched[device] = None
        if d is None:
            self.devices[device] = DeviceSeq(max_seq=seq, floor=seq, received=1)
            return
        d.received += 1
        if seq > d.max_seq:
            gap = seq - d.max_seq - 1
            if gap > MAX_TRACKED_GAP:
                d.floor = seq
                d.missing.clear()
                d.received = 1
            elif gap:
                d.missing.update(range(d.max_seq + 1, seq))
            d.max_seq = seq
        else:
            d.missing.discard(seq)

    def fresh(self, device: str, seqs: Sequence[int]) -> list[int]:
        """Indexes of `seqs` not seen before (marking them); repeats are counted."""
        d = self.devices.get(device)
        n = len(seqs)
        # Fast path: a message continuing the device's sequence in order.
        if d is not None and n and seqs[0] > d.max_seq and all(
                seqs[i] < seqs[i + 1] for i in range(n - 1)):
            self._touched[device] = None
            first = seqs[0]
            gap = first - d.max_seq - 1
            if gap > MAX_TRACKED_GAP:
                d.floor, d.received = first, 0
                d.missing.clear()
            elif gap:
                d.missing.update(range(d.max_seq + 1, first))
            inner = seqs[-1] - first + 1 - n
            if inner:
                present = set(seqs)
                d.missing.update(s for s in range(first, seqs[-1]) if s not in present)
            d.max_seq = seqs[-1]
            d.received += n
            return list(range(n))
        out = []
        for i, s in enumerate(seqs):
            if self.seen(device, s):
                self.duplicates += 1
            else:
                self.mark(device, s)
                out.append(i)
        return out

    def commit(self) -> list[str]:
        """The batch is sealed: returns the devices it touched (for the checkpoint)."""
        touched = list(self._touched)
        self._touched.clear()
        return touched

    def gaps(self, device: str) -> int:
        d = self.devices.get(device)
        return len(d.missing) if d else 0

    def device_completeness(self) -> dict[str, float]:
        """Received / (received + missing) per device."""
        return {dev: d.received / (d.received + len(d.missing)) if d.received + len(d.missing)
                else 1.0 for dev, d in self.devices.items()}

    def completeness(self) -> float:
        """Received / (received + missing) over all devices: 1.0 means no gaps."""
        received = sum(d.received for d in self.devices.values())
        missing = sum(len(d.missing) for d in self.devices.values())
        return received / (received + missing) if received + missing else 1.0
