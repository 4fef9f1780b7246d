"""When the collector ticks the rule engine: on a timer, and soon after readings arrive.

The timer (`interval_s`) is for what happens without readings: a deadman firing, a `for:`
running out, a window sliding past a reading. A tick on arrival is what makes an alert
follow its reading within a fraction of a second instead of half a timer interval. It is

- debounced: readings stored while a tick is already due add nothing to it, so a burst of
  messages costs one tick;
- bounded: an arrival tick comes no sooner than `1 / max_arrival_per_s` after the last
  tick of either kind, so 1,000 messages a second cost at most that many full ticks.

Pure bookkeeping on a monotonic clock the caller passes in (`collector.pipeline` asks it
each turn of its loop), so the policy is tested without sleeping.
"""

from __future__ import annotations

import math

#: arrival ticks a second at most, by default: an alert waits at most 50 ms for its tick,
#: and a 10 ms tick (100,000 devices) takes at most a fifth of the ingest thread
DEFAULT_ARRIVAL_TICKS = 20.0


class TickSchedule:
    def __init__(self, interval_s: float, max_arrival_per_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, not {interval_s}")
        if max_arrival_per_s < 0:
            raise ValueError(f"max_arrival_per_s must be >= 0, not {max_arrival_per_s}")
        self.interval_s = interval_s
        #: shortest time from any tick to an arrival tick (inf: no ticks on arrival)
        self.min_gap_s = 1 / max_arrival_per_s if max_arrival_per_s else math.inf
        self.pending = False  # readings were handed to the engine since the last tick
        self.last_s = -math.inf  # monotonic time of the last tick (none yet: due at once)

    def arrived(self) -> None:
        """Stored readings were handed to the engine: tick for them soon."""
        self.pending = True

    def next_s(self) -> float:
        """Monotonic time the next tick is due: the timer's, or an arrival's if sooner."""
        timer = self.last_s + self.interval_s
        return min(timer, self.last_s + self.min_gap_s) if self.pending else timer

    def due(self, now_s: float) -> bool:
        return now_s >= self.next_s()

    def wait_s(self, now_s: float) -> float:
        """How long the loop may block before the next tick is due (0 when it is)."""
        return max(0.0, self.next_s() - now_s)

    def ticked(self, now_s: float) -> None:
        """A tick ran at `now_s`: it judged everything handed over before it."""
        self.last_s = now_s
        self.pending = False
