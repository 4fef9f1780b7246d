"""Unit tests for rule files, in the spirit of `promtool test rules`.

A test file names rule files, optionally a device registry, and tests: input series per
device (promtool's expanding notation: `40x5` is six 40s, `10+5x3` is 10 15 20 25, `_` is
no reading), evaluation times and the alerts expected then (subject, state, labels,
annotations). The engine runs on a fixed clock, ticking every `interval`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from airgrid.durations import parse_duration_ms
from alert_rules.engine import Engine
from alert_rules.registry import Device
from alert_rules.rulefile import Rule, RuleFileError, load_rules
from alert_rules.transitions import Transition


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of each mapping in `__line__`."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    mapping["__keylines__"] = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    return mapping  # type: ignore[return-value]


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path) -> Any:
    """Parse a test file whose mappings carry `__line__`; errors name file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(path, 0, f"cannot read: {exc}") from exc
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RuleFileError(path, mark.line + 1 if mark else 0, f"not valid YAML: {exc}") from exc

T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000  # a fixed clock, on an hour boundary
_TERM = re.compile(r"^(_|-?\d+(?:\.\d+)?)(?:([+-])(\d+(?:\.\d+)?))?(?:x(\d+))?$")


@dataclass
class Failure:
    file: str
    line: int
    test: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.test}: {self.message}"


def expand(text: str | int | float, file: Path, line: int) -> list[float | None]:
    """promtool series notation → values (None = no reading at that step)."""
    out: list[float | None] = []
    for term in str(text).split():
        m = _TERM.match(term)
        if not m:
            raise RuleFileError(file, line, f"values: cannot read {term!r}; expected e.g. "
                                "`40`, `40x5`, `10+5x3`, `_x2`")
        start, sign, delta, times = m.groups()
        n = int(times) + 1 if times else 1
        if start == "_":
            out.extend([None] * n)
            continue
        step = float(delta or 0) * (-1 if sign == "-" else 1)
        out.extend(float(start) + i * step for i in range(n))
    return out


def _duration(spec: dict[str, Any], key: str, file: Path, default: str | None = None) -> int:
    try:
        return parse_duration_ms(spec.get(key, default) if default else spec[key])
    except (KeyError, ValueError) as exc:
        raise RuleFileError(file, spec.get("__line__", 0), f"{key}: {exc}") from exc


def run_file(path: Path) -> tuple[int, list[Failure]]:
    """(number of checks, failures). Structural errors raise RuleFileError."""
    doc = load_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
        raise RuleFileError(path, 1, "expected a mapping with `rule_files:` and `tests:`")
    files = doc.get("rule_files") or []
    if not isinstance(files, list) or not files:
        raise RuleFileError(path, doc["__line__"], "rule_files: expected a list of files")
    rules_paths = [path.parent / str(f) for f in files]
    registry = [_device(d, path) for d in doc.get("registry") or []]
    checks = 0
    failures: list[Failure] = []
    for test in doc["tests"]:
        rules: list[Rule] = [r for p in rules_paths for r in load_rules(p)]
        c, f = _run_test(test, rules, registry, path)
        checks += c
        failures.extend(f)
    return checks, failures


def _device(spec: Any, file: Path) -> Device:
    if not isinstance(spec, dict) or "id" not in spec:
        raise RuleFileError(file, getattr(spec, "get", lambda *_: 0)("__line__", 0),
                            "registry: each device needs an `id`")
    keys = {"id", "township", "grid", "lat", "lon", "link", "name"}
    bad = set(spec) - keys - {"__line__", "__keylines__"}
    if bad:
        raise RuleFileError(file, spec["__line__"], f"registry: unknown keys {sorted(bad)}")
    return Device(**{k: spec[k] for k in keys if k in spec})


def _run_test(test: dict[str, Any], rules: list[Rule], registry: list[Device],
              file: Path) -> tuple[int, list[Failure]]:
    name = str(test.get("name", f"test at line {test['__line__']}"))
    step = _duration(test, "interval", file, "1m")
    series: dict[str, list[float | None]] = {}
    flags: dict[str, list[float | None]] = {}
    for s in test.get("input_series") or []:
        dev = s.get("device")
        if not isinstance(dev, str):
            raise RuleFileError(file, s["__line__"], "input_series: `device` is required")
        series[dev] = expand(s.get("values", ""), file, s["__line__"])
        if "flagged" in s:
            flags[dev] = expand(s["flagged"], file, s["__line__"])
    cases = sorted(test.get("alert_rule_test") or [],
                   key=lambda c: _duration(c, "eval_time", file))
    engine = Engine(rules, registry=registry)
    by_name = {r.name: r for r in rules}
    last: dict[tuple[str, str], Transition] = {}
    checks, failures = 0, []
    i = 0
    for case in cases:
        at = _duration(case, "eval_time", file)
        while i * step <= at:
            now = T0 + i * step
            devs = [d for d, v in series.items() if i < len(v) and v[i] is not None]
            if devs:
                fl = [bool((flags.get(d) or [])[i:i + 1] and flags[d][i]) for d in devs]
                engine.ingest(devs, [now] * len(devs), {f: [series[d][i] for d in devs]
                                                        for f in engine.fleet.fields}, fl)
            for t in engine.tick(now):
                last[(t.rule, t.subject)] = t
            i += 1
        checks += 1
        rule = by_name.get(str(case.get("rule")))
        where = case["__line__"]
        if rule is None:
            failures.append(Failure(str(file), where, name,
                                    f"no rule {case.get('rule')!r} in the rule files"))
            continue
        failures.extend(Failure(str(file), where, name, m)
                        for m in _compare(rule, engine, case, last, at))
    return checks, failures


def _compare(rule: Rule, engine: Engine, case: dict[str, Any],
             last: dict[tuple[str, str], Transition], at: int) -> list[str]:
    active = rule.active(engine.fleet)
    want = {str(a.get("subject")): a for a in case.get("alerts") or []}
    msgs: list[str] = []
    when = f"at {at // 1000}s"
    for subject, spec in want.items():
        state = str(spec.get("state", "firing"))
        got = active.get(subject)
        if got != state:
            msgs.append(f"{when}: {rule.name} for {subject}: expected {state}, got "
                        f"{got or 'inactive'}")
            continue
        t = last.get((rule.name, subject))
        for key in ("labels", "annotations"):
            exp = {k: str(v) for k, v in (spec.get(key) or {}).items()
                   if k not in ("__line__", "__keylines__")}
            have = getattr(t, key) if t else {}
            for k, v in exp.items():
                if have.get(k) != v:
                    msgs.append(f"{when}: {rule.name} for {subject}: {key[:-1]} {k}: "
                                f"expected {v!r}, got {have.get(k)!r}")
    for subject, state in sorted(active.items()):
        if subject not in want:
            msgs.append(f"{when}: {rule.name} for {subject}: unexpected {state} alert")
    return msgs
