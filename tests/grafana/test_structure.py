"""Structural checks of the committed dashboards and provisioning files."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from grafana import aqi_bands, generate, queries
from grafana.model import UNIT_UG_M3

BOARDS = generate.load_committed()
HJ = aqi_bands.standard("hj633-2026")


def _walk(node: Any, key: str) -> Iterator[Any]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _walk(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)


def _provisioned_datasource() -> dict[str, Any]:
    doc = yaml.safe_load(
        (generate.PROVISIONING_DIR / "datasources" / "airgrid.yaml").read_text("utf-8"))
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    return dict(ds)


def test_committed_json_equals_generator_output() -> None:
    assert generate.stale() == [], "run `airgrid-grafana generate` and commit the JSON"
    assert len(BOARDS) == 5


def test_five_dashboards_with_unique_uids_and_panel_ids() -> None:
    uids = [b["uid"] for b in BOARDS]
    assert sorted(uids) == ["airgrid-alerts", "airgrid-device", "airgrid-fleet",
                            "airgrid-overview", "airgrid-response"]
    for b in BOARDS:
        ids = [p["id"] for p in b["panels"]]
        assert len(ids) == len(set(ids)), b["uid"]
        assert "id" not in b  # Grafana assigns it; a fixed id would clash across instances


@pytest.mark.parametrize("board", BOARDS, ids=lambda b: b["uid"])
def test_no_overlapping_grid_positions(board: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for p in board["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


def test_every_datasource_reference_resolves_to_the_provisioned_one() -> None:
    ds = _provisioned_datasource()
    assert ds["type"] == "influxdb" and ds["jsonData"]["version"] == "InfluxQL"
    refs = [r for b in BOARDS for r in _walk(b, "datasource")]
    assert len(refs) > 50
    for r in refs:
        assert r == {"type": ds["type"], "uid": ds["uid"]}


def test_dashboard_provider_points_at_a_folder_and_a_path() -> None:
    doc = yaml.safe_load(
        (generate.PROVISIONING_DIR / "dashboards" / "airgrid.yaml").read_text("utf-8"))
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["folderUid"] == "airgrid"
    assert provider["options"]["path"].startswith("/")


def test_every_panel_has_a_unit_and_pm_panels_use_ug_m3() -> None:
    pm = re.compile(r'mean\("(pm2_5|pm10|pm2_5_cf1|pm10_cf1)"\)|"pm2_5_mean"')
    checked = 0
    for b in BOARDS:
        for p in b["panels"]:
            unit = p["fieldConfig"]["defaults"].get("unit")
            assert unit, f"{b['uid']} {p['title']!r} has no unit"
            aqi = any('AS "aqi"' in t["query"] for t in p["targets"])
            if not aqi and any(pm.search(t["query"]) for t in p["targets"]):
                assert unit == UNIT_UG_M3, f"{b['uid']} {p['title']!r}: {unit}"
                checked += 1
    assert checked == 6


def test_thresholds_are_the_standards_breakpoints_and_colours() -> None:
    # HJ 633-2026 as DESIGN.md states it, independently of the data file.
    pm25 = [35, 60, 115, 150, 250]
    pm10 = [50, 120, 250, 350, 420]
    colours = [c.color for c in HJ.categories]
    seen = {"pm2_5": 0, "pm10": 0, "aqi": 0}
    for b in BOARDS:
        for p in b["panels"]:
            defaults = p["fieldConfig"]["defaults"]
            steps = defaults.get("thresholds", {}).get("steps")
            text = " ".join(t["query"] for t in p["targets"])
            if 'AS "aqi"' in text:
                kind, want = "aqi", [51, 101, 151, 201, 301]
            elif defaults["unit"] == UNIT_UG_M3 and steps:
                kind = "pm10" if p["title"].startswith("PM10") else "pm2_5"
                want = pm10 if kind == "pm10" else pm25
            else:
                continue
            assert [s["value"] for s in steps] == [None, *want], p["title"]
            assert [s["color"] for s in steps] == colours, p["title"]
            seen[kind] += 1
    assert seen["pm2_5"] >= 3 and seen["pm10"] == 1 and seen["aqi"] >= 4, seen


def test_template_variables_township_grid_device() -> None:
    names = {b["uid"]: [v["name"] for v in b["templating"]["list"]] for b in BOARDS}
    assert names["airgrid-overview"][:2] == ["township", "grid"]
    assert names["airgrid-device"] == ["township", "grid", "device"]
    assert names["airgrid-fleet"][:2] == ["township", "grid"]
    assert "device" in names["airgrid-alerts"]


def test_every_variable_used_in_a_query_is_defined() -> None:
    builtins = {"timeFilter", "__interval", "interval", "__interval_ms"}
    for b in BOARDS:
        defined = {v["name"] for v in b["templating"]["list"]} | builtins
        for q in queries.raw_queries(b):
            used = set(re.findall(r"\$(\w+)", q.query))
            assert used <= defined, (b["uid"], q.panel, used - defined)


def test_device_detail_has_alert_annotations_and_the_required_panels() -> None:
    device = next(b for b in BOARDS if b["uid"] == "airgrid-device")
    (ann,) = device["annotations"]["list"]
    assert '"alert_events"' in ann["query"] and "$timeFilter" in ann["query"]
    titles = " ".join(p["title"] for p in device["panels"])
    for word in ("PM2.5", "PM10", "CF=1", "Humidity", "Quality flags"):
        assert word in titles
    bands = [p for p in device["panels"]
             if p["fieldConfig"]["defaults"].get("custom", {}).get("thresholdsStyle",
                                                                  {}).get("mode") == "area"]
    assert len(bands) >= 2


def test_overview_geomap_colours_devices_by_aqi() -> None:
    overview = next(b for b in BOARDS if b["uid"] == "airgrid-overview")
    (geomap,) = [p for p in overview["panels"] if p["type"] == "geomap"]
    layer = geomap["options"]["layers"][0]
    assert layer["config"]["style"]["color"]["field"] == "aqi"
    assert layer["location"] == {"mode": "coords", "latitude": "latitude",
                                 "longitude": "longitude"}
    assert geomap["fieldConfig"]["defaults"]["thresholds"] == aqi_bands.aqi_thresholds(HJ)


def test_aqi_stats_show_the_number_and_the_category_name() -> None:
    stats = [p for b in BOARDS for p in b["panels"]
             if p["type"] == "stat" and any('AS "aqi"' in t["query"] for t in p["targets"])]
    assert len(stats) == 2
    for p in stats:
        a, b = p["targets"]
        assert a["query"] == b["query"]
        (mapped,) = [o for o in p["fieldConfig"]["overrides"]
                     if o["matcher"] == {"id": "byFrameRefID", "options": "B"}]
        mappings = next(x["value"] for x in mapped["properties"] if x["id"] == "mappings")
        texts = [m["options"]["result"]["text"] for m in mappings]
        assert texts == [f"{c.zh} {c.en}" for c in HJ.categories]
        edges = [(m["options"]["from"], m["options"]["to"]) for m in mappings]
        assert edges == [(0, 50), (51, 100), (101, 150), (151, 200), (201, 300), (301, 500)]


def test_provisioned_folder_is_the_one_push_uses() -> None:
    from grafana import push

    doc = yaml.safe_load(
        (generate.PROVISIONING_DIR / "dashboards" / "airgrid.yaml").read_text("utf-8"))
    (provider,) = doc["providers"]
    assert (provider["folderUid"], provider["folder"]) == (push.FOLDER_UID, push.FOLDER_TITLE)
