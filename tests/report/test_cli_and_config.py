"""The command line and the report config: manners and errors, no processes."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alert_rules import aqi
from report import cli, summary
from report import config as report_config
from report.compute import compute
from report.period import day, month
from report.source import DeviceInfo, HourlyTable


@pytest.mark.parametrize("command", [[], ["daily"], ["monthly"], ["deliver"]])
def test_version_on_every_command(command: list[str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([*command, "--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("airgrid-report ")


@pytest.mark.parametrize("args, expected", [
    (["--log-level", "LOUD", "daily"], "expected one of DEBUG, INFO, WARNING, ERROR"),
    (["daily", "--date", "2026-13-01", "--config", "x", "--out", "y"], "expected a date"),
    (["monthly", "--month", "11-2026", "--config", "x", "--out", "y"], "expected a month"),
])
def test_bad_arguments_are_named(args: list[str], expected: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--log-level", "debug", "daily"],
                                  ["daily", "--log-level", "debug"]])
def test_log_level_before_or_after_the_command(args: list[str]) -> None:
    parsed = cli.build_parser().parse_args([*args, "--config", "c", "--out", "o"])
    assert parsed.log_level == "DEBUG"


def test_report_config_errors_name_file_and_keys_all_at_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "report.toml"
    cfg.write_text('formats = ["pdf", "doc"]\nstandard = "nope"\n[email]\nhost = "h"\n'
                   'port = 0\nto = []\npassword = "in-clear"\n', encoding="utf-8")
    cfg.chmod(0o644)
    assert cli.main(["deliver", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    for key in ("collector_config", "formats[1]", "email.port", "email.sender", "email.to",
                "email.password"):
        assert f"{key}" in err, (key, err)
    assert str(cfg) in err and "in-clear" not in err and "Traceback" not in err


def test_collector_config_error_exits_2_without_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "collector.toml"
    cfg.write_text('[influx]\napi = "v3"\n', encoding="utf-8")
    assert cli.main(["daily", "--date", "2026-11-25", "--config", str(cfg),
                     "--out", str(tmp_path / "r.pdf")]) == 2
    err = capsys.readouterr().err
    assert "influx.api" in err and str(cfg) in err and "Traceback" not in err


def test_unreachable_influxdb_exits_1_with_the_url(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from orchestration.services import free_port

    cfg = tmp_path / "collector.toml"
    url = f"http://127.0.0.1:{free_port()}"
    cfg.write_text(f'[influx]\nurl = "{url}"\n', encoding="utf-8")
    assert cli.main(["daily", "--config", str(cfg), "--out", str(tmp_path / "r.pdf")]) == 1
    err = capsys.readouterr().err
    assert url in err and "Traceback" not in err


def test_closed_pipe_is_not_an_error() -> None:
    """`airgrid-report --help | head -1`: no traceback when the reader goes away."""
    p = subprocess.run(f"{sys.executable} -m report.cli --help | head -c 10", shell=True,
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0
    assert "Traceback" not in p.stderr


def _table(values: list[float], days: int = 1) -> HourlyTable:
    p = day(dt.date(2026, 11, 25)) if days == 1 else month(2026, 11)
    pm = np.array([values[: p.hours]], dtype=np.float64)
    return HourlyTable(p, [DeviceInfo("d1", "城关镇", "站", "g")], pm, pm * 1.2)


def test_clean_day_has_no_primary_pollutant() -> None:
    """HJ 633: no primary pollutant when AQI <= 50."""
    r = compute(_table([20.0] * 24), aqi.get())
    assert r.county.aqi <= 50 and r.county.primary == ""
    assert "无首要污染物" in summary.sentences(r, "zh")[0]
    assert "no primary pollutant" in summary.sentences(r, "en")[0]


def test_daily_aqi_is_the_larger_sub_index_of_the_daily_means() -> None:
    hours = [30.0] * 18 + [200.0] * 6
    r = compute(_table(hours), aqi.get())
    std = aqi.get()
    mean = sum(hours) / 24
    expected = max(std.iaqi("pm2_5", [mean])[0], std.iaqi("pm10", [mean * 1.2])[0])
    assert r.county.aqi == expected
    assert r.townships[0].hours_over == {75.0: 6, 150.0: 6}
    assert math.isclose(r.county.pm2_5, mean)


def test_missing_hours_count_against_completeness_not_the_mean() -> None:
    hours = [50.0] * 12 + [math.nan] * 12
    r = compute(_table(hours), aqi.get())
    assert r.county.pm2_5 == 50.0
    assert r.completeness == 0.5
    assert r.issues and r.issues[0].hours_missing == 12


def test_report_config_resolves_paths_from_its_folder(tmp_path: Path) -> None:
    cfg = tmp_path / "report.toml"
    cfg.write_text('collector_config = "c.toml"\n[bus]\nport = 1884\n', encoding="utf-8")
    loaded = report_config.load(cfg)
    assert loaded.collector_config == tmp_path / "c.toml"
    assert loaded.out_dir == tmp_path / "reports"
    assert loaded.bus is not None and loaded.bus.port == 1884 and loaded.email is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["城关镇", "河口镇", "东岭乡"]),
                          st.lists(st.one_of(st.just(math.nan),
                                             st.floats(0, 999, allow_nan=False)),
                                   min_size=24, max_size=24)),
                min_size=0, max_size=6))
def test_any_pattern_of_missing_hours_gives_text_without_nan(
        rows: list[tuple[str, list[float]]]) -> None:
    """Generated days (silent devices, silent townships, no devices at all): the numbers
    are finite or absent, and no sentence or table cell ever says "nan"."""
    from report.render import issue_lines, township_cells

    p = day(dt.date(2026, 11, 25))
    infos = [DeviceInfo(f"d{i}", town, "站", "g") for i, (town, _) in enumerate(rows)]
    pm = np.array([v for _, v in rows], dtype=np.float64).reshape(len(rows), 24)
    r = compute(HourlyTable(p, infos, pm, pm * 1.3), aqi.get(), {"城关镇": 40.0})
    assert 0.0 <= r.completeness <= 1.0
    assert r.has_data == bool(np.isfinite(pm).any())
    for lang in ("zh", "en"):
        head, cells, _ = township_cells(r, lang)
        words = [*summary.sentences(r, lang), *head, *(c for row in cells for c in row),
                 *issue_lines(r, lang)]
        assert not [w for w in words if "nan" in w.lower()], words


@given(st.text(alphabet=st.sampled_from("空气质量为良，。（）ab c1.;"), max_size=200),
       st.floats(3, 60))
def test_wrap_keeps_every_character_in_order(text: str, em: float) -> None:
    from report.render import wrap

    lines = wrap(text, em)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
