"""The chaos run, short: faults of every kind while readings flow; then count."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.support.integration import Processes

CHAOS = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def test_two_minute_chaos_loses_and_duplicates_nothing(processes: Processes) -> None:
    out = processes.run(
        [sys.executable, str(CHAOS), "--devices", "6", "--seconds", "120", "--seed", "7"],
        capture_output=True, text=True, timeout=900,
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["faults_injected"] >= 6, summary
    assert set(summary["faults"]) == {"broker_restart", "collector_kill", "influx_outage",
                                      "agent_kill", "agent_netcut", "outbox_fill",
                                      "episode_netcut"}
    assert summary["captured"] > 500
    assert summary["drained"], out.stderr[-3000:]
    assert summary["lost"] == 0, summary
    assert summary["duplicates"] == 0, summary
    assert summary["dropped_counted"] > 0  # the overflowed outbox counted what it dropped
    assert summary["stored"] + summary["dropped_counted"] >= summary["captured"]
    assert summary["alerts_notified"] == summary["alerts_expected"] >= 1, summary
    assert summary["false_alerts"] == 0
    assert summary["alerts_duplicated"] == 0, summary
    # every episode device was cut as its episode began, and still alerted once (from the
    # backlog, or, when the cut ends before the rule's `for` is over, live at the restore)
    assert summary["episode_cuts"] == summary["alerts_expected"], summary
    assert out.returncode == 0
