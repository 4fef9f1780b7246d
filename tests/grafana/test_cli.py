"""`airgrid-grafana` commands and their errors (no services needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grafana import generate, macros, queries
from grafana.cli import main
from grafana.errors import GenerateError


def test_generate_check_passes_on_the_committed_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_render_queries_json_lists_every_query(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render-queries", "--json", "--dashboard", "airgrid-fleet",
                 "--from", "1000", "--to", "2000", "--interval", "10s"]) == 0
    rows = json.loads(capsys.readouterr().out)
    board = next(b for b in generate.load_committed() if b["uid"] == "airgrid-fleet")
    assert len(rows) == len(list(queries.raw_queries(board)))
    text = " ".join(r["query"] for r in rows)
    assert "time >= 1000ms and time <= 2000ms" in text and "time(10s)" in text
    assert "$" not in text.replace("$/", "")  # nothing left to substitute


def test_single_value_variable_without_a_value_is_noted(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render-queries", "--dashboard", "airgrid-device"]) == 0
    captured = capsys.readouterr()
    assert "$device has no All option; pass --var device=VALUE" in captured.err
    assert '"device" =~ /^$device$/' in captured.out


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "yesterday"], "time 'yesterday': expected now, now-<n><unit>"),
    (["--interval", "5x"], "interval '5x': expected a number and ms|s|m|h|d|w"),
    (["--var", "device"], "--var 'device': expected NAME=VALUE"),
    (["--dashboard", "nope"], "--dashboard 'nope': expected one of"),
])
def test_bad_arguments_are_named(args: list[str], message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render-queries", *args]) == 2
    assert message in capsys.readouterr().err


def test_corrupt_dashboard_file_is_named(tmp_path: Path) -> None:
    generate.write(tmp_path)
    (tmp_path / "airgrid-fleet.json").write_text("{not json")
    with pytest.raises(GenerateError, match=r"airgrid-fleet\.json: not readable"):
        generate.load_committed(tmp_path)


def test_multi_value_variables_are_regex_escaped_like_grafana() -> None:
    v = {"device": macros.VariableValue(("a.1", "b/2"))}
    assert macros.render("device =~ /^$device$/", 0, 1, "1m", v) == r"device =~ /^(a\.1|b\/2)$/"
    single = {"device": macros.VariableValue(("a.1",), multi_or_all=False)}
    assert macros.render("d = '${device}'", 0, 1, "1m", single) == "d = 'a.1'"
    with pytest.raises(macros.MacroError, match=r"\$township has no value"):
        macros.render("$township", 0, 1, "1m", {})
