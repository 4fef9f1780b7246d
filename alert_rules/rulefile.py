"""Rule files (YAML): load and validate, with errors naming file, line and key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from airgrid.durations import parse_duration_ms
from alert_rules import aqi
from alert_rules.aggregates import AGGREGATES
from alert_rules.rule_anomaly import AnomalyRule
from alert_rules.rule_aqi_category import AqiCategoryRule
from alert_rules.rule_base import RuleBase
from alert_rules.rule_deadman import DeadmanRule
from alert_rules.rule_flatline import FlatlineRule
from alert_rules.rule_quality import QualityRule
from alert_rules.rule_range import RangeRule
from alert_rules.rule_rate import RateRule
from alert_rules.rule_spatial import SpatialRule
from alert_rules.rule_threshold import ThresholdRule

Rule = RuleBase

# Reading fields a rule may watch: the optional numeric values of wire format v1
# (airgrid.wire.Reading), so the collector can hand every watched field over.
READING_FIELDS = ("pm1_0", "pm2_5", "pm10", "pm1_0_cf1", "pm2_5_cf1", "pm10_cf1", "n0_3",
                  "n0_5", "n1_0", "n2_5", "n5_0", "n10", "temperature_c", "humidity_pct")


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
    mapping["__keylines__"] = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    return mapping  # type: ignore[return-value]


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file whose mappings carry `__line__`; errors name file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(path, 0, f"cannot read: {exc}") from exc
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RuleFileError(path, mark.line + 1 if mark else 0, f"not valid YAML: {exc}") from exc


class _Spec:
    """Typed access to one rule mapping; every error names file, line and key."""

    def __init__(self, spec: dict[str, Any], file: Path | str) -> None:
        self.spec, self.file, self.line = spec, file, int(spec["__line__"])
        self.used = {"__line__", "__keylines__", "name", "kind", "severity", "labels",
                     "annotations", "for", "keep_firing_for"}

    def fail(self, message: str, key: str | None = None) -> RuleFileError:
        """An error at the key's own line when the key is in the file, else the rule's."""
        line = self.spec.get("__keylines__", {}).get(key, self.line) if key else self.line
        return RuleFileError(self.file, line, message)

    def number(self, key: str, default: float | None = None) -> float:
        self.used.add(key)
        value = self.spec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{key}: expected a number, got {value!r}", key)
        return float(value)

    def count(self, key: str, default: int) -> int:
        value = self.number(key, default)
        if value < 0 or value != int(value):
            raise self.fail(f"{key}: expected a whole number >= 0, got {value!r}", key)
        return int(value)

    def duration(self, key: str, default: int | str = 0, positive: bool = False) -> int:
        self.used.add(key)
        try:
            ms = parse_duration_ms(self.spec.get(key, default))
        except ValueError as exc:
            raise self.fail(f"{key}: {exc}", key) from exc
        if positive and ms <= 0:
            raise self.fail(f"{key}: expected a duration > 0", key)
        return ms

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        self.used.add(key)
        value = self.spec.get(key, default)
        if value not in options:
            raise self.fail(f"{key}: expected one of {list(options)}, got {value!r}", key)
        return str(value)

    def text(self, key: str, default: str) -> str:
        self.used.add(key)
        value = self.spec.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{key}: expected a name, got {value!r}", key)
        if key == "field" and value not in READING_FIELDS:
            raise self.fail(f"field: {value!r} is not a reading field; expected one of "
                            f"{list(READING_FIELDS)}", key)
        return value

    def str_map(self, key: str) -> dict[str, str]:
        value = self.spec.get(key, {}) or {}
        if not isinstance(value, dict):
            raise self.fail(f"{key}: expected a mapping", key)
        return {str(k): str(v) for k, v in value.items() if k not in ("__line__", "__keylines__")}

    def clear_below(self, above: float, key: str = "clear_below") -> float:
        value = self.number(key, above)
        if value > above:
            raise self.fail(f"{key} {value} is above the firing threshold {above}: "
                            "it must be on the clear side (<= above)", key)
        return value

    def common(self) -> dict[str, Any]:
        return {"name": str(self.spec["name"]), "for_ms": self.duration("for"),
                "keep_firing_for_ms": self.duration("keep_firing_for"),
                "severity": str(self.spec.get("severity", "warning")),
                "labels": self.str_map("labels"), "annotations": self.str_map("annotations")}

    def check_unknown(self, kind: str) -> None:
        unknown = set(self.spec) - self.used
        if unknown:
            raise self.fail(f"unknown keys {sorted(unknown)} for a {kind} rule")


def _aggregate(s: _Spec) -> tuple[str, int]:
    agg = s.choice("aggregate", AGGREGATES, "latest")
    window = s.duration("window")
    if agg == "mean" and window <= 0:
        raise s.fail("window: a mean needs a window > 0")
    return agg, window


def _threshold(s: _Spec) -> RuleBase:
    above = s.number("above")
    agg, window = _aggregate(s)
    return ThresholdRule(**s.common(), field=s.text("field", "pm2_5"), above=above,
                         clear_below=s.clear_below(above), aggregate=agg,  # type: ignore[arg-type]
                         window_ms=window)


def _aqi_category(s: _Spec) -> RuleBase:
    standard = s.choice("standard", tuple(sorted(aqi.standards())), aqi.DEFAULT_STANDARD)
    cats = aqi.get(standard).categories
    names = tuple(c.en for c in cats[1:])
    level = s.choice("at_least", names, cats[4].en if len(cats) > 4 else names[-1])
    s.spec.setdefault("aggregate", "nowcast")
    agg, window = _aggregate(s)
    margin = s.number("clear_margin", 10)
    if margin < 0:
        raise s.fail(f"clear_margin {margin}: must be >= 0 (AQI points below the edge)")
    return AqiCategoryRule(**s.common(), field=s.text("field", "pm2_5"),
                           pollutant=s.choice("pollutant", ("pm2_5", "pm10"), "pm2_5"),
                           standard=standard, level=names.index(level) + 1,
                           clear_margin=margin, aggregate=agg,  # type: ignore[arg-type]
                           window_ms=window)


def _rate(s: _Spec) -> RuleBase:
    above = s.number("above")
    return RateRule(**s.common(), field=s.text("field", "pm2_5"), above=above,
                    clear_below=s.clear_below(above),
                    direction=s.choice("direction", ("rise", "both"), "rise"),
                    max_gap_ms=s.duration("max_gap", "10m", positive=True))


def _flatline(s: _Spec) -> RuleBase:
    tol = s.number("tolerance", 0)
    if tol < 0:
        raise s.fail(f"tolerance {tol}: must be >= 0")
    return FlatlineRule(**s.common(), field=s.text("field", "pm2_5"),
                        window_ms=s.duration("window", positive=True), tolerance=tol,
                        min_readings=s.count("min_readings", 5))


def _range(s: _Spec) -> RuleBase:
    lo, hi = s.number("min", 0), s.number("max", 1000)
    if lo >= hi:
        raise s.fail(f"min {lo} must be below max {hi}")
    return RangeRule(**s.common(), field=s.text("field", "pm2_5"), min=lo, max=hi,
                     max_age_ms=s.duration("max_age"))


def _quality(s: _Spec) -> RuleBase:
    above = s.number("above")
    if not 0 <= above <= 1:
        raise s.fail(f"above {above}: a fraction of flagged readings, 0..1")
    return QualityRule(**s.common(), window_ms=s.duration("window", positive=True),
                       above=above, clear_below=s.clear_below(above),
                       min_readings=s.count("min_readings", 5))


def _deadman(s: _Spec) -> RuleBase:
    return DeadmanRule(**s.common(), absent_ms=s.duration("absent_for", positive=True),
                       grace_ms=s.duration("cellular_grace"))


def _anomaly(s: _Spec) -> RuleBase:
    above = s.number("above", 0.5)
    if not 0 < above < 1:
        raise s.fail(f"above {above}: an anomaly score threshold in (0, 1)")
    c = s.common()
    c["keep_firing_for_ms"] = s.duration("cooldown", "30m")
    if "keep_firing_for" in s.spec:
        raise s.fail("keep_firing_for: an anomaly rule uses `cooldown`")
    return AnomalyRule(**c, field=s.text("field", "pm2_5"), above=above,
                       max_age_ms=s.duration("max_age", "10m", positive=True))


def _spatial(s: _Spec) -> RuleBase:
    ratio = s.number("ratio", 2.0)
    if ratio <= 1:
        raise s.fail(f"ratio {ratio}: must be > 1 (how many times the neighbours' median)")
    frac = s.number("regional_fraction", 0.5)
    if not 0 < frac <= 1:
        raise s.fail(f"regional_fraction {frac}: expected 0 < x <= 1")
    return SpatialRule(**s.common(), field=s.text("field", "pm2_5"),
                       window_ms=s.duration("window", "10m", positive=True),
                       radius_km=s.number("radius_km", 3.0),
                       max_neighbours=max(1, s.count("max_neighbours", 8)),
                       min_neighbours=s.count("min_neighbours", 3), ratio=ratio,
                       min_excess=s.number("min_excess", 35.0),
                       regional_above=s.number("regional_above", 115.0),
                       regional_fraction=frac)


KINDS: dict[str, Callable[[_Spec], RuleBase]] = {
    "threshold": _threshold, "aqi_category": _aqi_category, "rate_of_change": _rate,
    "flatline": _flatline, "out_of_range": _range, "data_quality": _quality,
    "deadman": _deadman, "anomaly": _anomaly, "spatial": _spatial,
}
RULE_KINDS = tuple(KINDS)


def load_rules(path: Path) -> list[Rule]:
    """All rules of a file; the first error raises RuleFileError (see `check_file`)."""
    rules, errors = _load(Path(path))
    if errors:
        raise errors[0]
    return rules


def check_file(path: Path) -> list[RuleFileError]:
    """Every error in a rule file (one per rule at most), for `airgrid-rules check`."""
    return _load(Path(path))[1]


def _load(path: Path) -> tuple[list[Rule], list[RuleFileError]]:
    doc = load_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise RuleFileError(path, 1, "expected a mapping with a `rules:` list")
    rules: list[Rule] = []
    errors: list[RuleFileError] = []
    names: set[str] = set()
    for spec in doc["rules"]:
        try:
            rules.append(_one(spec, path, names, doc["__line__"]))
        except RuleFileError as exc:
            errors.append(exc)
    return rules, errors


def _one(spec: Any, path: Path, names: set[str], doc_line: int) -> Rule:
    if not isinstance(spec, dict):
        raise RuleFileError(path, doc_line, "each rule must be a mapping")
    line = spec["__line__"]
    name = spec.get("name")
    if not isinstance(name, str) or not name.replace("_", "").isalnum():
        raise RuleFileError(path, line, f"name: expected letters, digits and _, got {name!r}")
    if name in names:
        raise RuleFileError(path, line, f"name: rule {name!r} is defined twice")
    names.add(name)
    kind = spec.get("kind")
    if kind not in KINDS:
        raise RuleFileError(path, spec["__keylines__"].get("kind", line),
                            f"kind: unknown kind {kind!r}; known: {list(KINDS)}")
    s = _Spec(spec, path)
    rule = KINDS[kind](s)
    s.check_unknown(kind)
    return rule


DEFAULT_RULES = Path(__file__).with_name("default_rules.yaml")
