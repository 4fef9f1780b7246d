"""The onset layer `airgrid-rules score --csv` prints through: an episode of high scores is
one detection, as the anomaly rule's one alert, and a later, clearly stronger or renewed
anomaly is another."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from alert_rules.anomaly import Detector
from alert_rules.anomaly_onsets import Onsets
from alert_rules.cli import score_rows

ROW = np.zeros(1, np.int64)


def through(scores: list[float], onsets: Onsets | None = None) -> list[float]:
    f = onsets or Onsets()
    return [float(f.update(ROW, np.array([s]))[0]) for s in scores]


def test_an_episode_of_high_scores_opens_once() -> None:
    out = through([0.1] * 20 + [0.95] * 50 + [0.1] * 5)
    assert out[20] == 0.95
    assert sum(s > 0.5 for s in out) == 1


def test_a_clearly_stronger_reading_inside_an_episode_opens_again() -> None:
    out = through([0.1] * 20 + [0.9] * 10 + [0.99] + [0.9] * 10)
    # z of 0.9 is 6, of 0.99 about 19.9: more than `gain` times the held peak
    assert out[20] == 0.9 and out[30] == 0.99
    assert sum(s > 0.5 for s in out) == 2


def test_a_renewed_anomaly_opens_once_the_episode_has_faded() -> None:
    f = Onsets()
    quiet = int(np.ceil(np.log(1 / f.gain) / np.log(f.decay))) + 1  # readings to fade
    out = through([0.9] + [0.0] * quiet + [0.9], f)
    assert out[0] == 0.9 and out[-1] == 0.9
    # too soon, the same strength continues the episode
    assert through([0.9] + [0.0] * 3 + [0.9])[-1] == 0.0


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, (4, 30), elements=st.floats(0, 1)))
def test_devices_side_by_side_open_as_each_alone(scores: np.ndarray) -> None:
    together = Onsets()
    rows = np.arange(4, dtype=np.int64)
    side_by_side = np.array([together.update(rows, scores[:, i]) for i in range(30)]).T
    for j in range(4):
        assert side_by_side[j].tolist() == through(scores[j].tolist())


def test_score_prints_a_held_shift_once_where_the_detector_scores_it_many_times() -> None:
    rng = np.random.default_rng(3)
    x = 100 * (1 + 0.05 * rng.standard_normal(600))
    x[400:] *= 3  # a level that stays
    t0 = 1_500_000_000
    rows = [(str(t0 + 300 * i), f"{v:.2f}") for i, v in enumerate(x)]
    printed = [s for _, _, s, _ in score_rows(rows)]
    det = Detector()
    raw = [float(det.update(ROW, np.array([v]), np.array([(t0 + 300 * i) * 1000]))[0])
           for i, v in enumerate(x)]
    assert sum(s >= 0.9 for s in raw[400:]) > 50  # the detector: the episode, every reading
    opened = [i for i, s in enumerate(printed) if s is not None and s >= 0.9]
    # printed where it starts, and while it grows (each reading clearly above the last)
    assert opened and opened[0] in (400, 401) and opened[-1] < 410
    assert all(s is not None and 0.0 <= s <= 1.0 for s in printed)
