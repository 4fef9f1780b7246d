"""Each package's root exports exactly what its `__all__` says (httpx's exported-members
test is the model): adding, renaming or dropping a public name is a visible API change."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = ("airgrid", "edge_agent", "firmware_sim", "alert_rules", "collector", "grafana",
            "orchestration")
PRIVATE_EXPORTS = {"__version__"}


def _public_members(package: types.ModuleType) -> set[str]:
    """Names the root defines or imports, without its own submodules (an imported
    submodule becomes an attribute of its package, whoever imported it)."""
    return {
        name for name, value in vars(package).items()
        if (not name.startswith("_") or name in PRIVATE_EXPORTS)
        and not (isinstance(value, types.ModuleType)
                 and value.__name__.startswith(f"{package.__name__}."))
    }


@pytest.mark.parametrize("name", PACKAGES)
def test_all_public_members_are_exported(name: str) -> None:
    package = importlib.import_module(name)
    exported = package.__all__
    assert len(exported) == len(set(exported)), "a name is listed twice"
    assert set(exported) == _public_members(package)


@pytest.mark.parametrize("name", PACKAGES)
def test_exports_are_the_packages_own(name: str) -> None:
    """A root re-exports its own code, never a third-party or another package's name."""
    package = importlib.import_module(name)
    for member in package.__all__:
        value = getattr(package, member)
        if isinstance(value, type | types.FunctionType):  # constants have no home module
            module = value.__module__
            assert module.split(".")[0] == name, f"{name}.{member} comes from {module}"
