"""The `integration` marker follows from the fixtures a test uses, directly or not."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.integration import PROCESS_FIXTURES

ROOT = Path(__file__).resolve().parents[2]

CONFTEST = """
import pytest

from tests.support.integration import process_fixture

pytest_plugins = ["tests.support.integration"]


@process_fixture
def server() -> int:
    return 1


@process_fixture(scope="module")
def shared_server() -> int:
    return 2


@pytest.fixture
def client(server: int) -> int:
    return server


@pytest.fixture
def pure() -> int:
    return 0
"""

TESTS = """
def test_direct(server): pass
def test_module_scoped(shared_server): pass
def test_through_another_fixture(client): pass
def test_starts_its_own(processes): pass
def test_pure(pure): pass
def test_plain(): pass
"""


def _selected(pytester: pytest.Pytester, expr: str) -> list[str]:
    result = pytester.runpytest_subprocess("--collect-only", "-q", "-m", expr)
    return sorted(line.split("::")[1] for line in result.outlines if "::" in line)


def test_users_of_process_fixtures_and_only_they_are_integration(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    integration: starts a real process\n")
    pytester.makepyfile(test_sample=TESTS)
    assert _selected(pytester, "integration") == [
        "test_direct", "test_module_scoped", "test_starts_its_own",
        "test_through_another_fixture"]
    assert _selected(pytester, "not integration") == ["test_plain", "test_pure"]


def test_the_suites_service_fixtures_are_process_fixtures() -> None:
    assert {"mosquitto", "influxdb", "shared_influxdb", "secured_broker", "victoria_metrics",
            "processes"} <= PROCESS_FIXTURES
