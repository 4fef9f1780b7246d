"""`airgrid demo --headless`: the unattended form prints a JSON summary counted, not assumed."""

from __future__ import annotations

import json
import sys

from tests.support.integration import Processes


def test_headless_demo_reports_no_loss_and_an_alert(processes: Processes) -> None:
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
    assert summary["alerts_fired"] >= 1
