"""alert_rules: the rule engine, a pure function of (state, now) over every device at once.

Rules come from YAML files (`load_rules`); AQI tables and their sources are in
`alert_rules.aqi` and `aqi_standards.json`.
"""

from alert_rules.engine import Engine
from alert_rules.rulefile import DEFAULT_RULES, RuleFileError, check_file, load_rules
from alert_rules.saved_state import SnapshotError

__all__ = [
    "DEFAULT_RULES",
    "Engine",
    "RuleFileError",
    "SnapshotError",
    "check_file",
    "load_rules",
]
