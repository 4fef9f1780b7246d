"""The import contract between the top-level packages, checked on the source with `ast`.

Every import statement counts: module level, inside functions, under `if TYPE_CHECKING:`,
and `importlib.import_module("...")` / `__import__("...")` with a literal name. Run as
`python -m tests.support.architecture [ROOT]` (from `make lint`) or through
tests/core/test_architecture.py; each violation is printed as `file:line: ...`.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Which of our packages each layered package may import (besides itself). `airgrid` is
#: the core; packages not listed here but in TOP_LAYER may import anything.
ALLOWED: dict[str, frozenset[str]] = {
    "airgrid": frozenset(),
    "edge_agent": frozenset({"airgrid"}),
    "firmware_sim": frozenset({"airgrid"}),
    "alert_rules": frozenset({"airgrid"}),
    "collector": frozenset({"airgrid", "alert_rules"}),
    "grafana": frozenset({"airgrid", "alert_rules"}),
    # The report reads what the collector stores, through the collector's own config
    # loader and alert store; nothing of ours imports it.
    "report": frozenset({"airgrid", "alert_rules", "collector"}),
}
#: Stand on top of everything; nothing in ALLOWED may import them.
TOP_LAYER = frozenset({"orchestration", "bench", "tests"})
#: Third-party packages a package must not import: the agent runs on a Pi without numpy.
FORBIDDEN_THIRD_PARTY: dict[str, frozenset[str]] = {"edge_agent": frozenset({"numpy"})}

OURS = frozenset(ALLOWED) | TOP_LAYER
_DYNAMIC = {"import_module", "__import__"}


@dataclass(frozen=True)
class Violation:
    file: str  # relative to the checked root
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: imports {self.imported} ({self.rule})"


def imports_of(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import anywhere in the tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            # Relative imports stay inside their own package (and ruff bans them).
            if node.level == 0 and node.module:
                yield node.lineno, node.module
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if (name in _DYNAMIC and node.args and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)):
                yield node.lineno, node.args[0].value


def _rule_broken(package: str, imported: str) -> str | None:
    top = imported.split(".")[0]
    if top in FORBIDDEN_THIRD_PARTY.get(package, frozenset()):
        return f"{package} must not import {top}"
    if top == package or top not in OURS:
        return None
    allowed = ALLOWED[package]
    if top in allowed:
        return None
    may = ", ".join(sorted(allowed)) or "nothing of ours"
    return f"{package} may import only {may}"


def top_level_packages(root: Path) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/__init__.py"))


def check(root: Path) -> list[Violation]:
    """Every broken rule under `root` (a checkout), plus packages the contract misses."""
    found: list[Violation] = []
    for name in top_level_packages(root):
        if name not in OURS:
            found.append(Violation(f"{name}/__init__.py", 1, name,
                                   "a top-level package the import contract does not name"))
    for package in sorted(ALLOWED):
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            tree = ast.parse(path.read_text("utf-8"), filename=rel)
            for line, imported in imports_of(tree):
                rule = _rule_broken(package, imported)
                if rule is not None:
                    found.append(Violation(rel, line, imported, rule))
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parents[2]
    violations = check(root)
    for v in violations:
        print(v)
    if violations:
        print(f"{len(violations)} import(s) break the layer contract", file=sys.stderr)
        return 1
    print("import contract: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
