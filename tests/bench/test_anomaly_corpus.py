"""bench/anomaly_corpus.py scores as the held-out benchmark's published rules say: windows
of 10 % of a series over its anomalies, probation, the first detection of a window
weighted by its place, every detection outside a window charged, one threshold for the
corpus, never firing 0 and detecting at every window's start 100."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import anomaly_corpus as ac

N = 1000


def one(onsets: list[int]) -> ac.Series:
    ts = 1_500_000_000_000 + 300_000 * np.arange(N, dtype=np.int64)
    return ac.Series("s", ts, np.ones(N), list(onsets), ["spike"] * len(onsets))


def scored(series: ac.Series, at: list[int]) -> float:
    scores = np.zeros(N)
    scores[at] = 1.0
    return float(ac.corpus_score([series], [scores], np.array([0.5]))["score"])


def test_windows_probation_and_the_two_ends_of_the_scale() -> None:
    s = one([500])
    assert s.probation == 150
    assert s.windows() == [(450, 550)]  # 10 % of 1000 rows, centred on the anomaly
    assert scored(s, []) == 0.0
    assert scored(s, [450]) == 100.0
    assert scored(s, [450, 460, 540]) == 100.0  # only a window's first detection counts
    # at the anomaly itself: the sigmoid's weight at −51/101 of the window
    w = ac.scaled_sigmoid(-51 / 101) / ac.MAX_TP
    assert scored(s, [500]) == pytest.approx(round(100 * (w + 1) / 2, 1))
    assert scored(s, [100]) == 0.0  # in probation: not counted
    assert scored(s, [300]) == pytest.approx(100 * (-0.11 - 1 + 1) / 2)  # a miss and a cost
    # a false positive just after the window costs little, far after it the full 0.11
    near, far = scored(s, [450, 555]), scored(s, [450, 900])
    assert 100 > near > far == pytest.approx(round(100 * (2 - 0.11) / 2, 1))


def test_the_threshold_is_swept_for_the_whole_corpus() -> None:
    a, b = one([500]), one([700])
    sa, sb = np.zeros(N), np.zeros(N)
    sa[460], sa[800] = 0.9, 0.6  # a find, and a false positive below it
    sb[660], sb[200] = 0.7, 0.95  # a find below a false positive
    best = ac.corpus_score([a, b], [sa, sb], np.array([0.5, 0.65, 0.8, 0.99]))
    assert best["threshold"] == 0.65 and best["found"] == 2 and best["false_positives"] == 1
    assert best["found_by_family"] == {"spike": "2/2"}


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_labelled_anomalies_sit_after_probation_with_windows_apart(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = ac.label(ac.generated(seed % 10, rng), ac.GENERATED_FAMILIES, rng)
    assert 1 <= len(s.onsets) <= 3 and len(s.kinds) == len(s.onsets)
    wins = s.windows()
    assert all(o >= s.probation for o in s.onsets)
    assert all(b < c for (_, b), (c, _) in itertools.pairwise(wins))
    assert np.isfinite(s.x).all()


def test_quiet_series_have_no_window_and_every_detection_there_costs() -> None:
    rng = np.random.default_rng(5)
    for shape in ac.QUIET_SHAPES:
        q = ac.quiet(shape, 0, rng)
        assert q.onsets == [] and q.windows() == [] and np.isfinite(q.x).all()
        assert q.x.size == 14 * 288
    labelled = one([500])
    q = ac.quiet("square_wave", 0, rng)
    scores = [np.zeros(N), np.zeros(q.x.size)]
    scores[0][450] = 1.0
    alone = ac.corpus_score([labelled, q], scores, np.array([0.5]))
    scores[1][[q.probation - 1, q.probation, q.x.size - 1]] = 1.0  # one in probation
    charged = ac.corpus_score([labelled, q], scores, np.array([0.5]))
    assert alone["score"] == 100.0
    assert charged["false_positives"] == 2
    assert charged["quiet_false_positives"]["square_wave"] == 2
    assert charged["score"] == pytest.approx(round(100 * (2 - 2 * 0.11) / 2, 1))


def test_the_labelled_series_are_the_same_with_or_without_the_quiet_ones() -> None:
    ts = 1_500_000_000_000 + 3_600_000 * np.arange(2000, dtype=np.int64)
    x = 50 + 10 * np.sin(np.arange(2000) / 24 * 2 * np.pi)
    a = ac.corpus([("r", ts, x)], np.random.default_rng(3), lambda _: 2)
    b = ac.corpus([("r", ts, x)], np.random.default_rng(3), lambda _: 2, quiet_series=False)
    assert [s.name for s in a[:len(b)]] == [s.name for s in b]
    assert all(np.array_equal(s.x, t.x) and s.onsets == t.onsets
               for s, t in zip(a, b, strict=False))
    assert [s.name for s in a[len(b):]] == [f"quiet_{shape}_0" for shape in ac.QUIET_SHAPES]
