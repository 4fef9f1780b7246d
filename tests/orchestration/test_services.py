"""The harness itself: real services start, answer, restart and stop by PID."""

from __future__ import annotations

import os

import paho.mqtt.client as mqtt

from orchestration.services import InfluxDB, Mosquitto


def test_mosquitto_answers_and_restarts(mosquitto: Mosquitto) -> None:
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    assert c.connect("127.0.0.1", mosquitto.port) == 0
    c.disconnect()
    old_pid = mosquitto.pid
    mosquitto.restart()
    assert mosquitto.pid != old_pid
    c2 = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    assert c2.connect("127.0.0.1", mosquitto.port) == 0
    c2.disconnect()


def test_influxdb_write_query_restart(influxdb: InfluxDB) -> None:
    import urllib.request

    influxdb.create_database("h")
    req = urllib.request.Request(f"{influxdb.url}/write?db=h&precision=ms",
                                 data=b"m,device=a v=1.5 1700000000000")
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 204
    influxdb.restart()
    res = influxdb.query("SELECT v FROM m", db="h")
    assert res["results"][0]["series"][0]["values"] == [[1700000000000, 1.5]]  # type: ignore[index]
    pid = influxdb.pid
    assert pid is not None
    influxdb.stop()
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive
