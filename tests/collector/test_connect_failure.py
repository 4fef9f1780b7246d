"""A collector that cannot reach its broker says where it tried and why, and keeps trying."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orchestration.services import Mosquitto, free_port
from tests.support.integration import Processes
from tests.support.wait import wait_for


def test_unreachable_broker_is_logged_with_address_and_reason_then_connects(
        processes: Processes, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[broker]\nport = {port}\n[influx]\nurl = "http://127.0.0.1:{free_port()}"\n'
        f'[spool]\ndir = "{tmp_path / "spool"}"\n[state]\nfile = "{tmp_path / "state.db"}"\n')
    log = tmp_path / "collector.log"
    with log.open("ab") as out:
        processes.popen(
            [sys.executable, "-m", "collector.cli", "run", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    # at the default log level, within a few seconds: host:port and the OS's reason
    want = f"cannot reach broker 127.0.0.1:{port}: ConnectionRefusedError"
    assert wait_for(lambda: want in log.read_text(), 8, step=0.1), log.read_text()
    # still trying: a second attempt is logged too (reconnect delay 1 s, then more)
    assert wait_for(lambda: log.read_text().count(want) >= 2, 8, step=0.1), log.read_text()
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.port = port  # the broker appears where the collector has been trying
    processes.service(broker)
    assert wait_for(lambda: "subscribed to device topics" in log.read_text(), 20, step=0.1), \
        log.read_text()
