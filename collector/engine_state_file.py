"""The rule engine's state on disk (rule windows, pending/firing per device).

Saved atomically every `every_s` and at exit, restored at start-up, so a restart neither
forgets a firing alert nor announces it again. A failure to save is logged, never fatal;
a snapshot taken with other rules is set aside and the engine starts empty.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from alert_rules.engine import Engine, SnapshotError

log = logging.getLogger(__name__)


class EngineStateFile:
    def __init__(self, engine: Engine, path: Path | None, every_s: float = 30.0) -> None:
        self.engine = engine
        self.path = path  # None: the state is not kept
        self.every_s = every_s

    def save(self) -> None:
        """Write the engine's snapshot atomically; a failure is logged, never fatal."""
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(self.engine.snapshot())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("engine state not saved to %s: %s", self.path, exc)

    def restore(self) -> bool:
        """Load the saved snapshot; one taken with other rules is set aside, not fatal."""
        if self.path is None or not self.path.exists():
            return False
        try:
            self.engine.restore(self.path.read_bytes())
        except (OSError, SnapshotError) as exc:
            log.warning("engine state in %s not restored (%s); starting with empty windows",
                        self.path, exc)
            return False
        log.info("engine state restored: %d devices", self.engine.fleet.size)
        return True
