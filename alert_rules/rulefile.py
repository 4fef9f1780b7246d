"""Rule files (YAML): load and validate, with errors naming file, line and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from alert_rules.durations import parse_duration_ms
from alert_rules.rule_threshold import ThresholdRule

RULE_KINDS = ("threshold",)
Rule = ThresholdRule


class RuleFileError(ValueError):
    """A rule file is wrong; `file:line: message`."""

    def __init__(self, file: Path | str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = str(file)
        self.line = line


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of each mapping in `__line__`."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping  # type: ignore[return-value]


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _number(spec: dict[str, Any], key: str, file: Path | str, line: int) -> float:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleFileError(file, line, f"{key}: expected a number, got {value!r}")
    return float(value)


def _duration(spec: dict[str, Any], key: str, file: Path | str, line: int) -> int:
    try:
        return parse_duration_ms(spec.get(key, 0))
    except ValueError as exc:
        raise RuleFileError(file, line, f"{key}: {exc}") from exc


def _str_map(spec: dict[str, Any], key: str, file: Path | str, line: int) -> dict[str, str]:
    value = spec.get(key, {}) or {}
    if not isinstance(value, dict):
        raise RuleFileError(file, line, f"{key}: expected a mapping")
    return {str(k): str(v) for k, v in value.items() if k != "__line__"}


_THRESHOLD_KEYS = {"name", "kind", "field", "aggregate", "window", "above", "clear_below",
                   "for", "keep_firing_for", "severity", "labels", "annotations", "__line__"}


def _threshold(spec: dict[str, Any], file: Path | str, line: int) -> ThresholdRule:
    unknown = set(spec) - _THRESHOLD_KEYS
    if unknown:
        raise RuleFileError(file, line, f"unknown keys {sorted(unknown)} for a threshold rule")
    above = _number(spec, "above", file, line)
    clear_below = _number(spec, "clear_below", file, line) if "clear_below" in spec else above
    if clear_below > above:
        raise RuleFileError(
            file, line, f"clear_below {clear_below} is above the firing threshold {above}: "
            "it must be on the clear side (<= above)")
    aggregate = spec.get("aggregate", "latest")
    if aggregate not in ("latest", "mean"):
        raise RuleFileError(file, line, f"aggregate: expected latest or mean, got {aggregate!r}")
    window_ms = _duration(spec, "window", file, line)
    if aggregate == "mean" and window_ms <= 0:
        raise RuleFileError(file, line, "window: a mean needs a window > 0")
    field = spec.get("field", "pm2_5")
    if not isinstance(field, str):
        raise RuleFileError(file, line, f"field: expected a reading field name, got {field!r}")
    return ThresholdRule(
        name=str(spec["name"]), field=field, above=above, clear_below=clear_below,
        aggregate=aggregate, window_ms=window_ms, for_ms=_duration(spec, "for", file, line),
        keep_firing_for_ms=_duration(spec, "keep_firing_for", file, line),
        severity=str(spec.get("severity", "warning")),
        labels=_str_map(spec, "labels", file, line),
        annotations=_str_map(spec, "annotations", file, line),
    )


def load_rules(path: Path) -> list[Rule]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(path, 0, f"cannot read: {exc}") from exc
    try:
        doc = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RuleFileError(path, mark.line + 1 if mark else 0, f"not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise RuleFileError(path, 1, "expected a mapping with a `rules:` list")
    rules: list[Rule] = []
    names: set[str] = set()
    for spec in doc["rules"]:
        if not isinstance(spec, dict):
            raise RuleFileError(path, doc["__line__"], "each rule must be a mapping")
        line = spec["__line__"]
        name = spec.get("name")
        if not isinstance(name, str) or not name.replace("_", "").isalnum():
            raise RuleFileError(path, line, f"name: expected letters, digits and _, got {name!r}")
        if name in names:
            raise RuleFileError(path, line, f"name: rule {name!r} is defined twice")
        names.add(name)
        kind = spec.get("kind")
        if kind not in RULE_KINDS:
            raise RuleFileError(path, line, f"kind: unknown kind {kind!r}; known: {RULE_KINDS}")
        rules.append(_threshold(spec, path, line))
    return rules


DEFAULT_RULES = Path(__file__).with_name("default_rules.yaml")
