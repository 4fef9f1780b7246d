"""The `integration` marker follows from what a test starts, not from a hand-written mark.

A fixture that starts a real process (Mosquitto, InfluxDB, VictoriaMetrics, RabbitMQ, a
simulator, a collector) is declared with `@process_fixture` instead of `@pytest.fixture`;
every test that uses one, directly or through another fixture, is marked `integration`
at collection. A test that starts a process itself does so through the `processes`
fixture, which is one of them. So `pytest -m "not integration"` runs exactly the tests
that start no long-running process.

One-shot commands that exit by themselves (`collector.cli check-config`, `openssl`,
`mosquitto_passwd`, `systemd-analyze verify`) do not make a test an integration test.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar, overload

import pytest

from orchestration.services import terminate

#: Names of the fixtures that start a process; filled by `process_fixture`.
PROCESS_FIXTURES: set[str] = set()

F = TypeVar("F", bound=Callable[..., Any])


@overload
def process_fixture(func: F) -> F: ...


@overload
def process_fixture(*, scope: str = "function") -> Callable[[F], F]: ...


def process_fixture(func: F | None = None, *, scope: str = "function") -> F | Callable[[F], F]:
    """`pytest.fixture` for a fixture that starts a real process: its users are marked
    `integration`. Fixture names are global to the suite, so the name is what is recorded."""

    def register(f: F) -> F:
        PROCESS_FIXTURES.add(f.__name__)
        fixture: F = pytest.fixture(scope=scope)(f)  # type: ignore[call-overload]
        return fixture

    return register if func is None else register(func)


def starts_processes(item: pytest.Item) -> bool:
    """Whether the test uses a process-starting fixture (`fixturenames` is transitive)."""
    return not PROCESS_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if starts_processes(item):
            item.add_marker(pytest.mark.integration)


class _Service(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=_Service)


class Processes:
    """Processes a test starts by hand (a CLI beside a simulator, a broker on a config of
    the test's own); whatever still runs at teardown is stopped, last started first."""

    def __init__(self) -> None:
        self._stops: list[Callable[[], None]] = []

    def service(self, service: S) -> S:
        """Start a service (`orchestration.services.Mosquitto`, `InfluxDB`, ...)."""
        service.start()
        self._stops.append(service.stop)
        return service

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc: subprocess.Popen[Any] = subprocess.Popen(args, **kwargs)
        self._stops.append(lambda: terminate(proc))
        return proc

    def run(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """A process that starts services of its own and ends by itself (the demo)."""
        return subprocess.run(args, **kwargs)

    def stop_all(self) -> None:
        while self._stops:
            self._stops.pop()()


@process_fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.stop_all()
