"""The neighbour median the spatial rule reads: the gathered sorting network equals
numpy's nanmedian, and the candidates found without sorting hold every device that is
`ratio` × above its neighbours' median."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings

from alert_rules.neighbours import above_median_candidates, gather_median

value = st.one_of(st.floats(-50, 500, allow_nan=False), st.just(float("nan")),
                  st.sampled_from([0.0, 1e-310, -1e-310, 30.0, 60.0]))


@settings(max_examples=150, deadline=None)
@given(values=st.lists(value, min_size=1, max_size=12), k=st.integers(1, 9),
       seed=st.integers(0, 2**32 - 1), ratio=st.sampled_from([1.2, 1.5, 2.0, 3.0]))
def test_gathered_median_and_candidates(values: list[float], k: int, seed: int,
                                        ratio: float) -> None:
    v = np.array(values)
    n = v.size
    rng = np.random.default_rng(seed)
    nbr_t = rng.integers(0, n + 1, (k, n))  # n: no neighbour
    gathered = np.r_[v, np.nan][nbr_t]
    med, count = gather_median(v, nbr_t)
    with np.errstate(all="ignore"):
        want = np.array([np.nanmedian(c) if (~np.isnan(c)).any() else np.nan
                         for c in gathered.T])
    assert np.array_equal(med, want, equal_nan=True) or np.allclose(
        med, want, rtol=1e-15, atol=0, equal_nan=True)
    assert count.tolist() == (~np.isnan(gathered)).sum(axis=0).tolist()
    with np.errstate(invalid="ignore"):
        far = np.flatnonzero(v > med * ratio)
    cand = above_median_candidates(v, nbr_t, ratio)
    assert cand[far].all(), (far, np.flatnonzero(cand))
