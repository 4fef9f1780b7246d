"""bench/anomaly_eval.py's own correctness: the faults a trace gets depend on the seed and
the trace alone, scoring survives a family without faults, a healthy neighbour blamed
for a fault counts against the rules, and --set keeps each parameter's type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import anomaly_corpus as ac
from bench import anomaly_eval as ae

MIN = 60_000
T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000


def tiny_data(root: Path, hours: int = 300) -> Path:
    """Both real traces' files in their own formats, a few hundred readings each."""
    pm = root / "pm25"
    pm.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["No,year,month,day,hour,pm2.5,DEWP,TEMP"]
    for h in range(hours):
        lines.append(f"{h},2010,1,{1 + h // 24},{h % 24},{rng.uniform(10, 200):.0f},-10,0")
    (pm / "beijing_us_embassy_hourly_2010_2014.csv").write_text("\n".join(lines) + "\n")
    lines = ["sensor_id;timestamp;P1;P2"]
    for i in range(hours):
        at = f"2018-01-01T{i // 60 % 24:02d}:{i % 60:02d}:00"
        lines.append(f"5331;{at};5;{rng.uniform(1, 30):.1f}")
    (pm / "sensor_community_sds011_5331_2018-01.csv").write_text("\n".join(lines) + "\n")
    return root


def test_a_traces_faults_do_not_depend_on_the_order_of_traces(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tiny_data(tmp_path)
    drawn: dict[str, int] = {}

    def spy(name: str, ts: Any, x: Any, rng: np.random.Generator, *rest: Any,
            **kw: Any) -> dict[str, Any]:
        drawn[name] = int(rng.integers(1 << 62))  # what this trace's faults start from
        return {}

    monkeypatch.setattr(ae, "evaluate_trace", spy)
    runs = []
    for order in (["beijing_hourly", "sds011", "beijing_hourly_x1000"],
                  ["sds011", "beijing_hourly_x1000", "beijing_hourly"], ["sds011"]):
        drawn.clear()
        ae.main(["--data", str(data), "--parts", "single", "--traces", *order])
        runs.append(dict(drawn))
    capsys.readouterr()
    assert runs[0] == runs[1]
    assert runs[2]["sds011"] == runs[0]["sds011"]
    # the ×1000 copy has the Beijing trace's faults, the other trace its own
    assert runs[0]["beijing_hourly_x1000"] == runs[0]["beijing_hourly"] != runs[0]["sds011"]


def test_a_family_without_faults_scores_none_instead_of_dividing_by_zero() -> None:
    ts = T0 + MIN * np.arange(100, dtype=np.int64)
    got = ae.judge([5, 50], [], ts)
    assert got["recall"] is None and got["recall_1h"] is None and got["nab"] is None
    assert got["false_per_device_day"] == round(2 / (99 / 1440), 4)
    # one reading spans no time: no rate rather than a division by zero
    assert ae.judge([], [(0, 1)], ts[:1])["false_per_device_day"] is None
    none = ae.judge_faults([], [], "shift", [], ts, k=6, days=2.0, big=[])
    assert none["recall"] is None and none["firings_per_alert"] is None
    assert none["recall_1h_beyond_spec"] is None
    assert ae.judge_events([], [], "local", [])["called_fault"] is None


def test_a_trace_too_short_for_a_family_scores_the_others(
        capsys: pytest.CaptureFixture[str]) -> None:
    # 400 readings: room for spikes, none for a 48–200-reading drift
    n = 400
    ts = T0 + MIN * np.arange(n, dtype=np.int64)
    x = 40 + 10 * np.sin(np.arange(n) / 20)
    out = ae.evaluate_trace("short", ts, x, np.random.default_rng(1), 1, {"ewma_z": [0.9]},
                            60 * MIN, ["ewma_z"])
    scores = out["ewma_z@0.9"]
    drift, spike = scores["drift"], scores["spike"]
    assert isinstance(drift, dict) and isinstance(spike, dict)
    assert spike["recall"] is not None
    capsys.readouterr()


def test_a_healthy_neighbour_blamed_during_a_fault_is_a_false_alarm_and_reported() -> None:
    ts = T0 + MIN * np.arange(400, dtype=np.int64)
    wins = [(100, 170), (250, 320)]
    alarms = [(101, "shift-0", "maintenance", "sensor_shift"),  # found
              (102, "shift-1", "maintenance", "sensor_shift"),  # and a neighbour blamed
              (260, "shift-3", "maintenance", "sensor_drift")]  # only a neighbour blamed
    got = ae.judge_faults(alarms, [], "shift", wins, ts, k=6, days=2.0, big=[True, True])
    assert got["recall"] == 0.5
    assert got["neighbour_blamed"] == 1.0
    assert got["false_per_device_day"] == round(2 / 12, 4)


def test_set_keeps_each_detector_parameters_type() -> None:
    got = ae.parse_settings(["k_shift=1.5", "max_steps=4", "likelihood=true", "warmup=12"])
    assert got == {"k_shift": 1.5, "max_steps": 4, "likelihood": True, "warmup": 12}
    assert type(got["max_steps"]) is int and type(got["k_shift"]) is float
    assert ae.parse_settings(["k_shift=2"])["k_shift"] == 2.0
    for bad in ("max_steps=1.5", "likelihood=maybe", "no_such=1", "k_shift"):
        with pytest.raises(ae.SettingError, match="--set"):
            ae.parse_settings([bad])


def test_set_with_a_bad_value_is_a_usage_error_naming_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        ae.main(["--data", str(tmp_path), "--set", "max_steps=two"])
    assert exc.value.code == 2
    assert "max_steps" in capsys.readouterr().err
    # and a good one reaches the detector with its type
    ae.SETTINGS.clear()
    try:
        ae.main(["--data", str(tmp_path), "--set", "max_steps=4"])
        assert ae.SETTINGS == {"max_steps": 4}
        assert json.loads(capsys.readouterr().out.splitlines()[-1])["seed"] == 1
    finally:
        ae.SETTINGS.clear()


def test_the_corpus_part_scores_every_corpus_detector_on_the_corpus_of_each_seed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tiny_data(tmp_path)
    ae.main(["--data", str(data), "--parts", "corpus", "--corpus-seeds", "1", "4"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    corpus = result["corpus"]
    assert set(corpus) == {"detector", "detector_every_reading", "ewma_z_cooldown", "ewma_z",
                           "previous"}
    pooled = [c["pooled"] for c in corpus.values()]
    windows = {p["windows"] for p in pooled}
    assert len(windows) == 1 and windows.pop() > 0  # one corpus for all of them
    for c in corpus.values():
        p = c["pooled"]
        assert 0 <= p["found"] <= p["windows"] and p["score"] <= 100
        assert sum(int(v.split("/")[0]) for v in p["found_by_family"].values()) == p["found"]
        assert set(p["quiet_false_positives"]) == set(ac.QUIET_SHAPES)
        assert sum(p["quiet_false_positives"].values()) <= p["false_positives"]
        assert set(c["by_seed"]) == {"1", "4"}
        # seed 1 is one settings were chosen on, seed 4 is not
        assert c["mean_chosen_on"] == c["by_seed"]["1"]
        assert c["mean_fresh"] == c["by_seed"]["4"]


def test_set_reaches_the_corpus_detector(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = tiny_data(tmp_path)
    try:
        ae.main(["--data", str(data), "--parts", "corpus", "--corpus-seeds", "1"])
        shipped = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["corpus"]
        # a divisor so large that nothing but stuck runs, zeros and records can score
        ae.main(["--data", str(data), "--parts", "corpus", "--corpus-seeds", "1",
                 "--set", "k_vspike=1000", "k_spike=1000", "k_shift=1000",
                 "k_variance=1000", "k_drift=1000", "k_daily=1000"])
        muted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["corpus"]
    finally:
        ae.SETTINGS.clear()
    assert muted["detector"] != shipped["detector"]
    assert muted["ewma_z"] == shipped["ewma_z"]  # the baselines take no settings
