"""Checks on state read back from a snapshot: a file on disk, so possibly damaged.

A snapshot is refused whole (`SnapshotError`) unless every array has the shape and kind
the engine's state needs; the engine then starts with empty windows instead of running
on state that would fail, or mislead, at some later tick.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt


class SnapshotError(ValueError):
    """A snapshot does not fit this engine (other rules or fields, or damaged): start
    cold instead."""


def checked(arrays: Mapping[str, npt.NDArray[np.generic]], key: str,
            shape: tuple[int, ...], dtype: npt.DTypeLike) -> npt.NDArray[np.generic]:
    """`arrays[key]`, which must have `shape` and a dtype that casts to `dtype` within
    its kind (an integer array for a float column, not a float array for an integer one)."""
    a = arrays.get(key)
    if a is None:
        raise SnapshotError(f"snapshot lacks {key!r}")
    if a.shape != shape:
        raise SnapshotError(f"snapshot array {key!r} has shape {a.shape}, not {shape}")
    if not np.can_cast(a.dtype, dtype, "same_kind"):
        raise SnapshotError(f"snapshot array {key!r} holds {a.dtype}, not {np.dtype(dtype)}")
    return a


def rows_of(arrays: Mapping[str, npt.NDArray[np.generic]], key: str, ndim: int,
            what: str) -> int:
    """The length of `arrays[key]`, which must be present with `ndim` dimensions."""
    a = arrays.get(key)
    if a is None or a.ndim != ndim:
        raise SnapshotError(f"snapshot of {what}: {key!r} missing or not {ndim}-D")
    return int(a.shape[0])


def column(arrays: Mapping[str, npt.NDArray[np.generic]], key: str,
           dtype: npt.DTypeLike, what: str) -> npt.NDArray[np.generic]:
    """`arrays[key]`, which must be 1-D of a dtype that casts to `dtype`."""
    return checked(arrays, key, (rows_of(arrays, key, 1, what),), dtype)


def one_length(arrays: Mapping[str, npt.NDArray[np.generic]], what: str,
               dtypes: Mapping[str, npt.DTypeLike]) -> int:
    """The one length of `arrays`' columns named in `dtypes` (each present, 1-D, of a
    dtype that casts to the named one): per-row columns saved together must line up."""
    n = rows_of(arrays, next(iter(dtypes)), 1, what)
    for key, dtype in dtypes.items():
        checked(arrays, key, (n,), dtype)
    return n
