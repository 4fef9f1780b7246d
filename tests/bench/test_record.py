"""bench/record.py: the last line, the refusal of undeclared keys, and the record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import record, render_results

KEYS = ("devices", "rules", "tick_ms_median", "tick_ms_min", "tick_ms_max",
        "naive_tick_ms_median", "naive_measured_devices", "naive_scaled", "speedup", "prime_s")
RESULT = {k: 1 for k in KEYS}


def test_emit_prints_the_result_as_the_last_line(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(record.RECORD_ENV, raising=False)
    print("a progress line")
    record.emit("rules", RESULT, KEYS)
    out = capsys.readouterr().out.splitlines()
    assert json.loads(out[-1]) == RESULT


@pytest.mark.parametrize("result", [
    {**RESULT, "new_figure": 2},                                  # a key not declared
    {k: v for k, v in RESULT.items() if k != "speedup"},          # a declared key missing
])
def test_emit_refuses_keys_that_differ_from_the_declaration(
        result: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(record.RECORD_ENV, str(tmp_path))
    with pytest.raises(record.ResultKeysError, match="differ from RESULT_KEYS"):
        record.emit("rules", result, KEYS)
    captured = capsys.readouterr()
    assert captured.out == ""  # no last line that looks like a good result
    assert json.loads(captured.err.splitlines()[-1]) == result  # but the figures survive
    assert list(tmp_path.iterdir()) == []  # and nothing is recorded


def test_emit_refuses_an_unknown_bench_name() -> None:
    with pytest.raises(record.ResultKeysError, match="no bench named"):
        record.emit("rulez", RESULT, KEYS)


def test_emit_records_the_result_with_its_provenance(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(record.RECORD_ENV, str(tmp_path))
    monkeypatch.setattr("sys.argv", ["bench/rules.py", "--devices", "100000", "--ticks", "11",
                                     "--naive-devices", "1000", "--naive-ticks", "2"])
    record.emit("rules", RESULT, KEYS)
    rec = json.loads((tmp_path / "rules.json").read_text(encoding="utf-8"))
    assert rec["result"] == RESULT
    p = rec["provenance"]
    assert p["command"] == ("python -m bench.rules --devices 100000 --ticks 11 "
                            "--naive-devices 1000 --naive-ticks 2")
    assert p["form"] == "quick"
    assert len(p["commit"]) == 40 and isinstance(p["dirty"], bool)
    assert p["started_utc"] <= p["finished_utc"] and p["started_utc"].endswith("Z")
    assert len(p["load_average_start"]) == len(p["load_average_end"]) == 3
    m = p["machine"]
    assert m["cores"] >= 1 and m["ram_gib"] > 0 and m["cpu_model"]
    # and it renders: the command, the commit and the figure are in RESULTS.md's text
    text = render_results.render(tmp_path, tmp_path / "no-notes")
    assert p["command"] in text and p["commit"][:10] in text
    assert "| tick_ms_median | 1 |" in text


def test_a_custom_command_is_not_called_quick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(record.RECORD_ENV, str(tmp_path))
    monkeypatch.setattr("sys.argv", ["bench/rules.py", "--devices", "10"])
    record.emit("rules", RESULT, KEYS)
    assert json.loads((tmp_path / "rules.json").read_text())["provenance"]["form"] == "custom"


def test_notes_headings_go_one_level_down_outside_code() -> None:
    notes = "## Topic\n\n```\n# a shell comment\n```\n\n### Sub\ntext # not a heading\n"
    assert render_results.demote_headings(notes) == (
        "### Topic\n\n```\n# a shell comment\n```\n\n#### Sub\ntext # not a heading")


def test_nested_results_become_dotted_rows_and_cells_stay_in_their_column() -> None:
    rows = dict(render_results.flatten({"a": {"b": 1, "c": {"d": 2}}, "e": [1, "x|y"]}))
    assert rows == {"a.b": 1, "a.c.d": 2, "e": [1, "x|y"]}
    assert render_results.cell(rows["e"]) == '[1, "x\\|y"]'
    assert render_results.cell(12345) == "12,345" and render_results.cell(0.5) == "0.5"
