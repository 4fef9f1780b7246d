"""The attempt count that ends a crash-restart loop, on the real SQLite quarantine file.

A collector that dies while a batch is in flight leaves the batch's message keys in the
quarantine; each restart counts one attempt per message. A suspect message is processed
in a batch of its own (its innocent neighbours complete and are cleared), and after
MAX_ATTEMPTS it is quarantined unread, acknowledged, and the collector goes on.
"""

from __future__ import annotations

import json
from pathlib import Path

from airgrid.wire import up_topic
from collector.batch_builder import BatchBuilder, Intake
from collector.counters import Counters
from collector.dead_letters import DeadLetters
from collector.delivery import Delivery
from collector.metrics import Metrics
from collector.quarantine import MAX_ATTEMPTS, Quarantine
from collector.registry import RegistryWatcher
from collector.tag_cache import TagCache
from tests.support.collector_process import reading, up_payload

NOW = 1_790_000_000_000


class Run:
    """One life of a collector: its builder over the quarantine file, until it 'crashes'."""

    def __init__(self, path: Path) -> None:
        self.quarantine = Quarantine(path)
        self.suspects = self.quarantine.recover()
        self.published: list[dict[str, object]] = []
        counters, metrics = Counters(), Metrics()
        dead = DeadLetters(lambda t, p, qos: self.published.append(json.loads(p)), "airgrid",
                           counters, metrics, self.quarantine)
        self.builder = BatchBuilder(Intake(max_future_ms=10**15), TagCache(RegistryWatcher(None)),
                                    dead, counters, metrics, self.quarantine)


def _d(device: str, seq: int) -> Delivery:
    return Delivery(up_topic(device), up_payload(device, [reading(seq, NOW + seq, 10.0)]),
                    mid=seq, qos=1, generation=0)


def test_a_message_that_keeps_killing_the_collector_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "quarantine.db"
    poison, innocent = _d("px-1", 1), _d("px-2", 1)
    first = Run(path)
    for d in (poison, innocent):
        first.builder.add(d)
    first.builder.seal()  # written... and the collector dies before the ack
    attempts = []
    for _ in range(MAX_ATTEMPTS - 1):
        run = Run(path)
        attempts.append(run.suspects)
        run.builder.add(poison)
        assert run.builder.isolated  # a suspect goes in a batch of its own
        run.builder.seal()  # and dies again
    run = Run(path)
    run.builder.add(innocent)  # its first crash was its neighbour's fault
    sealed = run.builder.seal()
    assert sealed is not None and sealed.batch.readings == 1
    run.quarantine.end(sealed.inflight_id, sealed.keys)  # stored and acked
    assert innocent.topic not in {e.topic for e in run.quarantine.entries()}
    run.builder.add(poison)
    assert run.builder.open.readings == 0  # not processed
    assert run.builder.counters.accepted == 1  # the innocent one only
    assert [p["reason"] for p in run.published] == ["poison"]
    (entry,) = run.quarantine.entries()
    assert (entry.kind, entry.device, entry.reason) == ("message", "px-1", "poison")
    assert attempts == [2, 2]
    assert run.builder.counters.rejected["poison"] == 1


def test_an_exception_while_building_quarantines_only_its_message(tmp_path: Path) -> None:
    run = Run(tmp_path / "quarantine.db")

    def broken(device: str, sensor: str, idx: int) -> str:
        raise RuntimeError("tag cache broke")

    run.builder.tags.reading = broken  # type: ignore[method-assign]
    run.builder.add(_d("px-3", 1))
    run.builder.add(Delivery("airgrid/v1/dev/px-4/status",
                             b'{"v":1,"device":"px-4","state":"online"}', 2, 1, 0))
    assert [p["reason"] for p in run.published] == ["processing_error"]
    assert run.builder.counters.accepted == 1  # the status after it went on
    assert len(run.builder.open.deliveries) == 2  # both acknowledged with the batch
