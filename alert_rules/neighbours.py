"""Nearest neighbours within a radius, as a padded (devices × k) index matrix.

Built once per registry (not in the tick). Devices are binned in square cells; a device
compares itself with the devices of its 3 × 3 block of cells. One cell the radius wide
would make that (devices × block) work quadratic in density (100,000 devices at 94 per
km² and 3 km: about 7,600 candidates each), so the search starts at a radius chosen from
the local density, where a cell holds about k / 2 devices, and settles every device that
found k neighbours closer than that radius: nothing outside its block can be closer, so
the answer is exact. Only the others are searched again, at doubling radii, the last
time one cell the full radius wide — the grid the whole search used to run on.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

from alert_rules.state import BoolArr, FloatArr, IntArr

EARTH_RADIUS_KM = 6371.0088  # IUGG mean Earth radius

#: a device's first search radius is the width of the smallest cell around it that holds
#: this many × k devices (at 100,000 devices, 0.5 took 10-30 % less time than 1 or 2:
#: fewer sends more devices round again, more makes every block larger)
START_SHARE = 0.5
#: distances worked out at once (one float64 and one int64 matrix of this many entries)
CHUNK_ENTRIES = 1 << 21
#: a pass settles only neighbours closer than its radius by this relative margin, so a
#: rounding of the cell arithmetic can never hide a closer device in a cell further out
MARGIN = 1e-9
_OFFSETS = [(da, db) for da in (-1, 0, 1) for db in (-1, 0, 1)]


def neighbours(lat: FloatArr, lon: FloatArr, radius_km: float, k: int) -> IntArr:
    """Up to k nearest other devices within radius_km of each, nearest first, equal
    distances in row order; -1 pads. NaN position: none."""
    n = lat.size
    out = np.full((n, k), -1, np.int64)
    ok = ~(np.isnan(lat) | np.isnan(lon))
    if n == 0 or k == 0 or not ok.any() or not radius_km >= 0:
        return out
    # local equirectangular projection: fine at county scale (tens of km)
    lat0 = float(np.mean(lat[ok]))  # the placed rows only: rows without a place never move it
    y = np.radians(lat) * EARTH_RADIUS_KM
    x = np.radians(lon) * EARTH_RADIUS_KM * np.cos(np.radians(lat0))
    rows = np.flatnonzero(ok)
    px, py = x[rows], y[rows]
    if radius_km == 0:  # only devices at the very same place (distance 0): exact cells
        cx = np.unique(px, return_inverse=True)[1].reshape(-1)
        cy = np.unique(py, return_inverse=True)[1].reshape(-1)
        _search(px, py, cx, cy, np.arange(rows.size), k, 0.0, True, rows, out)
        return out
    span = max(float(np.ptp(px)), float(np.ptp(py)))
    slack = MARGIN * (1.0 + float(np.abs(px).max()) + float(np.abs(py).max()))
    start = _start_halvings(px, py, radius_km, k, span, slack)
    settled = np.zeros(rows.size, bool)
    halvings = int(start.max())
    while True:
        final = halvings == 0
        r = radius_km if final else math.ldexp(radius_km, -halvings)
        todo = np.flatnonzero((start >= halvings) & ~settled)
        if todo.size:
            cx, cy = _cells(px, r), _cells(py, r)
            bound = radius_km if final else r * (1 - MARGIN) - slack
            settled[_search(px, py, cx, cy, todo, k, bound, final, rows, out)] = True
        if final:
            return out
        left = ~settled
        if (left & (start >= halvings)).any():
            halvings -= 1  # the unsettled go round again at twice the radius
        else:  # nobody carried over: on to the next device's own first radius
            later = start[left]
            halvings = int(later.max()) if later.size else 0
        # a block that spans every device holds all of them: the last pass says it all
        if math.ldexp(radius_km, -halvings) > 2 * span:
            halvings = 0


def _cells(v: FloatArr, width: float) -> IntArr:
    return np.floor(v / width).astype(np.int64)


def _start_halvings(px: FloatArr, py: FloatArr, radius_km: float, k: int,
                    span: float, slack: float) -> IntArr:
    """How many times to halve the radius for each device's first pass: as often as its
    cell (on grids of halving width) still holds START_SHARE × k devices. A cell holds
    only devices whose cell one level up did, so each level looks at fewer devices.
    Never below a few × `slack` (devices at one point): no pass there could settle."""
    top = max(0, math.floor(math.log2(radius_km / span))) if span > 0 else 0
    out = np.full(px.size, top, np.int64)
    alive = np.arange(px.size)
    for h in range(top + 1, top + 40):
        g = math.ldexp(radius_km, -h)
        if g < 4 * slack:
            break
        _, inv, count = np.unique(_keys(_cells(px[alive], g), _cells(py[alive], g))[2],
                                  return_inverse=True, return_counts=True)
        alive = alive[count[inv.reshape(-1)] >= START_SHARE * k]
        if alive.size == 0:
            break
        out[alive] = h
    return out


def _search(px: FloatArr, py: FloatArr, cx: IntArr, cy: IntArr, members: IntArr, k: int,
            bound: float, final: bool, rows: IntArr, out: IntArr) -> IntArr:
    """One pass over cells (cx, cy) for `members` (indices into px/py): writes the k
    nearest of those that have k closer than `bound` (all of them when `final`, closer
    than or at `bound`) into `out` (row numbers `rows`); returns the members written."""
    ux, uy, key = _keys(cx, cy)
    order = np.argsort(key, kind="stable")  # by cell, then by row
    cells, first, count = np.unique(key[order], return_index=True, return_counts=True)
    m = members.size
    lo = np.zeros((m, 9), np.int64)
    ln = np.zeros((m, 9), np.int64)
    for j, (da, db) in enumerate(_OFFSETS):
        fx, hx = _find(ux, cx[members] + da)
        fy, hy = _find(uy, cy[members] + db)
        fc, hc = _find(cells, fx * uy.size + fy)
        hit = hx & hy & hc
        lo[:, j] = np.where(hit, first[fc], 0)
        ln[:, j] = np.where(hit, count[fc], 0)
    width = ln.sum(axis=1)  # candidates of each member
    by = np.argsort(width, kind="stable")  # members with blocks of like size together
    done: list[IntArr] = []
    i = 0
    while i < m:
        # as many members as fit CHUNK_ENTRIES at the widest block among them
        most = i + CHUNK_ENTRIES // max(1, int(width[by[i]])) + 1  # widths grow
        cost = np.arange(1, min(most, m) - i + 1) * width[by[i:most]]
        j = i + max(1, int(np.searchsorted(cost, CHUNK_ENTRIES, side="right")))
        part = by[i:j]
        done.append(_nearest(px, py, members[part], lo[part], ln[part], order, k, bound,
                             final, rows, out))
        i = j
    return np.concatenate(done) if done else np.zeros(0, np.int64)


def _keys(cx: IntArr, cy: IntArr) -> tuple[IntArr, IntArr, IntArr]:
    """(distinct cx, distinct cy, one integer per cell): cell coordinates numbered by
    rank, so the key cannot overflow however far apart the cells are."""
    ux, ix = np.unique(cx, return_inverse=True)
    uy, iy = np.unique(cy, return_inverse=True)
    return ux, uy, ix.reshape(-1) * uy.size + iy.reshape(-1)


def _find(sorted_keys: IntArr, want: IntArr) -> tuple[IntArr, BoolArr]:
    """(index of each wanted key in sorted_keys, whether it is there)."""
    at = np.minimum(np.searchsorted(sorted_keys, want), sorted_keys.size - 1)
    return at, sorted_keys[at] == want


def _nearest(px: FloatArr, py: FloatArr, mine: IntArr, lo: IntArr, ln: IntArr,
             order: IntArr, k: int, bound: float, final: bool, rows: IntArr,
             out: IntArr) -> IntArr:
    """The k nearest for one chunk of members, whose 9 cells start at `lo` in `order`
    and hold `ln` devices; returns the members written (see `_search`)."""
    m = mine.size
    total = ln.sum(axis=1)
    seg = ln.reshape(-1)
    # each member's candidates side by side in a row, padded at the end of the row
    at = np.arange(int(seg.sum())) - np.repeat(np.cumsum(seg) - seg - lo.reshape(-1), seg)
    use = np.arange(int(total.max()) if m else 0) < total[:, None]
    cand = np.zeros(use.shape, np.int64)
    cand[use] = order[at]
    # the same distance, bit for bit, as the one-radius search computed (hypot ignores
    # the sign of its arguments, and x_j - x_i is exactly -(x_i - x_j))
    d = px[cand]
    d -= px[mine][:, None]
    dy = py[cand]
    dy -= py[mine][:, None]
    np.hypot(d, dy, out=d)
    use &= cand != mine[:, None]
    use &= d <= bound if final else d < bound
    done = mine
    if not final:
        enough = use.sum(axis=1) >= k
        use &= enough[:, None]
        done = mine[enough]
    d[~use] = np.inf
    if d.shape[1] > k:  # only what is not farther than the k-th nearest is ordered
        kth = np.partition(d, k - 1, axis=1)[:, k - 1]
        use &= d <= kth[:, None]
    # what is left (k per row but for ties at the k-th distance) packed into short rows
    # and sorted per row: nearest first, equal distances to the lower row
    ri, ci = np.nonzero(use)
    col = np.arange(ri.size) - np.searchsorted(ri, ri)
    short = int(col.max()) + 1 if ri.size else 0
    got = np.zeros((m, short), np.int64)
    dist = np.full((m, short), np.inf)
    got[ri, col] = cand[ri, ci]
    dist[ri, col] = d[ri, ci]
    o = np.lexsort((got, dist), axis=1)[:, :k]
    got = np.take_along_axis(got, o, axis=1)
    found = np.isfinite(np.take_along_axis(dist, o, axis=1))
    written = np.where(found, rows[got], -1)
    if not final:
        mine, written = done, written[enough]
    out[rows[mine], :written.shape[1]] = written
    return done


@functools.cache
def sorting_network(k: int) -> tuple[tuple[int, int], ...]:
    """Compare-exchange pairs that sort k values (Batcher's odd-even merge sort, pairs
    past k dropped: a network for 2^m values sorts any prefix of it padded with +inf)."""
    size = 1
    while size < k:
        size *= 2
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < size:
        q = p
        while q >= 1:
            for j in range(q % p, size - q, 2 * q):
                for i in range(min(q, size - j - q)):
                    a, b = i + j, i + j + q
                    if a // (2 * p) == b // (2 * p) and b < k:
                        pairs.append((a, b))
            q //= 2
        p *= 2
    return tuple(pairs)


def column_median(values: npt.NDArray[np.float64]) -> tuple[FloatArr, IntArr]:
    """(median of each column ignoring NaN — NaN if it has none —, valid values per
    column) of a (k × devices) array. A sorting network of element-wise min/max over k
    rows of the whole fleet instead of `np.sort` of each device's k values: the same
    order statistics, without a per-device sort (about 5× faster at k = 8)."""
    k, n = values.shape
    if k == 0:
        return np.full(n, np.nan), np.zeros(n, np.int64)
    return _sorted_median(list(np.where(np.isnan(values), np.inf, values)))


def gather_median(v: FloatArr, nbr_t: IntArr) -> tuple[FloatArr, IntArr]:
    """`column_median` of `v` gathered through a (k × devices) neighbour matrix whose
    entry len(v) stands for none: NaN is turned into +inf once per device, not once per
    (neighbour, device), and the gather writes straight into the rows the network
    sorts."""
    k, n = nbr_t.shape
    if k == 0:
        return np.full(n, np.nan), np.zeros(n, np.int64)
    src = np.empty(v.size + 1)
    src[:-1] = v
    src[-1] = np.inf
    src[np.isnan(src)] = np.inf  # NaN sorts last
    return _sorted_median(list(np.take(src, nbr_t)))


def _sorted_median(rows: list[FloatArr]) -> tuple[FloatArr, IntArr]:
    """Median and finite count per column of k rows (+inf for none; the rows are sorted
    in place). A compare-exchange writes the min into a spare row and the max in place,
    and the two rows swap names: two passes over the fleet per pair, no copy."""
    k, n = len(rows), rows[0].size
    spare = np.empty(n)
    for a, b in sorting_network(k):
        ra, rb = rows[a], rows[b]
        np.minimum(ra, rb, out=spare)
        np.maximum(ra, rb, out=rb)
        rows[a], spare = spare, ra
    # most devices have k values: their median sits at fixed ranks; only the columns
    # with a missing value (+inf sorted last) are counted and picked one by one
    lo, hi = rows[(k - 1) // 2], rows[k // 2]
    with np.errstate(invalid="ignore"):
        med = (lo + hi) / 2 if k % 2 == 0 else lo.copy()
    count = np.full(n, k, np.int64)
    short = np.flatnonzero(rows[k - 1] == np.inf)
    if short.size:
        sub = np.stack([r[short] for r in rows])  # (k × short), sorted per column
        c = np.isfinite(sub).sum(axis=0)
        cols = np.arange(short.size)
        sl = sub[np.maximum((c - 1) // 2, 0), cols]
        sh = np.where(c % 2 == 1, sl, sub[np.minimum(c // 2, k - 1), cols])
        with np.errstate(invalid="ignore"):
            med[short] = np.where(c > 0, (sl + sh) / 2, np.nan)
        count[short] = c
    return med, count


def row_median(values: npt.NDArray[np.float64]) -> FloatArr:
    """Median of each row ignoring NaN (NaN if the row has none) of a (devices × k) array:
    `column_median` of its transpose."""
    return column_median(np.ascontiguousarray(values.T))[0]


def above_median_candidates(v: FloatArr, nbr_t: IntArr, ratio: float) -> BoolArr:
    """Rows whose value may exceed `ratio` × the median of their neighbours' values
    (`gather_median`'s inputs): a superset, found without sorting. v > med × ratio needs
    the lower middle value (rank (c − 1) // 2 of the c finite ones, never above the
    median) below v / ratio, so at least (c − 1) // 2 + 1 neighbour values must be; the
    comparison has a relative margin, so rounding can only add rows. One gathered row at
    a time, counted in int8: no (k × devices) array."""
    k, n = nbr_t.shape
    src = np.empty(v.size + 1)
    src[:-1] = v
    src[-1] = np.inf
    src[np.isnan(src)] = np.inf
    with np.errstate(invalid="ignore"):
        q = v / ratio
        line = q + np.abs(q) * 1e-9 + 1e-300  # any sign, subnormals too
    below = np.zeros(n, np.int8)
    finite = np.zeros(n, np.int8)
    x = np.empty(n)
    hit = np.empty(n, bool)
    for j in range(k):
        np.take(src, nbr_t[j], out=x, mode="clip")  # indices are in range: no buffering
        np.less(x, line, out=hit)
        below += hit
        np.less(x, np.inf, out=hit)
        finite += hit
    out: BoolArr = (below > 0) & (below >= (finite - 1) // 2 + 1)
    return out
