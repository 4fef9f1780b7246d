"""Drop repeats by (device, seq) and track sequence gaps (data completeness).

Per device (strictly: per seq key, `device/epoch`) the tracker keeps the highest seq
seen, a floor, and the seqs still missing between them as sorted, disjoint ranges: an
outbox overflow of 100,000 readings is one range, not 100,000 entries. Each range
remembers when it opened. A gap older than `max_gap_age_ms`, or beyond `max_gap_ranges`
per device, is declared lost (counted in `lost`): the floor moves above it, so its seqs
become unknown rather than missing. Unknown seqs are never called repeats: one that still
arrives is written again (a rewrite overwrites the same point), never dropped.

Nothing here walks every device on the ingest thread (100,000 devices: tens of ms a walk).
The fleet's received and missing totals are kept running, changed where a device's
state changes, so the completeness gauge is a constant-time read. Keys are kept in the
order they were last heard (`forget_silent` takes the silent from the front), and a heap
holds, per key with gaps, a time no later than its oldest gap's (`expire` pops only the
due). Both orders assume the clock does not step back; when it does, the next
`forget_silent` sorts the keys once, and a heap entry is added for the earlier gap.
"""

from __future__ import annotations

import heapq
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import lt

#: A gap wider than this is not tracked; readings below it are written again (a rewrite
#: overwrites the same point) rather than risk dropping one as a repeat. A jump this big
#: is a reset or a bogus seq, and would make the completeness figure meaningless.
MAX_TRACKED_GAP = 100_000
#: Defaults of `[gaps]` in the collector's config.
MAX_GAP_AGE_MS = 7 * 86_400_000
MAX_GAP_RANGES = 256
#: the expiry heap is rebuilt from its live entries when it holds this many more
HEAP_SLACK = 1024


def device_of(key: str) -> str:
    """The device of a seq key (`device` or `device/epoch`)."""
    return key.partition("/")[0]


@dataclass
class DeviceSeq:
    max_seq: int = 0
    floor: int = 1  # seqs below the floor are unknown: never called repeats
    received: int = 0  # distinct seqs seen since the floor (for completeness)
    # missing seqs as ranges [lo, hi] (inclusive), sorted and disjoint, within
    # [floor, max_seq]; `opened` is when each range went missing (epoch ms)
    lo: list[int] = field(default_factory=list)
    hi: list[int] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)
    missing: int = 0  # seqs in the ranges
    last_ms: int = 0  # when a reading of this key last arrived (for forgetting)

    def gap_index(self, seq: int) -> int:
        """Index of the range holding `seq`, or -1."""
        i = bisect_right(self.lo, seq) - 1
        return i if i >= 0 and seq <= self.hi[i] else -1

    def open_gap(self, lo: int, hi: int, now_ms: int) -> None:
        """A new gap above every existing one (the sequence jumped)."""
        self.lo.append(lo)
        self.hi.append(hi)
        self.opened.append(now_ms)
        self.missing += hi - lo + 1

    def fill(self, i: int, seq: int) -> None:
        """`seq`, inside range `i`, arrived: shrink or split the range."""
        lo, hi = self.lo[i], self.hi[i]
        self.missing -= 1
        if lo == hi:
            del self.lo[i], self.hi[i], self.opened[i]
        elif seq == lo:
            self.lo[i] = seq + 1
        elif seq == hi:
            self.hi[i] = seq - 1
        else:
            self.hi[i] = seq - 1
            self.lo.insert(i + 1, seq + 1)
            self.hi.insert(i + 1, hi)
            self.opened.insert(i + 1, self.opened[i])

    def drop_oldest(self) -> int:
        """Declare the lowest range lost: the floor moves above it. Returns its width."""
        width = self.hi[0] - self.lo[0] + 1
        self.floor = self.hi[0] + 1
        self.missing -= width
        del self.lo[0], self.hi[0], self.opened[0]
        return width

    def clear(self) -> None:
        self.lo.clear()
        self.hi.clear()
        self.opened.clear()
        self.missing = 0


