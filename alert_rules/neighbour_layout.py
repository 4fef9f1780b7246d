"""The neighbour layout the spatial rules share (spatial, sensor fault, the anomaly rule's
neighbour check): each row's nearest neighbours and township code, found from the
registry's positions and townships.

Finding neighbours is the costly part (`alert_rules.neighbours`), so a layout keeps the
inputs it was found from (latitude, longitude, township of each row) and is reused
whenever the positions did not change: a registry reload that moved nobody costs a
comparison, not a search (township codes are renumbered if townships changed). Rows
added without a position (a device that is not in the registry) are nobody's neighbour
and have none: the layout is extended with empty columns. Rows added with a position
mean the registry changed: searched again.

`build_layout` uses no fleet state, so a registry reload can prepare the layouts on the
thread that parsed the registry (`prepare_layouts`) and put them in place on the ingest
thread (`install_layouts`), which then costs a check of the row order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from alert_rules.neighbours import neighbours
from alert_rules.registry import Registered
from alert_rules.state import FleetState, FloatArr, IntArr


@dataclass(frozen=True, eq=False)
class NeighbourLayout:
    """Neighbours (k × rows, the row count standing for none: columns of neighbour
    values gather row by row), township code + 1 per row (0: none) and the township
    names, with what they were found from. Never changed once built (shared between
    threads and rules)."""

    radius_km: float
    k: int
    devices: tuple[str, ...]  # the row order it was built for
    registry: Mapping[str, Registered]  # the registry it was built from (compared by identity)
    lat: FloatArr  # per row; NaN: not in the registry, or no position
    lon: FloatArr
    townships: tuple[str, ...]  # per row; "": none
    nbr_t: IntArr
    town: IntArr
    names: list[str]

    @property
    def size(self) -> int:
        return len(self.devices)

    def parts(self) -> tuple[IntArr, IntArr, list[str]]:
        return self.nbr_t, self.town, self.names


def layout_key(radius_km: float, k: int) -> str:
    """The key of a layout in `FleetState.layout` (one per radius and k)."""
    return f"spatial:{radius_km}:{k}"


def build_layout(devices: Sequence[str], registry: Mapping[str, Registered], radius_km: float,
                 k: int, previous: NeighbourLayout | None = None) -> NeighbourLayout:
    """The layout of these rows (row i is devices[i]) under this registry. With
    `previous` (a layout of the same radius and k, e.g. the one in use), its neighbours
    are reused when the rows' positions and townships did not change, and extended when
    the only change is rows added without a latitude. Reads nothing else: safe on any
    thread."""
    rows = tuple(devices)
    if previous is not None and (previous.radius_km, previous.k) != (radius_km, k):
        previous = None
    n0 = previous.size if previous is not None else 0
    if (previous is not None and previous.registry is registry and len(rows) >= n0
            and rows[:n0] == previous.devices):
        # the same registry and the same first rows: their inputs are as they were
        lat_t, lon_t, town_t = _inputs(rows[n0:], registry)
        lat = np.concatenate([previous.lat, lat_t])
        lon = np.concatenate([previous.lon, lon_t])
        townships = previous.townships + town_t
    else:
        lat, lon, townships = _inputs(rows, registry)
    if previous is not None and _grown_without_positions(previous, lat, lon):
        return _extended(previous, rows, registry, lat, lon, townships)
    names, town = _township_codes(townships)
    nbr = neighbours(lat, lon, radius_km, k)
    n = len(rows)
    nbr_t = np.ascontiguousarray(np.where(nbr >= 0, nbr, n).T)
    return NeighbourLayout(radius_km, k, rows, registry, lat, lon, townships, nbr_t, town,
                           names)


def neighbour_layout(fleet: FleetState, radius_km: float, max_neighbours: int
                     ) -> tuple[IntArr, IntArr, list[str]]:
    """(neighbour rows as a (k × devices) matrix, the fleet size standing for none;
    township code + 1 per row, 0 for none; township names) of the fleet's rows under its
    registry, cached in `fleet.layout` (one per radius and k, whichever rule asks
    first). Rows never move, so a cached layout of the fleet's registry and size is the
    fleet's; otherwise it is rebuilt from the cached one (`build_layout`)."""
    key = layout_key(radius_km, max_neighbours)
    hit = fleet.layout.get(key)
    cached = hit if isinstance(hit, NeighbourLayout) else None
    if cached is not None and cached.registry is fleet.registry and cached.size == fleet.size:
        return cached.parts()
    layout = build_layout(fleet.devices, fleet.registry, radius_km, max_neighbours, cached)
    fleet.layout[key] = layout
    return layout.parts()


