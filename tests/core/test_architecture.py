"""The layer contract holds on the tree, and the checker does catch what it forbids."""

from __future__ import annotations

from pathlib import Path

from tests.support.architecture import ALLOWED, TOP_LAYER, check, main

ROOT = Path(__file__).resolve().parents[2]


def _tree(root: Path, files: dict[str, str]) -> Path:
    for package in [*ALLOWED, *TOP_LAYER]:
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_tree_keeps_the_contract() -> None:
    assert [str(v) for v in check(ROOT)] == []


def test_every_top_level_package_is_named_in_the_contract() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages <= set(ALLOWED) | TOP_LAYER


def test_violations_name_file_line_and_import(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "airgrid/wire.py": "import json\nimport msgspec\nfrom collector import decode\n",
        "edge_agent/agent.py": (
            "from airgrid.wire import Reading\n"
            "def f() -> None:\n"
            "    from firmware_sim.pms5003 import frame\n"
        ),
        "edge_agent/drivers/x.py": "import numpy as np\n",
        "firmware_sim/sim.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    import edge_agent.drivers\n"
        ),
        "alert_rules/engine.py": (
            "import numpy\nimport importlib\nimportlib.import_module('collector.x')\n"
        ),
        "collector/pipeline.py": "import alert_rules.engine\nfrom edge_agent import outbox\n",
        "grafana/schema.py": (
            "from airgrid.measurements import READINGS\nimport orchestration.stack\n"
        ),
        "orchestration/stack.py": "import collector, edge_agent, firmware_sim, grafana, bench\n",
        "bench/rules.py": "from tests.support import reference_rules\nimport orchestration\n",
        "stray/__init__.py": "",
    })
    found = {str(v) for v in check(tmp_path)}
    assert found == {
        "airgrid/wire.py:3: imports collector (airgrid may import only nothing of ours)",
        "edge_agent/agent.py:3: imports firmware_sim.pms5003 (edge_agent may import only airgrid)",
        "edge_agent/drivers/x.py:1: imports numpy (edge_agent must not import numpy)",
        "firmware_sim/sim.py:3: imports edge_agent.drivers (firmware_sim may import only airgrid)",
        "alert_rules/engine.py:3: imports collector.x (alert_rules may import only airgrid)",
        "collector/pipeline.py:2: imports edge_agent "
        "(collector may import only airgrid, alert_rules)",
        "grafana/schema.py:2: imports orchestration.stack "
        "(grafana may import only airgrid, alert_rules)",
        "stray/__init__.py:1: imports stray "
        "(a top-level package the import contract does not name)",
    }
    assert main([str(tmp_path)]) == 1


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    _tree(tmp_path, {"collector/cli.py": "import alert_rules\nfrom airgrid import wire\n"})
    assert check(tmp_path) == []
    assert main([str(tmp_path)]) == 0
