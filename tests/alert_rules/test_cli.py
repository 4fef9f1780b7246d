"""`airgrid-rules`: aqi, nowcast, check, test and score."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alert_rules.cli import main
from alert_rules.rulefile import DEFAULT_RULES

DEFAULT_TESTS = DEFAULT_RULES.with_name("default_rules.test.yaml")


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.strip().splitlines()


def test_aqi_prints_one_json_object_per_concentration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aqi", "--standard", "us-epa-2024", "35.5", "9"]) == 0
    out = [json.loads(x) for x in lines(capsys)]
    assert out[0] == {"concentration": 35.5, "concentration_used": 35.5, "aqi": 101,
                      "category": "Unhealthy for Sensitive Groups",
                      "category_zh": "对敏感人群不健康", "color": "#FF7E00",
                      "standard": "us-epa-2024", "standard_name": "US EPA 2024",
                      "pollutant": "pm2_5"}
    assert out[1]["category"] == "Good"
    assert main(["aqi", "155"]) == 0
    got = json.loads(lines(capsys)[0])
    assert (got["aqi"], got["category"], got["category_zh"], got["standard"]) == \
        (205, "Heavily Polluted", "重度污染", "hj633-2026")


def test_aqi_bad_argument_is_named_and_the_rest_still_printed(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aqi", "--pollutant", "pm10", "abc", "100"]) == 1
    cap = capsys.readouterr()
    assert "argument 1 'abc'" in cap.err
    assert json.loads(cap.out)["aqi"] == 86  # HJ 633-2026 PM10: 50 + 50/70 × 50 = 85.7 → 86


def test_aqi_rounds_the_concentration_first_under_hj633_2026(
        capsys: pytest.CaptureFixture[str]) -> None:
    # §4.2.2: 35.1 → 35 µg/m³ (GB/T 8170), IAQI 50 (优), not 51; 34.5 → 34 (even); 35.5 → 36
    assert main(["aqi", "35.1", "34.5", "35.5"]) == 0
    out = [json.loads(x) for x in lines(capsys)]
    assert [(o["concentration_used"], o["aqi"], o["category_zh"]) for o in out] == [
        (35.0, 50, "优"), (34.0, 49, "优"), (36.0, 52, "良")]
    assert {o["standard_name"] for o in out} == {"China HJ 633-2026"}


def test_nowcast(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nowcast", *["null"] * 10, "20", "40"]) == 0  # oldest first
    assert json.loads(lines(capsys)[0]) == {"nowcast": 33.3, "aqi": 96}
    assert main(["nowcast", *["30"] * 10, "null", "null"]) == 0
    assert json.loads(lines(capsys)[0]) == {"nowcast": None, "aqi": None}


def test_check_reports_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        rules:
          - name: ok
            kind: threshold
            above: 150
          - name: typo
            kind: treshold
            above: 150
          - name: wrong_side
            kind: threshold
            above: 150
            clear_below: 160
          - name: bad_for
            kind: threshold
            above: 150
            for: 10 minutes
        """), encoding="utf-8")
    assert main(["check", str(bad), str(DEFAULT_RULES)]) == 1
    cap = capsys.readouterr()
    assert f"{bad}:6: kind: unknown kind 'treshold'" in cap.err
    assert f"{bad}:11: clear_below 160.0 is above the firing threshold" in cap.err
    assert f"{bad}:15: for: expected a duration like 30s, 5m, 1h, got '10 minutes'" in cap.err
    assert "default_rules.yaml: ok (10 rules)" in cap.out


def test_default_rule_set_passes_its_own_tests(capsys: pytest.CaptureFixture[str]) -> None:
    spatial = DEFAULT_RULES.with_name("spatial_rules.test.yaml")
    assert main(["test", str(DEFAULT_TESTS), str(spatial)]) == 0
    out = capsys.readouterr().out
    assert "default_rules.test.yaml: 21/21 checks passed" in out
    assert "spatial_rules.test.yaml: 1/1 checks passed" in out


