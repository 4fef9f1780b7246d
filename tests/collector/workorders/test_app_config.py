"""`[alerting.app]` is validated with the rest of the collector's config: every error at
once, with file and key, and the complaint key is treated as a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from airgrid.config import ConfigError
from collector import config as collector_config


def test_app_table_errors_name_file_and_key(tmp_path: Path) -> None:
    data = {"alerting": {"app": {"http_port": 70000, "public_url": "ftp://x",
                                 "link_ttl": "soon", "tianditu_key": "a b",
                                 "complaints": {"secret": "short"}}}}
    with pytest.raises(ConfigError) as err:
        collector_config.from_dict(data, tmp_path / "collector.toml")
    text = str(err.value)
    for key in ("alerting.app.http_port", "alerting.app.public_url", "alerting.app.link_ttl",
                "alerting.app.tianditu_key", "alerting.app.complaints.secret"):
        assert key in text, (key, text)
    assert "collector.toml" in text and "short" not in text  # a secret is never repeated


def test_a_good_app_table_reaches_the_alerting_config(tmp_path: Path) -> None:
    from collector.alerting.config import resolve

    cfg = collector_config.from_dict({"alerting": {"app": {
        "http_port": 8090, "link_ttl": "3d", "complaints": {"secret": "x" * 20}}}},
        tmp_path / "collector.toml")
    app = resolve(cfg.alerting).app
    assert app is not None and (app.http_port, app.link_ttl_ms) == (8090, 3 * 86_400_000)


def test_worker_link_prints_the_link_and_queues_it_as_an_sms(tmp_path: Path) -> None:
    import sqlite3

    from collector.workorders.errors import UnknownWorker
    from collector.workorders.links import SignInLinks
    from orchestration.admin import worker_links

    (tmp_path / "registry.yaml").write_text(
        "devices:\n  - {id: d1, site: s, township: 城关镇, grid: g1, lat: 36.1, lon: 117.2,"
        " contacts: [{name: 张三, phone: '+8613800000001'}]}\n", encoding="utf-8")
    conf = tmp_path / "collector.toml"
    conf.write_text('[registry]\nfile = "registry.yaml"\n[alerting]\n'
                    'state_db = "alerting.sqlite"\n[alerting.app]\nhttp_port = 8090\n'
                    'public_url = "https://aq.example/"\n[alerting.channels.modem]\n'
                    'type = "sms_modem"\nport = "/dev/ttyUSB2"\n', encoding="utf-8")
    issued = worker_links.issue(conf, "8613800000001", 3_600_000, sms_channel="modem")
    assert issued.url.startswith("https://aq.example/app/?t=")
    links = SignInLinks(tmp_path / "alerting.sqlite")
    assert links.check(issued.url.split("t=", 1)[1], issued.expires_ms - 1).worker == \
        "8613800000001"
    rows = sqlite3.connect(tmp_path / "alerting.sqlite").execute(
        "SELECT channel, recipient, text, status FROM outbox").fetchall()
    assert rows == [("modem", "+8613800000001", rows[0][2], "pending")]
    assert issued.url in rows[0][2] and "张三" in rows[0][2]
    assert worker_links.revoke(conf, "8613800000001") == 1
    with pytest.raises(UnknownWorker, match="no channel 'sms'"):
        worker_links.issue(conf, "8613800000001", 60_000, sms_channel="sms")
