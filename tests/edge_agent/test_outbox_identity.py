"""The outbox's epoch (a new one for a recreated outbox, sent with every batch) and a
damaged outbox row, which is set aside alone instead of costing its whole batch."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from airgrid.wire import decode_up_readings
from edge_agent.config import BrokerSettings, PublishSettings
from edge_agent.outbox import Outbox
from edge_agent.publisher import Publisher
from orchestration.services import Mosquitto
from tests.support.wait import wait_for

NOW = 1_790_000_000_000


def _values(ts: int) -> dict[str, object]:
    return {"ts": ts, "sensor": "pms5003", "pm2_5": 12.5}


def test_the_epoch_is_kept_by_its_file_and_new_for_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ob = Outbox(path)
    epoch = ob.epoch
    assert len(epoch) == 16 and int(epoch, 16) >= 0
    ob.capture(_values(NOW))
    ob.close()
    assert Outbox(path).epoch == epoch  # a restart keeps it
    for side in tmp_path.glob("o.db*"):
        side.unlink()  # a re-flashed card
    again = Outbox(path)
    assert again.epoch != epoch and again.capture(_values(NOW)).seq == 1


def test_a_damaged_row_is_set_aside_and_the_rest_of_its_batch_sent(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    ob = Outbox(tmp_path / "o.db")
    for i in range(5):
        ob.capture(_values(NOW + i * 1000))
    db = sqlite3.connect(tmp_path / "o.db")
    db.execute("UPDATE readings SET body = ? WHERE seq = 3", (b'{"seq":3,"ts":\x00\xff',))
    db.commit()
    db.close()
    got: list[bytes] = []
    watcher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    watcher.on_message = lambda c, u, m: got.append(m.payload)
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.subscribe("airgrid/v1/dev/dmg-1/up", 1)
    watcher.loop_start()
    time.sleep(0.2)
    pub = Publisher("dmg-1", "b00t", ob, BrokerSettings(host="127.0.0.1", port=mosquitto.port),
                    PublishSettings(backoff_max_s=2.0), status=lambda: None,  # type: ignore
                    )
    pub.start()
    try:
        assert wait_for(lambda: ob.depth() == 0 and got, 10)
    finally:
        pub.stop()
        watcher.loop_stop()
    (payload,) = got
    up, bad = decode_up_readings(payload, "dmg-1")
    assert bad == [] and [r.seq for r in up.readings] == [1, 2, 4, 5]
    assert up.epoch == ob.epoch
    assert pub.damaged_rows == 1
    (aside,) = (tmp_path / "o.db.damaged").read_text().splitlines()
    assert json.loads(aside)["seq"] == 3
