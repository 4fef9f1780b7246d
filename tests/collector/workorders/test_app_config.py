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
