"""The neighbour search: exactly the rows, order and padding of the one-radius search it
replaced (`tests.support.neighbours_reference`), on generated layouts: duplicates, regular grids
(many equal distances), NaN positions, dense clusters with sparse outliers, k above the
population."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alert_rules.neighbours import neighbours
from alert_rules.state import FloatArr
from tests.support.neighbours_reference import brute_force, one_radius_neighbours


def lat_lon(points: list[tuple[float, float]]) -> tuple[FloatArr, FloatArr]:
    a = np.array(points, np.float64).reshape(-1, 2)
    return a[:, 0].copy(), a[:, 1].copy()


BASE = (30.0, 114.0)


@st.composite
def layouts(draw: st.DrawFn) -> list[tuple[float, float]]:
    """A county's devices in degrees: clusters (some dense enough that the search starts
    well below the radius), a regular grid, exact duplicates, sparse outliers, and rows
    without a position."""
    pts: list[tuple[float, float]] = []
    for _ in range(draw(st.integers(0, 3))):  # clusters
        c = (BASE[0] + draw(st.floats(-0.3, 0.3)), BASE[1] + draw(st.floats(-0.3, 0.3)))
        spread = draw(st.sampled_from([1e-4, 1e-3, 5e-3, 0.03]))
        seed = draw(st.integers(0, 2**32 - 1))
        size = draw(st.integers(1, 150))
        rng = np.random.default_rng(seed)
        pts += [(c[0] + a, c[1] + b) for a, b in rng.normal(0, spread, (size, 2)).tolist()]
    if draw(st.booleans()):  # a regular grid: rings of equal distances
        step = draw(st.sampled_from([0.001, 0.002, 0.01, 0.02]))
        w, h = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        pts += [(BASE[0] + i * step, BASE[1] + j * step) for i in range(w) for j in range(h)]
    pts += draw(st.lists(st.tuples(st.floats(BASE[0] - 0.5, BASE[0] + 0.5),
                                   st.floats(BASE[1] - 0.5, BASE[1] + 0.5)), max_size=20))
    if pts:  # duplicates of some rows
        for i in draw(st.lists(st.integers(0, len(pts) - 1), max_size=15)):
            pts.append(pts[i])
    nan = float("nan")
    pts += draw(st.lists(st.sampled_from([(nan, nan), (nan, BASE[1]), (BASE[0], nan)]),
                         max_size=5))
    return draw(st.permutations(pts)) if len(pts) < 400 else pts


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.data_too_large])
@given(layouts(), st.sampled_from([0.05, 0.3, 1.0, 3.0, 10.0, 200.0]),
       st.integers(1, 12))
def test_the_search_gives_exactly_what_the_one_radius_search_gave(
        points: list[tuple[float, float]], radius_km: float, k: int) -> None:
    lat, lon = lat_lon(points)
    got = neighbours(lat, lon, radius_km, k)
    assert np.array_equal(got, one_radius_neighbours(lat, lon, radius_km, k))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(29.9, 30.1), st.floats(113.9, 114.1)), max_size=60),
       st.sampled_from([0.5, 3.0, 30.0]), st.integers(1, 80))
def test_k_above_the_population_lists_everyone_within_the_radius(
        points: list[tuple[float, float]], radius_km: float, k: int) -> None:
    lat, lon = lat_lon(points)
    got = neighbours(lat, lon, radius_km, k)
    assert np.array_equal(got, brute_force(lat, lon, radius_km, k))
    assert np.array_equal(got, one_radius_neighbours(lat, lon, radius_km, k))


def test_a_dense_regular_grid_matches_the_one_radius_search() -> None:
    """collector_scale's registry in small: a grid 0.001° apart (111 m × 96 m, about 94
    per km²), radius 3 km, k 8: rings of equal distances, every device a full list."""
    i = np.arange(4000)
    lat = 30 + (i % 200) / 1000
    lon = 114 + (i // 200) / 1000
    got = neighbours(lat, lon, 3.0, 8)
    assert np.array_equal(got, one_radius_neighbours(lat, lon, 3.0, 8))
    assert (got >= 0).all()


def test_nothing_for_no_positions_no_radius_or_no_k() -> None:
    lat, lon = lat_lon([(30.0, 114.0), (30.0, 114.0), (float("nan"), 114.0)])
    assert neighbours(lat, lon, 3.0, 0).shape == (3, 0)
    assert (neighbours(lat, lon, -1.0, 2) == -1).all()
    # radius 0: only devices at the very same place, as the one-radius search had it
    assert neighbours(lat, lon, 0.0, 2).tolist() == [[1, -1], [0, -1], [-1, -1]]
    empty = np.zeros(0)
    assert neighbours(empty, empty, 3.0, 4).shape == (0, 4)