def prepare_layouts(layouts: Mapping[str, object], devices: Sequence[str],
                    registry: Mapping[str, Registered]) -> dict[str, NeighbourLayout]:
    """For a registry reload, on any thread: every neighbour layout among `layouts` (a
    copy of `fleet.layout`) rebuilt for the rows the fleet will have (`devices`: its
    rows, then the registry's new devices in the order they will be added) under the new
    registry, reusing each where positions and townships did not change. Put in place
    with `install_layouts` once `fleet.registry` is this very mapping."""
    return {key: build_layout(devices, registry, v.radius_km, v.k, v)
            for key, v in layouts.items() if isinstance(v, NeighbourLayout)}


def install_layouts(fleet: FleetState, prepared: Mapping[str, NeighbourLayout]) -> int:
    """On the ingest thread, after the reload set `fleet.registry` and added the new rows:
    use the prepared layouts that were built for this registry and these rows (a device
    that arrived in between may have taken a row; such a layout is left out and rebuilt
    from the cached one when a rule asks, reusing it if nothing moved). Returns how many
    were installed."""
    installed = 0
    for key, layout in prepared.items():
        if (layout.registry is fleet.registry and layout.size == fleet.size
                and layout.devices == tuple(fleet.devices)):
            fleet.layout[key] = layout
            installed += 1
    return installed


def _inputs(rows: Sequence[str], registry: Mapping[str, Registered]
            ) -> tuple[FloatArr, FloatArr, tuple[str, ...]]:
    regs = [registry.get(d) for d in rows]
    lat = np.array([r.lat if r else np.nan for r in regs], np.float64)
    lon = np.array([r.lon if r else np.nan for r in regs], np.float64)
    return lat, lon, tuple(r.township if r else "" for r in regs)


def _grown_without_positions(previous: NeighbourLayout, lat: FloatArr, lon: FloatArr
                             ) -> bool:
    """Whether the rows are at the previous layout's rows' positions, plus rows without a
    latitude (with none, a row is nobody's neighbour, and the projection's mean
    latitude does not move: the old neighbours stand)."""
    n0 = previous.size
    return (lat.size >= n0 and bool(np.isnan(lat[n0:]).all())
            and np.array_equal(lat[:n0], previous.lat, equal_nan=True)
            and np.array_equal(lon[:n0], previous.lon, equal_nan=True))


def _extended(previous: NeighbourLayout, rows: tuple[str, ...],
              registry: Mapping[str, Registered], lat: FloatArr, lon: FloatArr,
              townships: tuple[str, ...]) -> NeighbourLayout:
    """The previous layout's neighbours, with columns of "none" for the added rows (and
    none the new row count); township codes renumbered only when townships changed."""
    n0, n = previous.size, len(rows)
    if n == n0:
        nbr_t = previous.nbr_t  # the same array: what rules derived from it stays valid
    else:
        nbr_t = np.full((previous.k, n), n, np.int64)
        nbr_t[:, :n0] = np.where(previous.nbr_t >= n0, n, previous.nbr_t)
    known = set(previous.names)
    if townships[:n0] != previous.townships:
        names, town = _township_codes(townships)
    elif n == n0:
        names, town = previous.names, previous.town
    elif all(t in known or not t for t in townships[n0:]):
        names = previous.names
        code = {t: i + 1 for i, t in enumerate(names)}
        town = np.concatenate([previous.town,
                               np.array([code.get(t, 0) for t in townships[n0:]], np.int64)])
    else:
        names, town = _township_codes(townships)
    return NeighbourLayout(previous.radius_km, previous.k, rows, registry, lat, lon,
                           townships, nbr_t, town, names)


def _township_codes(townships: tuple[str, ...]) -> tuple[list[str], IntArr]:
    names = sorted({t for t in townships if t})
    code = {t: i + 1 for i, t in enumerate(names)}
    return names, np.array([code.get(t, 0) for t in townships], np.int64)
