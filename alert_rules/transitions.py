"""What a tick reports: a rule's alert for one subject changed state."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

AlertState = Literal["pending", "firing", "resolved"]


@dataclass(frozen=True)
class Transition:
    rule: str
    subject: str  # device id (or township for regional alerts)
    state: AlertState
    value: float
    at_ms: int
    severity: str = "warning"
    labels: dict[str, str] = field(default_factory=dict)
    #: rendered text, not templates (`Rendered`: rendered when first read)
    annotations: Mapping[str, str] = field(default_factory=dict)
    #: > 0: decided on readings that arrived late (a backlog after an outage), judged in
    #: their own time: `at_ms` is the readings' time, `at_ms + late_ms` when it was judged
    late_ms: int = 0


class Rendered(Mapping[str, str]):
    """Annotations rendered when first read: a tick can turn hundreds of subjects pending
    (a spatial rule over a county) and most of those transitions are only counted, never
    shown. The template context is taken when the transition is made, so the text is the
    same whenever it is read."""

    __slots__ = ("_render", "_text")

    def __init__(self, render: Callable[[], dict[str, str]]) -> None:
        self._render: Callable[[], dict[str, str]] | None = render
        self._text: dict[str, str] = {}

    def _done(self) -> dict[str, str]:
        if self._render is not None:
            self._text, self._render = self._render(), None
        return self._text

    def __getitem__(self, key: str) -> str:
        return self._done()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._done())

    def __len__(self) -> int:
        return len(self._done())

    def __repr__(self) -> str:
        return repr(self._done())
