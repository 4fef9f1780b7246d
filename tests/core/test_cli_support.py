"""CLI manners of every console script (airgrid/cli_support.py): --version, defaults in
--help, --log-level checked, no traceback on a closed pipe, no NaN/Infinity in JSON."""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airgrid.cli_support import EXIT_BROKEN_PIPE, json_dumps

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
    "scripts"]


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _main(entry: str) -> Callable[[list[str]], int]:
    module, func = entry.split(":")
    main: Callable[[list[str]], int] = getattr(importlib.import_module(module), func)
    return main


def _run(capsys: pytest.CaptureFixture[str], entry: str, *args: str) -> Ran:
    """The console script's main in this process (argparse exits through SystemExit)."""
    try:
        code = _main(entry)(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return Ran(code, out, err)


def test_the_seven_console_scripts_are_all_covered() -> None:
    assert set(SCRIPTS) >= {"airgrid", "airgrid-edge", "airgrid-collector", "airgrid-sim",
                            "airgrid-rules", "airgrid-grafana", "airgrid-admin"}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_version_and_defaults_in_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    res = _run(capsys, SCRIPTS[name], "--version")
    assert res.returncode == 0 and res.stdout.startswith(f"{name} (airgrid) "), res
    # A sub-command's help shows its defaults (sub-parsers inherit the formatter).
    sub = {"airgrid": ["demo"], "airgrid-edge": ["read"], "airgrid-collector": ["--help"],
           "airgrid-sim": ["pms5003"], "airgrid-rules": ["aqi"],
           "airgrid-grafana": ["render-queries"], "airgrid-admin": ["broker-config"],
           "airgrid-report": ["daily"]}[name]
    res = _run(capsys, SCRIPTS[name], *sub, "--help")
    assert res.returncode == 0 and "(default: " in " ".join(res.stdout.split()), res.stdout


@pytest.mark.parametrize("name", ["airgrid-edge", "airgrid-collector"])
def test_log_level_rejects_an_unknown_level(name: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    res = _run(capsys, SCRIPTS[name], "--log-level", "LOUD", "run", "--config", "x.toml")
    assert res.returncode == 2
    assert "'LOUD' is not a log level; expected one of DEBUG, INFO" in res.stderr
    assert _run(capsys, SCRIPTS[name], "--log-level", "debug", "--version").returncode == 0


@pytest.mark.parametrize(("name", "args"), [
    ("airgrid-grafana", ["render-queries"]),
    ("airgrid-rules", ["aqi", *[str(c) for c in range(0, 600, 5)]]),
])
def test_a_closed_pipe_ends_quietly(name: str, args: list[str]) -> None:
    """`airgrid-grafana render-queries | head`: the reader is gone before we write."""
    module, func = SCRIPTS[name].split(":")
    code = f"import sys; from {module} import {func} as m; sys.exit(m())"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(60) == EXIT_BROKEN_PIPE
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def _strict(text: str) -> Any:
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON output"))


def test_json_dumps_maps_non_finite_floats_to_null() -> None:
    out = json_dumps({"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": ("x", 2),
                      "名": "城关镇"})
    assert _strict(out) == {"a": None, "b": [None, None, 1.5], "c": ["x", 2], "名": "城关镇"}
    assert "城关镇" in out  # readable, not \\u escapes


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@given(json_values)
def test_json_dumps_output_is_always_strict_json(value: Any) -> None:
    _strict(json_dumps(value))
