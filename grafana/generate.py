"""Build every dashboard from source and write or check the committed JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana.boards import alerts, device, fleet, overview, response
from grafana.errors import GenerateError
from grafana.model import Dashboard

PACKAGE_DIR = Path(__file__).resolve().parent
DASHBOARD_DIR = PACKAGE_DIR / "dashboards"
PROVISIONING_DIR = PACKAGE_DIR / "provisioning"


def dashboards() -> list[Dashboard]:
    return [overview.build(), device.build(), fleet.build(), alerts.build(), response.build()]


def render(d: Dashboard) -> str:
    # ensure_ascii=False keeps the Chinese titles readable in review diffs.
    return json.dumps(d.to_json(), indent=2, ensure_ascii=False) + "\n"


def expected_files() -> dict[str, str]:
    """File name -> JSON text, for every dashboard."""
    return {f"{d.uid}.json": render(d) for d in dashboards()}


def write(directory: Path = DASHBOARD_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in expected_files().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path = DASHBOARD_DIR) -> list[str]:
    """Names of committed files that differ from the generator's output, or are extra."""
    want = expected_files()
    out = []
    for name, text in want.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    out += sorted(p.name for p in directory.glob("*.json") if p.name not in want)
    return out


def load_committed(directory: Path = DASHBOARD_DIR) -> list[dict[str, Any]]:
    """The committed dashboard JSON (what provisioning and `push` deliver)."""
    out: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.json")):
        try:
            board = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise GenerateError(f"{path}: not readable dashboard JSON ({exc})") from exc
        if not isinstance(board, dict) or not isinstance(board.get("uid"), str):
            raise GenerateError(f"{path}: expected a dashboard object with a string uid")
        out.append(board)
    if not out:
        raise GenerateError(f"{directory}: no dashboard JSON; run `airgrid-grafana generate`")
    return out
