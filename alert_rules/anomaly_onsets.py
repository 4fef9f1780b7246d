"""Where anomalies begin: the detector's scores reduced to the readings that open one.

The detector (`alert_rules.anomaly.Detector`) scores every reading; during an episode (a
shift that stays, a noisier sensor, a stuck run) many readings in a row score high. The
anomaly rule turns that into one alert: it fires once and stays open (`cooldown`).
`airgrid-rules score --csv` prints a score per row for benchmarks that count every row
at or above a threshold as a detection and charge each one outside a labelled window,
so it prints what the rule does: a reading's score where it opens an anomaly, 0 where
it only continues one.

A reading opens an anomaly when its statistic z (the detector's score as the z it came
from) exceeds `gain` times the episode's held peak. The held peak is the highest z so
far, decaying by `decay` per reading; a later, clearly stronger reading inside the same
episode is a new onset (the anomaly grew), and once the peak has decayed a renewed
anomaly of the same strength opens again. Both settings are per reading, not per second:
the evaluation's series read every 2.5 minutes to every hour, and an episode lasts a
number of readings much more than a number of minutes (bench/notes/anomaly_eval.md).
Vectorized over devices like the detector, O(1) per reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from alert_rules.anomaly import Detector
from alert_rules.state import FloatArr, IntArr

TINY = 1e-12


@dataclass
class Onsets:
    z0: float = 2.0  # the detector's z0: a score s came from z = z0·sqrt(s / (1 − s))
    gain: float = 1.2  # how much stronger than the held peak an onset must be
    decay: float = 0.99  # the held peak's factor per reading
    held: FloatArr = field(default_factory=lambda: np.zeros(0), repr=False)

    def fit(self, n: int) -> None:
        if n > self.held.size:
            self.held = np.r_[self.held, np.zeros(n - self.held.size)]

    def update(self, rows: IntArr, score: FloatArr) -> FloatArr:
        """The detector's scores of one reading for each of `rows` (distinct) → the
        same score where the reading opens an anomaly, else 0."""
        if rows.size == 0:
            return np.zeros(0)
        self.fit(int(rows.max()) + 1)
        s = np.clip(score, 0.0, 1.0 - 1e-12)
        z = self.z0 * np.sqrt(s / (1.0 - s))
        held = self.held[rows]
        onset = (z > self.gain * held) & (s > 0)
        self.held[rows] = np.maximum(z, held * self.decay)
        out: FloatArr = np.where(onset, score, 0.0)
        return out


class OnsetScores:
    """A detector and its onsets: each reading's score where it opens an anomaly, 0 where
    it continues one or is missing. What `airgrid-rules score --csv` prints for one
    series, and the corpus evaluation for many at once (a row each)."""

    def __init__(self, detector: Detector | None = None, onsets: Onsets | None = None
                 ) -> None:
        self.detector = Detector() if detector is None else detector
        self.onsets = Onsets(z0=self.detector.z0) if onsets is None else onsets

    def update(self, rows: IntArr, x: FloatArr, ts: IntArr) -> FloatArr:
        """One reading for each of `rows` (distinct; NaN: none, scored 0 and left out of
        the detector and the held peaks)."""
        score = self.detector.update(rows, x, ts)
        ok = np.isfinite(x)
        score[ok] = self.onsets.update(rows[ok], score[ok])
        return score