class SeqTracker:
    """Per-device seq state; the pipeline checkpoints it so a restart keeps dropping repeats."""

    def __init__(self, max_gap_age_ms: int = MAX_GAP_AGE_MS,
                 max_gap_ranges: int = MAX_GAP_RANGES,
                 clock: Callable[[], float] = time.time) -> None:
        self.devices: dict[str, DeviceSeq] = {}  # change only through the methods below
        self.duplicates = 0
        self.lost = 0  # missing seqs declared lost (too old, or too many gaps)
        self.max_gap_age_ms = max_gap_age_ms
        self.max_gap_ranges = max_gap_ranges
        self.clock = clock
        self._touched: dict[str, None] = {}  # devices marked since the last commit, in order
        self._forgotten: list[str] = []  # devices dropped since the last commit
        self._changed: set[str] = set()  # devices changed since the gauges last looked
        #: the per-device gauges are wanted (`[metrics] per_device_completeness`)
        self.track_changed = True
        # running totals over `devices` (the fleet's completeness without a walk)
        self.received_total = 0
        self.missing_total = 0
        # keys by when last heard, oldest first (exact while `_heard_sorted`)
        self._heard: OrderedDict[str, None] = OrderedDict()
        self._last_heard_ms = 0
        self._heard_sorted = True
        # (time, key) with time <= the key's oldest gap's opening; `_gap_due[key]` is the
        # key's current entry (others for it are stale and skipped)
        self._gap_heap: list[tuple[int, str]] = []
        self._gap_due: dict[str, int] = {}
        self._keys_of: dict[str, int] = {}  # device -> its keys here (epochs)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # --- bookkeeping: every change of `devices` goes through these ---------------------------

    def _add(self, key: str, d: DeviceSeq) -> None:
        self.devices[key] = d
        self.received_total += d.received
        self.missing_total += d.missing
        device = device_of(key)
        self._keys_of[device] = self._keys_of.get(device, 0) + 1
        self._heard[key] = None
        self._heard_at(d.last_ms)
        self._watch_gaps(key, d)

    def _drop(self, key: str) -> None:
        d = self.devices.pop(key)
        self.received_total -= d.received
        self.missing_total -= d.missing
        device = device_of(key)
        n = self._keys_of[device] - 1
        if n:
            self._keys_of[device] = n
        else:
            del self._keys_of[device]
        self._heard.pop(key, None)
        self._gap_due.pop(key, None)  # its heap entry is skipped when it comes up

    def _heard_at(self, now_ms: int) -> None:
        if now_ms < self._last_heard_ms:
            self._heard_sorted = False  # the clock stepped back: sort before forgetting
        else:
            self._last_heard_ms = now_ms

    def _heard_now(self, key: str, d: DeviceSeq, now_ms: int) -> None:
        d.last_ms = now_ms
        self._heard.move_to_end(key)
        self._heard_at(now_ms)

    def _watch_gaps(self, key: str, d: DeviceSeq) -> None:
        """Keep a heap entry no later than the key's oldest gap (O(1) unless it moves earlier)."""
        if not d.lo:
            return
        opened = d.opened[0]
        due = self._gap_due.get(key)
        if due is None or opened < due:
            self._gap_due[key] = opened
            heap = self._gap_heap
            heapq.heappush(heap, (opened, key))
            if len(heap) > 2 * len(self._gap_due) + HEAP_SLACK:  # mostly stale: rebuild
                self._gap_heap = [(t, k) for k, t in self._gap_due.items()]
                heapq.heapify(self._gap_heap)

    def restore_device(self, key: str, d: DeviceSeq) -> None:
        """A key's state read back from the checkpoint (oldest heard first, best)."""
        if key in self.devices:
            self._drop(key)
        self._add(key, d)

    # --- ingest ------------------------------------------------------------------------------

    def seen(self, device: str, seq: int) -> bool:
        d = self.devices.get(device)
        if d is None:
            return False
        return d.floor <= seq <= d.max_seq and d.gap_index(seq) < 0

    def _advance(self, d: DeviceSeq, seq: int, now_ms: int) -> None:
        """`seq` above max_seq: open the gap below it (or reset on a huge jump)."""
        gap = seq - d.max_seq - 1
        if gap > MAX_TRACKED_GAP:
            d.floor, d.received = seq, 0
            d.clear()
        elif gap > 0:
            d.open_gap(d.max_seq + 1, seq - 1, now_ms)
        d.max_seq = seq

    def _bound(self, d: DeviceSeq, now_ms: int) -> None:
        """Declare lost what is too old or beyond the bound on ranges."""
        while d.lo and (len(d.lo) > self.max_gap_ranges
                        or now_ms - d.opened[0] > self.max_gap_age_ms):
            self.lost += d.drop_oldest()

    def mark(self, device: str, seq: int) -> None:
        now_ms = self._now_ms()
        d = self.devices.get(device)
        self._touched[device] = None
        if d is None:
            self._add(device, DeviceSeq(max_seq=seq, floor=seq, received=1, last_ms=now_ms))
            return
        received, missing = d.received, d.missing
        d.received += 1
        self._heard_now(device, d, now_ms)
        if seq > d.max_seq:
            self._advance(d, seq, now_ms)
        else:
            i = d.gap_index(seq)
            if i >= 0:
                d.fill(i, seq)
        self._bound(d, now_ms)
        self.received_total += d.received - received
        self.missing_total += d.missing - missing
        self._watch_gaps(device, d)

    def fresh(self, device: str, seqs: Sequence[int]) -> list[int]:
        """Indexes of `seqs` not seen before (marking them); repeats are counted."""
        d = self.devices.get(device)
        n = len(seqs)
        # Fast path: a message in order continuing the device's sequence, or starting it.
        if n and (d is None or seqs[0] > d.max_seq) and all(map(lt, seqs, seqs[1:])):
            now_ms = self._now_ms()
            self._touched[device] = None
            if d is None:  # as `mark` starts a device: its first seq is its floor
                d = DeviceSeq(max_seq=seqs[0] - 1, floor=seqs[0], last_ms=now_ms)
                self._add(device, d)
            received, missing = d.received, d.missing
            self._heard_now(device, d, now_ms)
            prev = d.max_seq
            for s in seqs:
                if s != prev + 1:  # a hole (a reset on a huge jump starts counting afresh)
                    d.max_seq = prev
                    self._advance(d, s, now_ms)
                prev = s
            d.max_seq = prev
            d.received += n
            self._bound(d, now_ms)
            self.received_total += d.received - received
            self.missing_total += d.missing - missing
            self._watch_gaps(device, d)
            return list(range(n))
        out = []
        for i, s in enumerate(seqs):
            if self.seen(device, s):
                self.duplicates += 1
            else:
                self.mark(device, s)
                out.append(i)
        return out

    # --- retention (every few seconds; touches only what is due) -----------------------------

    def expire(self, now_ms: int | None = None) -> int:
        """Declare lost the gaps past their age on every device (also the silent ones,
        which `fresh` never visits); returns the seqs declared lost. Only keys whose
        oldest gap may be due are looked at."""
        now_ms = self._now_ms() if now_ms is None else now_ms
        before = self.lost
        cutoff = now_ms - self.max_gap_age_ms  # a gap opened before this is too old
        due = self._gap_due
        while self._gap_heap and self._gap_heap[0][0] < cutoff:  # (rebuilt by a push)
            t, key = heapq.heappop(self._gap_heap)
            if due.get(key) != t:
                continue  # stale: the key is gone or has an earlier entry
            del due[key]
            d = self.devices[key]
            if d.lo and d.opened[0] < cutoff:
                missing = d.missing
                self._bound(d, now_ms)
                self.missing_total += d.missing - missing
                self._touched[key] = None
                self._changed.add(key)
            self._watch_gaps(key, d)  # its next gap (never due now: `_bound` dropped those)
        return self.lost - before

    def forget_silent(self, before_ms: int) -> list[str]:
        """Drop the state of keys with no reading since `before_ms`; returns them. A
        forgotten device starts afresh: its next seq is unknown below, never a repeat.
        Only the silent keys (at the front of the heard order) are looked at."""
        if not self._heard_sorted:  # the clock stepped back since: one sort puts it right
            self._heard = OrderedDict(
                (k, None) for k in sorted(self.devices, key=lambda k: self.devices[k].last_ms))
            self._last_heard_ms = max((d.last_ms for d in self.devices.values()), default=0)
            self._heard_sorted = True
        gone = []
        heard, devices = self._heard, self.devices
        while heard:
            key = next(iter(heard))
            if devices[key].last_ms >= before_ms:
                break
            gone.append(key)
            self._drop(key)
        for k in gone:
            self._touched.pop(k, None)
            self._changed.discard(k)
        self._forgotten.extend(gone)
        return gone

    def has_device(self, device: str) -> bool:
        """Any key of `device` (any epoch) is held."""
        return device in self._keys_of

    # --- the checkpoint and the gauges -------------------------------------------------------

    def commit(self) -> list[str]:
        """The batch is sealed: returns the devices it touched (for the checkpoint)."""
        touched = list(self._touched)
        self._touched.clear()
        if self.track_changed:
            self._changed.update(touched)
        return touched

    def take_changed(self, limit: int = 2000) -> list[str]:
        """Up to `limit` keys changed (in sealed batches) since they were last taken: the
        per-device gauges follow those instead of walking every device every second, a
        few thousand at a time (a new series costs the metrics library ~10 µs)."""
        changed = self._changed
        if len(changed) <= limit:
            out = list(changed)
            changed.clear()
            return out
        return [changed.pop() for _ in range(limit)]

    def take_forgotten(self) -> list[str]:
        """Keys forgotten since the last call (their checkpoint rows go)."""
        out, self._forgotten = self._forgotten, []
        return out

    def gaps(self, device: str) -> int:
        d = self.devices.get(device)
        return d.missing if d else 0

    def missing(self) -> int:
        """Seqs missing over all devices (a running total: no walk)."""
        return self.missing_total

    def device_completeness(self) -> dict[str, float]:
        """Received / (received + missing) per device (walks every device: not for the
        ingest thread)."""
        return {dev: d.received / (d.received + d.missing) if d.received + d.missing
                else 1.0 for dev, d in self.devices.items()}

    def completeness(self) -> float:
        """Received / (received + missing) over all devices: 1.0 means no gaps (running
        totals: no walk)."""
        received, missing = self.received_total, self.missing_total
        return received / (received + missing) if received + missing else 1.0
