"""Rule files (YAML): load and validate, with errors naming file, line and key.

Each rule kind is a struct (`airgrid.config`); a rule is decoded against the struct of its
`kind`, and every problem found is reported at the line of its key.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import msgspec
import yaml
from msgspec import Meta

from airgrid.config import Invalid, Parse, Problem, Section, decode_all
from airgrid.durations import parse_duration_ms
from alert_rules import aqi
from alert_rules.aggregates import Aggregate
from alert_rules.rule_anomaly import AnomalyRule
from alert_rules.rule_aqi_category import AqiCategoryRule
from alert_rules.rule_base import RuleBase
from alert_rules.rule_deadman import DeadmanRule
from alert_rules.rule_flatline import FlatlineRule
from alert_rules.rule_quality import QualityRule
from alert_rules.rule_range import RangeRule
from alert_rules.rule_rate import RateRule
from alert_rules.rule_sensor_fault import SensorFaultRule
from alert_rules.rule_spatial import SpatialRule
from alert_rules.rule_threshold import ThresholdRule

Rule = RuleBase

# Reading fields a rule may watch: the optional numeric values of wire format v1
# (airgrid.wire.Reading), so the collector can hand every watched field over.
READING_FIELDS = ("pm1_0", "pm2_5", "pm10", "pm1_0_cf1", "pm2_5_cf1", "pm10_cf1", "n0_3",
                  "n0_5", "n1_0", "n2_5", "n5_0", "n10", "temperature_c", "humidity_pct")


class RuleFileError(ValueError):
    """A rule file is wrong; `file:line: message`, one line per problem (`others`)."""

    def __init__(self, file: Path | str, line: int, message: str,
                 others: Sequence[RuleFileError] = ()) -> None:
        super().__init__("\n".join([f"{file}:{line}: {message}", *map(str, others)]))
        self.file = str(file)
        self.line = line
        self.others = tuple(others)

    @classmethod
    def of(cls, problem: Problem) -> RuleFileError:
        return cls(problem.file, problem.line or 0, str(problem).split(": ", 1)[1])


def load_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    """A YAML file as plain data, and the line of each key ("rules[2].above": 14)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(path, 0, f"cannot read: {exc}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RuleFileError(path, mark.line + 1 if mark else 0, f"not valid YAML: {exc}") from exc
    lines: dict[str, int] = {}
    loader = yaml.SafeLoader("")
    return (None if node is None else _data(node, "", lines, loader)), lines


def _data(node: yaml.Node, path: str, lines: dict[str, int], loader: yaml.SafeLoader) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k, v in node.value:
            key = loader.construct_object(k)
            sub = f"{path}.{key}" if path else str(key)
            lines[sub] = k.start_mark.line + 1
            out[key] = _data(v, sub, lines, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_data(v, f"{path}[{i}]", lines, loader) for i, v in enumerate(node.value)]
    return loader.construct_object(node)


# --- the rule kinds, as written --------------------------------------------------------


def _positive_ms(value: Any) -> int:
    ms = parse_duration_ms(value)
    if ms <= 0:
        raise ValueError("not > 0")
    return ms


Duration = Annotated[int, Parse(parse_duration_ms, "a duration like 30s, 5m, 1h")]
PositiveDuration = Annotated[int, Parse(_positive_ms, "a duration > 0 like 30s, 5m, 1h")]
Count = Annotated[int, Meta(ge=0, description="a whole number >= 0")]
Labels = dict[str, str | int | float | bool] | None
Field = Annotated[str, Meta(min_length=1, description="a reading field")]
# .nan and .inf are YAML floats too: a threshold of NaN never fires, one of inf never clears
Finite = Annotated[float, Meta(ge=-1e300, le=1e300, description="a finite number")]
Fraction = Annotated[float, Meta(ge=0, le=1, description="a fraction of flagged readings, "
                                 "0..1")]


# Routing and the notification channels know these; anything else would never be routed.
SEVERITIES = ("info", "warning", "critical")
# What RuleBase.transition puts in a template's context (device, registry entry, value,
# AQI category; spatial rules add `scope`): any other {name} would render empty.
TEMPLATE_FIELDS = frozenset({"device", "rule", "value", "name", "township", "grid",
                             "category", "category_zh", "aqi", "scope"})


def _placeholders(template: str) -> Iterator[str]:
    """Field names of a str.format template; a malformed one yields its error text."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        yield f"malformed template ({exc})"
        return
    for _, name, _, _ in parsed:
        if name is not None:
            yield name.split(".", 1)[0].split("[", 1)[0]


class RuleSpec(Section, frozen=True, tag_field="kind"):
    name: str
    severity: str = "warning"
    labels: Labels = None
    annotations: Labels = None
    for_ms: Duration = msgspec.field(default=0, name="for")
    keep_firing_for_ms: Duration = msgspec.field(default=0, name="keep_firing_for")

    #: what this kind's rules add to the template context (`RuleBase.context`)
    extra_template_fields: ClassVar[frozenset[str]] = frozenset()

    def common(self) -> dict[str, Any]:
        return {"name": self.name, "for_ms": self.for_ms,
                "keep_firing_for_ms": self.keep_firing_for_ms, "severity": self.severity,
                "labels": _strs(self.labels), "annotations": _strs(self.annotations)}

    def problems(self) -> Iterator[Invalid]:
        if self.severity not in SEVERITIES:
            yield Invalid("severity", message=f"severity: {self.severity!r} is not a severity; "
                          f"expected one of {list(SEVERITIES)}")
        for key, template in (self.annotations or {}).items():
            known = TEMPLATE_FIELDS | self.extra_template_fields
            for name in _placeholders(str(template)):
                if name not in known:
                    yield Invalid(f"annotations.{key}", message=(
                        f"annotations.{key}: {{{name}}} is not a template field; expected "
                        f"one of {sorted(known)}"))
        field = getattr(self, "field", None)
        if field is not None and field not in READING_FIELDS:
            yield Invalid("field", message=f"field: {field!r} is not a reading field; "
                          f"expected one of {list(READING_FIELDS)}")
        above, clear = getattr(self, "above", None), getattr(self, "clear_below", None)
        if above is not None and clear is not None and clear > above:
            yield Invalid("clear_below", message=f"clear_below {clear} is above the firing "
                          f"threshold {above}: it must be on the clear side (<= above)")
        aggregate, window = getattr(self, "aggregate", None), getattr(self, "window_ms", 0)
        if aggregate == "mean" and window <= 0:
            yield Invalid("window", message="window: a mean needs a window > 0")


def _strs(labels: Labels) -> dict[str, str]:
    return {str(k): str(v) for k, v in (labels or {}).items()}


class ThresholdSpec(RuleSpec, frozen=True, tag="threshold", kw_only=True):
    above: Finite
    clear_below: Finite | None = None
    field: Field = "pm2_5"
    aggregate: Aggregate = "latest"
    window_ms: Duration = msgspec.field(default=0, name="window")


class AqiCategorySpec(RuleSpec, frozen=True, tag="aqi_category", kw_only=True):
    standard: str = aqi.DEFAULT_STANDARD
    at_least: str | None = None  # None: the fifth category of the standard
    field: Field = "pm2_5"
    pollutant: Literal["pm2_5", "pm10"] = "pm2_5"
    aggregate: Aggregate = "nowcast"
    window_ms: Duration = msgspec.field(default=0, name="window")
    clear_margin: Annotated[float, Meta(ge=0, le=1e300, description=">= 0 (AQI points below the "
                                        "edge)")] = 10

    def problems(self) -> Iterator[Invalid]:
        yield from super().problems()
        known = sorted(aqi.standards())
        if self.standard not in known:
            yield Invalid("standard", f"one of {known}", self.standard)
        elif self.at_least is not None and self.at_least not in self.category_names():
            yield Invalid("at_least", f"one of {list(self.category_names())}", self.at_least)

    def category_names(self) -> tuple[str, ...]:
        return tuple(c.en for c in aqi.get(self.standard).categories[1:])


class RateSpec(RuleSpec, frozen=True, tag="rate_of_change", kw_only=True):
    above: Finite
    clear_below: Finite | None = None
    field: Field = "pm2_5"
    direction: Literal["rise", "both"] = "rise"
    max_gap_ms: PositiveDuration = msgspec.field(default=600_000, name="max_gap")


class FlatlineSpec(RuleSpec, frozen=True, tag="flatline", kw_only=True):
    window_ms: PositiveDuration = msgspec.field(name="window")
    field: Field = "pm2_5"
    tolerance: Annotated[float, Meta(ge=0, le=1e300, description="a finite number >= 0")] = 0
    min_readings: Count = 5


class RangeSpec(RuleSpec, frozen=True, tag="out_of_range", kw_only=True):
    field: Field = "pm2_5"
    min: Finite = 0
    max: Finite = 1000
    max_age_ms: Duration = msgspec.field(default=0, name="max_age")

    def problems(self) -> Iterator[Invalid]:
        yield from super().problems()
        if self.min >= self.max:
            yield Invalid("min", message=f"min {self.min} must be below max {self.max}")


class QualitySpec(RuleSpec, frozen=True, tag="data_quality", kw_only=True):
    window_ms: PositiveDuration = msgspec.field(name="window")
    above: Fraction
    clear_below: Finite | None = None
    min_readings: Count = 5


class DeadmanSpec(RuleSpec, frozen=True, tag="deadman", kw_only=True):
    absent_ms: PositiveDuration = msgspec.field(name="absent_for")
    grace_ms: Duration = msgspec.field(default=0, name="cellular_grace")


class AnomalySpec(RuleSpec, frozen=True, tag="anomaly", kw_only=True):
    extra_template_fields: ClassVar[frozenset[str]] = frozenset({"statistic_zh",
                                                                 "statistic_en"})
    above: Annotated[float, Meta(gt=0, lt=1, description="an anomaly score threshold in "
                                 "(0, 1)")] = 0.5
    field: Field = "pm2_5"
    cooldown_ms: Duration = msgspec.field(default=1_800_000, name="cooldown")
    max_age_ms: PositiveDuration = msgspec.field(default=600_000, name="max_age")
    neighbours: bool = False  # leave devices their neighbours contradict to sensor_fault
    radius_km: Annotated[float, Meta(gt=0, description="> 0 km")] = 3.0
    min_neighbours: Count = 2
    ratio: Annotated[float, Meta(gt=1, description="> 1")] = 2.0

    def problems(self) -> Iterator[Invalid]:
        yield from super().problems()
        if self.keep_firing_for_ms:
            yield Invalid("keep_firing_for",
                          message="keep_firing_for: an anomaly rule uses `cooldown`")


class SpatialSpec(RuleSpec, frozen=True, tag="spatial", kw_only=True):
    field: Field = "pm2_5"
    window_ms: PositiveDuration = msgspec.field(default=600_000, name="window")
    radius_km: Finite = 3.0
    max_neighbours: Count = 8
    min_neighbours: Count = 3
    ratio: Annotated[float, Meta(gt=1, le=1e300, description="> 1 (how many times the neighbours' "
                                 "median)")] = 2.0
    min_excess: Finite = 35.0
    regional_above: Finite = 115.0
    regional_fraction: Annotated[float, Meta(gt=0, le=1, description="0 < x <= 1")] = 0.5
    frozen_readings: Count = 3


def _threshold(s: ThresholdSpec) -> RuleBase:
    return ThresholdRule(**s.common(), field=s.field, above=s.above,
                         clear_below=s.above if s.clear_below is None else s.clear_below,
                         aggregate=s.aggregate, window_ms=s.window_ms)


def _aqi_category(s: AqiCategorySpec) -> RuleBase:
    names = s.category_names()
    level = s.at_least or (names[3] if len(names) > 3 else names[-1])
    return AqiCategoryRule(**s.common(), field=s.field, pollutant=s.pollutant,
                           standard=s.standard, level=names.index(level) + 1,
                           clear_margin=s.clear_margin, aggregate=s.aggregate,
                           window_ms=s.window_ms)


def _rate(s: RateSpec) -> RuleBase:
    return RateRule(**s.common(), field=s.field, above=s.above,
                    clear_below=s.above if s.clear_below is None else s.clear_below,
                    direction=s.direction, max_gap_ms=s.max_gap_ms)


def _flatline(s: FlatlineSpec) -> RuleBase:
    return FlatlineRule(**s.common(), field=s.field, window_ms=s.window_ms,
                        tolerance=s.tolerance, min_readings=s.min_readings)


def _range(s: RangeSpec) -> RuleBase:
    return RangeRule(**s.common(), field=s.field, min=s.min, max=s.max,
                     max_age_ms=s.max_age_ms)


def _quality(s: QualitySpec) -> RuleBase:
    return QualityRule(**s.common(), window_ms=s.window_ms, above=s.above,
                       clear_below=s.above if s.clear_below is None else s.clear_below,
                       min_readings=s.min_readings)


def _deadman(s: DeadmanSpec) -> RuleBase:
    return DeadmanRule(**s.common(), absent_ms=s.absent_ms, grace_ms=s.grace_ms)


def _anomaly(s: AnomalySpec) -> RuleBase:
    return AnomalyRule(**{**s.common(), "keep_firing_for_ms": s.cooldown_ms}, field=s.field,
                       above=s.above, max_age_ms=s.max_age_ms, neighbours=s.neighbours,
                       radius_km=s.radius_km, min_neighbours=max(1, s.min_neighbours),
                       ratio=s.ratio)


def _spatial(s: SpatialSpec) -> RuleBase:
    return SpatialRule(**s.common(), field=s.field, window_ms=s.window_ms,
                       radius_km=s.radius_km, max_neighbours=max(1, s.max_neighbours),
                       min_neighbours=s.min_neighbours, ratio=s.ratio,
                       min_excess=s.min_excess, regional_above=s.regional_above,
                       regional_fraction=s.regional_fraction,
                       frozen_readings=s.frozen_readings)


class SensorFaultSpec(RuleSpec, frozen=True, tag="sensor_fault", kw_only=True):
    extra_template_fields: ClassVar[frozenset[str]] = frozenset({"neighbour_median",
                                                                 "duration_min"})
    cause: Literal["stuck", "zero", "jump", "shift", "drift", "humidity"]
    field: Field = "pm2_5"
    window_ms: PositiveDuration = msgspec.field(default=1_200_000, name="window")
    radius_km: Annotated[float, Meta(gt=0, description="> 0 km")] = 3.0
    max_neighbours: Count = 8
    min_neighbours: Count = 2
    ratio: Annotated[float, Meta(gt=1, description="> 1 (how many times the neighbours' "
                                 "median)")] = 2.0
    min_neighbour_level: Annotated[float, Meta(ge=0, description=">= 0")] = 5.0
    humidity_above: Annotated[float, Meta(ge=0, le=100, description="0..100 % RH")] = 85.0
    min_readings: Count = 5
    persist: Count = 2  # shift: readings beyond `ratio` before it fires
    step_ratio: Annotated[float, Meta(gt=1, description="> 1 (shift: the device's own step "
                                      "that makes it a candidate)")] = 1.3
    min_excess: Annotated[float, Meta(ge=0, description=">= 0 µg/m³ (shift: how far from "
                                      "where its neighbours put it)")] = 5.0
    #: shift: or this many times the ratio's own noise, once the usual ratio is known
    noise_k: Annotated[float, Meta(gt=0, description="> 0 (shift: how many times the "
                                   "ratio's noise a departure must clear below "
                                   "min_excess)")] = 5.0
    #: shift: time constant of the device's usual ratio to its neighbours (0: none)
    usual_tau_ms: Duration = msgspec.field(default=12 * 3_600_000, name="usual_over")
    usual_every_ms: PositiveDuration = msgspec.field(default=1_800_000, name="usual_every")
    usual_after: Count = 6
    #: shift: due updates over which the device's side of its usual ratio is averaged,
    #: while that ratio rests on fewer updates; one side for that long and the usual
    #: ratio is learned afresh (0: never)
    usual_doubt: Count = 24
    #: shift: time constant of the slow anchor a learned drift is judged from (0: none)
    anchor_tau_ms: Duration = msgspec.field(default=7 * 24 * 3_600_000, name="usual_anchor")


def _sensor_fault(s: SensorFaultSpec) -> RuleBase:
    return SensorFaultRule(**s.common(), cause=s.cause, field=s.field, window_ms=s.window_ms,
                           radius_km=s.radius_km, max_neighbours=max(1, s.max_neighbours),
                           min_neighbours=max(1, s.min_neighbours), ratio=s.ratio,
                           min_neighbour_level=s.min_neighbour_level,
                           humidity_above=s.humidity_above, min_readings=s.min_readings,
                           persist=max(1, s.persist), step_ratio=s.step_ratio,
                           min_excess=s.min_excess, noise_k=s.noise_k,
                           usual_tau_ms=s.usual_tau_ms,
                           usual_every_ms=s.usual_every_ms,
                           usual_after=max(1, s.usual_after), usual_doubt=s.usual_doubt,
                           anchor_tau_ms=s.anchor_tau_ms)


_Builder = tuple[type[RuleSpec], Callable[[Any], RuleBase]]
KINDS: dict[str, _Builder] = {
    "threshold": (ThresholdSpec, _threshold), "aqi_category": (AqiCategorySpec, _aqi_category),
    "rate_of_change": (RateSpec, _rate), "flatline": (FlatlineSpec, _flatline),
    "out_of_range": (RangeSpec, _range), "data_quality": (QualitySpec, _quality),
    "deadman": (DeadmanSpec, _deadman), "anomaly": (AnomalySpec, _anomaly),
    "spatial": (SpatialSpec, _spatial), "sensor_fault": (SensorFaultSpec, _sensor_fault),
}
RULE_KINDS = tuple(KINDS)


def load_rules(path: Path) -> list[Rule]:
    """All rules of a file; raise RuleFileError listing every problem in it."""
    rules, errors = _load(Path(path))
    if errors:
        raise RuleFileError(errors[0].file, errors[0].line, str(errors[0]).split(": ", 1)[1],
                            errors[1:])
    return rules


def check_file(path: Path) -> list[RuleFileError]:
    """Every error in a rule file, for `airgrid-rules check`."""
    try:
        return _load(Path(path))[1]
    except RuleFileError as exc:
        return [exc]


def _load(path: Path) -> tuple[list[Rule], list[RuleFileError]]:
    doc, lines = load_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise RuleFileError(path, 1, "expected a mapping with a `rules:` list")
    rules: list[Rule] = []
    errors: list[RuleFileError] = []
    names: set[str] = set()
    for i, spec in enumerate(doc["rules"]):
        at = f"rules[{i}]"
        here = {k.removeprefix(at).lstrip("."): v for k, v in lines.items()
                if k == at or k.startswith((f"{at}.", f"{at}["))}
        try:
            rules.append(_one(spec, path, names, here))
        except RuleFileError as exc:
            errors.extend([exc, *exc.others])
    return rules, errors


def _one(spec: Any, path: Path, names: set[str], lines: dict[str, int]) -> Rule:
    line = lines.get("", 1)
    if not isinstance(spec, dict):
        raise RuleFileError(path, line, "each rule must be a mapping")
    name = spec.get("name")
    if not isinstance(name, str) or not name.replace("_", "").isalnum():
        raise RuleFileError(path, line, f"name: expected letters, digits and _, got {name!r}")
    if name in names:
        raise RuleFileError(path, line, f"name: rule {name!r} is defined twice")
    names.add(name)
    kind = spec.get("kind")
    if kind not in KINDS:
        raise RuleFileError(path, lines.get("kind", line),
                            f"kind: unknown kind {kind!r}; known: {list(KINDS)}")
    struct, build = KINDS[kind]
    value, problems = decode_all({k: v for k, v in spec.items() if k != "kind"}, struct,
                                 path, lines=lines)
    if problems:
        errors = [RuleFileError.of(p) for p in problems]
        raise RuleFileError(errors[0].file, errors[0].line,
                            str(errors[0]).split(": ", 1)[1], errors[1:])
    return build(value)


DEFAULT_RULES = Path(__file__).with_name("default_rules.yaml")