def test_rule_test_failures_name_the_line(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r.yaml").write_text(DEFAULT_RULES.read_text(encoding="utf-8"), encoding="utf-8")
    t = tmp_path / "t.yaml"
    t.write_text(textwrap.dedent("""\
        rule_files: [r.yaml]
        tests:
          - name: wrong expectation
            input_series:
              - {device: a, values: "200x30"}
            alert_rule_test:
              - eval_time: 5m
                rule: pm25_heavy
                alerts: [{subject: a, state: firing}]
        """), encoding="utf-8")
    assert main(["test", str(t)]) == 1
    err = capsys.readouterr().err
    assert f"{t}:7: wrong expectation: at 300s: pm25_heavy for a: expected firing, got pending" \
        in err


def test_score_streams_a_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.csv"
    rows = [f"2018-01-01T00:{i:02d}:00,{20 + i % 3}" for i in range(30)]
    rows[20] = "2018-01-01T00:20:00,300"
    rows[25] = "2018-01-01T00:25:00,oops"
    f.write_text("timestamp,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert main(["score", "--csv", str(f)]) == 1  # a row could not be read
    cap = capsys.readouterr()
    out = cap.out.strip().splitlines()
    assert out[0] == "timestamp,value,anomaly_score"
    scores = [float(r.split(",")[2]) if r.split(",")[2] else None for r in out[1:]]
    assert len(scores) == 30
    # the spike is flagged on the row after it (which shows that it came back)
    assert scores[21] is not None and scores[21] > 0.9
    assert all(s is not None and s < 0.5 for i, s in enumerate(scores) if i not in (21, 25))
    assert scores[25] is None
    assert "line 27: value 'oops' is not a finite number" in cap.err
    assert "1 rows could not be scored" in cap.err


def test_score_is_streamed_and_numbers_every_clean_row(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    # the held-out benchmark's shape: epoch seconds or ISO times, every row a score
    f = tmp_path / "s.csv"
    rows = [f"{1_500_000_000 + 300 * i},{1000 + 10 * (i % 4)}" for i in range(200)]
    f.write_text("timestamp,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert main(["score", "--csv", str(f)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 201
    scores = [float(r.split(",")[2]) for r in out[1:]]
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_score_rejects_a_bad_timestamp(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    f = tmp_path / "s.csv"
    f.write_text("timestamp,value\n2018-01-01 00:00:00,3\nyesterday,4\n", encoding="utf-8")
    assert main(["score", "--csv", str(f)]) == 1
    cap = capsys.readouterr()
    assert "line 3: timestamp 'yesterday' is neither ISO 8601 nor epoch" in cap.err
    assert len(cap.out.strip().splitlines()) == 3


def test_score_rejects_a_wrong_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.csv"
    f.write_text("time;value\n1;2\n", encoding="utf-8")
    assert main(["score", "--csv", str(f)]) == 2
    assert ":1: expected the header `timestamp,value`" in capsys.readouterr().err


def test_score_of_a_clean_series_exits_0_and_infinity_is_bad_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.csv"
    rows = [f"2018-01-01T00:{i:02d}:00,{20 + i % 3}" for i in range(10)]
    f.write_text("timestamp,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert main(["score", "--csv", str(f)]) == 0
    f.write_text("timestamp,value\n" + "\n".join([*rows, "2018-01-01T01:00:00,inf"]) + "\n")
    assert main(["score", "--csv", str(f)]) == 1
    assert "line 12: value 'inf' is not a finite number" in capsys.readouterr().err


def test_score_of_a_gbk_file_says_to_save_it_as_utf8(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.csv"
    f.write_bytes("timestamp,value\n2018-01-01T00:00:00,20\n# 城关镇\n".encode("gbk"))
    assert main(["score", "--csv", str(f)]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8" in err and "Traceback" not in err


@pytest.mark.parametrize("text", ["inf", "-inf", "Infinity", "1e999"])
def test_aqi_of_infinity_is_an_error_not_invalid_json(
        text: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aqi", "--", text, "35"]) == 1
    cap = capsys.readouterr()
    (line,) = cap.out.splitlines()
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))["aqi"] == 50
    assert f"{text!r}: expected a finite concentration" in cap.err


def test_check_rejects_an_unknown_severity_and_template_field_with_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(textwrap.dedent("""\
        rules:
          - name: pm25_high
            kind: threshold
            field: pm2_5
            above: 150
            severity: urgent
            annotations:
              summary_zh: "{townshp}{name}：PM2.5 {value}"
              summary_en: "{name} ({township}): PM2.5 {value:.0f} {value.real}"
        """), encoding="utf-8")
    assert main(["check", str(f)]) == 1
    err = capsys.readouterr().err
    assert f"{f}:6: severity: 'urgent' is not a severity; expected one of " in err
    assert f"{f}:8: annotations.summary_zh: {{townshp}} is not a template field" in err
    assert "summary_en" not in err  # format specs and attributes of known fields are fine

@pytest.mark.parametrize("value", [".nan", "-.inf", "1e400"])
def test_a_non_finite_threshold_is_refused_with_file_and_line(tmp_path: Path, value: str,
                                                             processes: None) -> None:
    """`above: .nan` can never fire and `.inf` never clears: the loader refuses both, in
    the real `airgrid-rules check` process."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent(f"""\
        rules:
          - name: pm25_heavy
            kind: threshold
            field: pm2_5
            above: {value}
          - name: pm25_rate
            kind: rate_of_change
            field: pm2_5
            window: 10m
            above: 50
            clear_below: {value}
        """), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "alert_rules.cli", "check", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"{bad}:5: above: expected a finite number" in result.stderr
    assert f"{bad}:11: clear_below: expected a finite number" in result.stderr
    assert "Traceback" not in result.stderr


_TIMES = st.one_of(st.integers(1_000_000_000, 2_000_000_000).map(str),
                   st.integers(10**12, 2 * 10**12).map(str),
                   st.datetimes().map(lambda d: d.isoformat(sep=" ")),
                   st.text(alphabet="0123456789-:T Zx", max_size=12))
_VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.floats(-1e6, 1e6).map(lambda v: f"{v:.3f}"),
                    st.just(""), st.sampled_from(["nan", "inf", "-0", "1e999", "oops"]),
                    st.text(alphabet="0123456789.e-+ abc", max_size=8))


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_TIMES, _VALUES), min_size=1, max_size=60))
def test_score_of_a_generated_series_numbers_every_row_in_the_real_process(
        tmp_path: Path, rows: list[tuple[str, str]], processes: None) -> None:
    """`airgrid-rules score --csv`, the real process, on generated rows: one output row
    per input row, each score empty (the row named on stderr and counted) or in 0..1,
    exit 1 exactly when a row could not be scored, and never a traceback."""
    f = tmp_path / "s.csv"
    with f.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["timestamp", "value"])
        w.writerows(rows)
    result = subprocess.run([sys.executable, "-m", "alert_rules.cli", "score", "--csv", str(f)],
                            capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    out = list(csv.reader(io.StringIO(result.stdout)))
    assert out[0] == ["timestamp", "value", "anomaly_score"]
    assert [r[:2] for r in out[1:]] == [list(r) for r in rows]
    scores = [r[2] for r in out[1:]]
    bad = [i for i, s in enumerate(scores) if s == ""]
    assert all(0.0 <= float(s) <= 1.0 for s in scores if s), scores
    assert result.stderr.count(": line ") == len(bad), result.stderr
    assert result.returncode == (1 if bad else 0), result.stderr
    if bad:
        assert f"{len(bad)} rows could not be scored" in result.stderr
