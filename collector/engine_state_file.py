"""The rule engine's state on disk (rule windows, pending/firing per device).

Saved every `every_s` and at exit, restored at start-up, so a restart neither forgets a
firing alert nor announces it again. Saving costs the ingest thread one copy of the
engine's arrays (`Engine.snapshot_arrays`); a background thread serializes them to a
temporary file, syncs it and renames it over the last snapshot, so a crash or power cut
mid-write leaves the previous snapshot whole. A failure to save is logged and counted,
never fatal; a snapshot taken with other rules, or damaged anywhere, is renamed to
`<name>.refused` (kept for a look, out of the next start's way), counted, and the engine
starts empty.

The copy goes into buffers kept from one save to the next, and touched once in the
background at start-up (`warm`): copying into fresh memory costs a page fault per 4 kB,
which at 100,000 devices (~300 MB of state) made one copy ~450 ms of the ingest thread,
against a memcpy's tens of ms into warm memory. The price is the snapshot's size held
resident, which each save held anyway while it was written.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from alert_rules.engine import Engine, write_snapshot
from alert_rules.saved_state import SnapshotError
from collector.metrics import Metrics

log = logging.getLogger(__name__)


class EngineStateFile:
    def __init__(self, engine: Engine, path: Path | None, every_s: float = 30.0,
                 metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.path = path  # None: the state is not kept
        self.metrics = metrics
        self.every_s = every_s
        self._writer: threading.Thread | None = None
        #: the copy's buffers, reused while the engine's arrays keep their shape
        self._buffers: dict[str, npt.NDArray[np.generic]] = {}
        # figures of the last save (the bench and the health report read them)
        self.copy_ms = 0.0  # on the caller's (ingest) thread
        self.write_ms = 0.0  # in the background
        self.bytes = 0
        self.saved = 0
        self.failed = 0
        self.refused = 0  # snapshots not restored at start-up (set aside)

    def save(self) -> None:
        """Copy the engine's state and write it in the background. Waits only if the
        previous write is still running (a slow disk), so snapshots stay in order."""
        if self.path is None:
            return
        self.wait()
        started = time.perf_counter()
        arrays = self._copy(self.engine.snapshot_arrays(copy=False))
        self.copy_ms = (time.perf_counter() - started) * 1000
        # not a daemon: an exiting interpreter finishes the last snapshot first
        self._writer = threading.Thread(target=self._write, args=(self.path, arrays),
                                        name="engine-snapshot")
        self._writer.start()

    def warm(self) -> None:
        """Allocate and touch the copy's buffers in the background (start-up, after the
        restore), so the first save on the ingest thread copies into warm memory. The
        copy made here is torn (the engine moves meanwhile) and never written; the first
        `save` waits for it and overwrites every buffer."""
        if self.path is None:
            return
        self.wait()
        views = self.engine.snapshot_arrays(copy=False)
        self._writer = threading.Thread(target=self._copy, args=(views,), daemon=True,
                                        name="engine-snapshot-warm")
        self._writer.start()

    def _copy(self, views: dict[str, npt.NDArray[np.generic]]
              ) -> dict[str, npt.NDArray[np.generic]]:
        """`views` copied into the kept buffers (new ones where a shape changed: the fleet
        grew). Only one save or warm-up runs at a time (`wait`), so no write reads a
        buffer being refilled."""
        copied: dict[str, npt.NDArray[np.generic]] = {}
        for key, view in views.items():
            buf = self._buffers.get(key)
            if buf is None or buf.shape != view.shape or buf.dtype != view.dtype:
                buf = np.empty_like(view)
                self._buffers[key] = buf
            np.copyto(buf, view)
            copied[key] = buf
        for key in self._buffers.keys() - views.keys():
            del self._buffers[key]
        return copied

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for the write in progress; True when none is left running."""
        writer = self._writer
        if writer is not None:
            writer.join(timeout_s)
            if writer.is_alive():
                return False
            self._writer = None
        return True

    def close(self) -> None:
        self.wait()

    def _write(self, path: Path, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        started = time.perf_counter()
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                write_snapshot(fh, arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            _sync_dir(path.parent)
        except (OSError, ValueError) as exc:
            self.failed += 1
            if self.metrics is not None:
                self.metrics.engine_state_save_errors.inc()
            log.error("engine state not saved to %s: %s", path, exc)
            return
        self.bytes = path.stat().st_size
        self.write_ms = (time.perf_counter() - started) * 1000
        self.saved += 1

    def restore(self) -> bool:
        """Load the saved snapshot. One that does not fit (other rules, or damaged) is
        set aside as `<name>.refused` and counted, not fatal; the engine is left empty."""
        if self.path is None or not self.path.exists():
            return False
        try:
            self.engine.restore(self.path.read_bytes())
        except (OSError, SnapshotError) as exc:
            self.refused += 1
            if self.metrics is not None:
                self.metrics.engine_state_refused.inc()
            aside = self.path.with_name(self.path.name + ".refused")
            try:
                os.replace(self.path, aside)
            except OSError as move_exc:
                aside = self.path
                log.error("engine state in %s not set aside: %s", self.path, move_exc)
            log.warning("engine state in %s not restored (%s); starting with empty windows "
                        "(the file is kept as %s)", self.path, exc, aside)
            return False
        log.info("engine state restored: %d devices", self.engine.fleet.size)
        return True


def _sync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX: the directory entry lives in the directory)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
