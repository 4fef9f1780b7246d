"""The gauges the pipeline refreshes: the per-device series are opt-in."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from collector.counters import Counters
from collector.dedup import SeqTracker
from collector.device_health import DeviceHealth
from collector.gauges import Gauges
from collector.metrics import Metrics
from collector.registry import RegistryWatcher
from collector.spool import Spool
from collector.writer import StorageWriter


class NoSink:
    def write(self, lines: list[str]) -> None:
        pass

    def close(self) -> None:
        pass


def series(metrics: Metrics) -> set[str]:
    return {s.labels["device"] for m in metrics.device_completeness.collect()
            for s in m.samples}


@pytest.mark.parametrize("per_device", [False, True])
def test_per_device_completeness_series_only_when_asked_for(tmp_path: Path,
                                                            per_device: bool) -> None:
    metrics, seqs, spool = Metrics(), SeqTracker(), Spool(tmp_path / "spool", 1 << 20)
    gauges = Gauges(metrics, Counters(), seqs=seqs, devices=DeviceHealth(),
                    storage=StorageWriter(NoSink(), spool), spool=spool,
                    registry=RegistryWatcher(None), spool_full=lambda: False,
                    connected=threading.Event(), per_device=per_device)
    for i in range(3000):
        seqs.fresh(f"d{i}", [1, 3])  # seq 2 missing: half complete
    seqs.commit()
    gauges.update()
    assert metrics.completeness._value.get() == pytest.approx(2 / 3)  # fleet-wide: always
    if per_device:
        assert len(series(metrics)) == 2000  # a few thousand a second, the rest next time
    else:
        assert series(metrics) == set() and seqs.take_changed() == []  # nor kept to set
