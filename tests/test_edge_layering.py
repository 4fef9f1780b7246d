"""The agent and the simulator stay independent (a shared bug would pass every test)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(package: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        out[str(path.relative_to(ROOT))] = names
    return out


@pytest.mark.parametrize(("package", "allowed_shared", "forbidden"), [
    ("edge_agent", {"airgrid.wire", "airgrid.config", "airgrid.secrets",
                    "airgrid.sd_notify"},
     ("numpy", "collector", "alert_rules", "grafana", "firmware_sim")),
    ("firmware_sim", set(), ("edge_agent", "collector", "alert_rules")),
])
def test_dependencies_point_one_way(
    package: str, allowed_shared: set[str], forbidden: tuple[str, ...]
) -> None:
    for file, names in _imports(package).items():
        for name in names:
            top = name.split(".")[0]
            assert top not in forbidden, f"{file} imports {name}"
            if top == "airgrid":
                assert name in allowed_shared, f"{file} imports {name}"
