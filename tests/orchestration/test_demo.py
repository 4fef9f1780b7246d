"""`airgrid demo --headless`: the unattended form prints a JSON summary counted, not assumed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.integration import Processes
from tests.support.wait import wait_for


def test_headless_demo_reports_no_loss_an_episode_and_a_frozen_sensor(processes: Processes) -> None:
    out = processes.run(
        [sys.executable, "-m", "orchestration.cli", "demo", "--devices", "2", "--seconds", "22",
         "--headless"],
        capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(summary) >= {"devices", "readings_captured", "readings_stored", "alerts_fired",
                            "lost"}
    assert summary["devices"] == 2
    assert summary["readings_stored"] == summary["readings_captured"] > 20
    assert summary["lost"] == 0
    assert summary["alerts_fired"] >= 2
    # the episode is the grid worker's; the sensor that froze is the technician's, and
    # nothing else is stuck (readings of live sensors vary)
    assert summary["fired_by_rule"]["pm25_heavy"] == ["demo-001"]
    assert summary["fired_by_rule"]["sensor_stuck"] == ["demo-002"]


def _ours(root: Path) -> list[int]:
    """PIDs whose command line mentions `root` (every child of the demo names its dir)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(root).encode() in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_demo_stopped_by_signal_leaves_no_child_and_no_temp_dir(
        processes: Processes, tmp_path: Path, sig: signal.Signals) -> None:
    demo = processes.popen(
        [sys.executable, "-m", "orchestration.cli", "demo", "--devices", "2", "--seconds",
         "600", "--headless"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)})
    # running: both agents have started (the last thing the demo starts)
    assert wait_for(lambda: len(list(tmp_path.glob("airgrid-demo-*/stack/logs/edge-*.log")))
                    == 2, 60, step=0.2), demo.poll()
    assert len(_ours(tmp_path)) >= 6  # broker, InfluxDB, collector, 2 sims, 2 agents
    logs = list(tmp_path.glob("airgrid-demo-*/stack/logs/edge-*.log"))
    assert wait_for(lambda: all("connected to" in p.read_text() for p in logs), 30, step=0.2)
    time.sleep(3)  # a few samples (1 s interval) are captured and published
    demo.send_signal(sig)
    out, err = demo.communicate(timeout=120)
    assert _ours(tmp_path) == [], err[-2000:]
    assert list(tmp_path.glob("airgrid-demo-*")) == [], err[-2000:]
    # the run was ended as Ctrl-C ends it: counted, nothing lost
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["lost"] == 0 and summary["readings_stored"] > 0
