"""The deadman keeper: which collector keeps a never-heard device, and what it asks first.

The choice is a pure function (rendezvous hashing), tested on generated tables; the
keeper's question goes to a real InfluxDB (the one every collector of a province writes).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alert_rules.engine import Engine
from alert_rules.registry import Device
from alert_rules.rulefile import load_rules
from alert_rules.transitions import Transition
from collector.deadman_keeper import RETRY_MS, DeadmanKeeper, keeper_of, mine_of
from collector.handover import HandOver, InfluxHistory
from collector.influx_sink import InfluxV1Sink
from collector.metrics import Metrics
from orchestration.services import InfluxDB

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                max_size=12)
rings = st.dictionaries(names, st.integers(1, 100), min_size=1, max_size=8)
devices = st.lists(names, min_size=1, max_size=40, unique=True)


@settings(max_examples=100, deadline=None)
@given(rings, devices, st.randoms(use_true_random=False))
def test_every_collector_agrees_on_exactly_one_keeper(ring: dict[str, int],
                                                      devs: list[str], rnd: object) -> None:
    """Each collector asks itself "is it mine?" with the table in its own order (a TOML
    table's order is the file's): for every device exactly one says yes."""
    table = list(ring.items())
    for d in devs:
        answers = []
        for me in ring:
            own_order = table[:]
            rnd.shuffle(own_order)  # type: ignore[attr-defined]
            answers.append(keeper_of(d, own_order) == me)
        assert sum(answers) == 1, (d, ring)


@settings(max_examples=100, deadline=None)
@given(rings.filter(lambda r: len(r) >= 2), devices, st.data())
def test_removing_a_collector_moves_only_its_devices(ring: dict[str, int], devs: list[str],
                                                     data: st.DataObject) -> None:
    gone = data.draw(st.sampled_from(sorted(ring)))
    before = {d: keeper_of(d, list(ring.items())) for d in devs}
    after = {d: keeper_of(d, [(c, w) for c, w in ring.items() if c != gone]) for d in devs}
    moved = {d for d in devs if before[d] != after[d]}
    assert moved == {d for d in devs if before[d] == gone}


@settings(max_examples=100, deadline=None)
@given(rings, devices, names, st.integers(1, 100))
def test_adding_a_collector_moves_devices_only_to_it(ring: dict[str, int], devs: list[str],
                                                     new: str, weight: int) -> None:
    if new in ring:
        return
    before = {d: keeper_of(d, list(ring.items())) for d in devs}
    after = {d: keeper_of(d, [*ring.items(), (new, weight)]) for d in devs}
    assert all(after[d] in (before[d], new) for d in devs)


def test_shares_follow_weights_and_choices_are_stable() -> None:
    ring = [("c1", 10), ("c2", 30)]
    shares = {c: len(ds) for c, ds in mine_of((f"dev-{i:05d}" for i in range(20_000)),
                                              ring).items()}
    assert 0.23 < shares["c1"] / 20_000 < 0.27, shares  # 10 / (10 + 30)
    # every collector of a province, whatever its version and process, must agree: the
    # hash is blake2b of the names, never Python's per-process salted hash()
    ring4 = [("c1", 20), ("c2", 20), ("c3", 20), ("c4", 40)]
    assert [keeper_of(f"dev-{i:03d}", ring4) for i in range(8)] == [
        "c1", "c4", "c4", "c2", "c4", "c1", "c1", "c4"]
    with pytest.raises(ValueError, match="no collectors"):
        keeper_of("d", [])


RULES = """rules:
  - name: silent
    kind: deadman
    absent_for: 5s
"""


def province_engine(tmp_path: Path, ids: list[str]) -> Engine:
    (tmp_path / "rules.yaml").write_text(RULES)
    return Engine(load_rules(tmp_path / "rules.yaml"), registry=[Device(d) for d in ids])


RING = [("k1", 1), ("k2", 1)]


def kept_and_not(n_mine: int) -> tuple[list[str], list[str]]:
    split = mine_of((f"kp-{i:03d}" for i in range(40)), RING)
    return split["k1"][:n_mine], split["k2"][:2]


def test_keeper_asks_influxdb_before_raising(shared_influxdb: InfluxDB, influx_db_name: str,
                                             tmp_path: Path) -> None:
    """Of k1's never-heard devices: one silent everywhere gets its deadman; one another
    collector stored readings of is forgotten without an alert; one whose deadman is open
    on record (announced before a restart) is taken over, not repeated. k2's devices are
    not judged on k1. Later the silent one reports elsewhere: forgotten at the re-check."""
    (quiet, elsewhere, announced), theirs = kept_and_not(3)
    engine = province_engine(tmp_path, [quiet, elsewhere, announced, *theirs])
    history = InfluxHistory(shared_influxdb.url, influx_db_name)
    adopted: list[Transition] = []
    forgot: list[str] = []
    ho = HandOver(engine, history, 60_000, 30_000,
                  on_adopt=[lambda ts, _now: adopted.extend(ts)],
                  on_forget=[lambda ds, _now: forgot.extend(ds)])
    metrics = Metrics()
    keeper = DeadmanKeeper(engine, ho, history, "k1", RING, recheck_ms=60_000,
                           metrics=metrics)
    sink = InfluxV1Sink(shared_influxdb.url, influx_db_name)
    now = int(time.time() * 1000)
    sink.write([f"alert_events,rule=silent,device={announced},state=firing open=1i "
                f"{now - 100_000}"])
    engine.hold_heard_only()
    assert keeper.keep(now) == 3 and keeper.kept == {quiet, elsewhere, announced}
    try:
        assert keeper.screen(engine.tick(now), now) == []
        keeper.wait(10)  # the first re-check: nobody heard them yet
        # another collector stores `elsewhere`'s first reading
        sink.write([f"readings,device={elsewhere},sensor=pms5003 pm2_5=12.0,seq=1i {now}"])
        held = engine.tick(now + 6_000)
        assert sorted(t.subject for t in held if t.state == "firing") == sorted(
            [quiet, elsewhere, announced])  # theirs: never judged here
        assert keeper.screen(held, now + 6_000) == []  # all held until InfluxDB answers
        keeper.wait(10)
        out = keeper.screen([], now + 6_500)
        assert [(t.subject, t.state) for t in out] == [(quiet, "firing")]
        assert [(t.subject, t.at_ms) for t in adopted] == [(announced, now - 100_000)]
        assert forgot == [elsewhere] and elsewhere in ho.forgotten
        assert elsewhere in engine.away and keeper.kept == {quiet, announced}
        c = keeper.counters
        assert (c.raised, c.adopted, c.handed, c.check_failures) == (1, 1, 1, 0)
        assert metrics.deadman_kept._value.get() == 2
        assert metrics.deadman_keeper.labels("handed")._value.get() == 1
        assert engine.tick(now + 7_000) == []  # nothing repeated
        # the quiet device starts reporting to another collector: the re-check hands it
        sink.write([f"readings,device={quiet},sensor=pms5003 pm2_5=9.0,seq=1i {now + 7_000}"])
        assert keeper.screen([], now + 61_000) == []
        keeper.wait(10)
        assert keeper.screen([], now + 61_500) == []
        assert forgot == [elsewhere, quiet] and keeper.kept == {announced}
    finally:
        keeper.close()


def unreachable_keeper(engine: Engine) -> DeadmanKeeper:
    """A keeper of collector k1 whose InfluxDB never answers, its devices kept from 1 s."""
    history = InfluxHistory("http://127.0.0.1:9", "x", timeout_s=1)
    keeper = DeadmanKeeper(engine, HandOver(engine, history, 60_000, 30_000), history,
                           "k1", RING, recheck_ms=600_000)
    engine.hold_heard_only()
    keeper.keep(1_000)
    return keeper


def test_keeper_holds_the_alert_while_influxdb_cannot_answer(tmp_path: Path) -> None:
    """Nobody can say whether another collector heard it: late, not forged, not lost."""
    (quiet,), _theirs = kept_and_not(1)
    engine = province_engine(tmp_path, [quiet])
    keeper = unreachable_keeper(engine)
    try:
        keeper.screen(engine.tick(1_000), 1_000)
        keeper.wait(10)
        held = engine.tick(7_000)
        assert keeper.screen(held, 7_000) == []
        keeper.wait(10)
        assert keeper.screen([], 7_100) == [] and quiet in keeper.held
        assert keeper.counters.check_failures == 2  # the first re-check and this one
        keeper.screen([], 7_100 + RETRY_MS)  # asked again
        keeper.wait(10)
        assert keeper.screen([], 7_200 + RETRY_MS) == []
        assert keeper.counters.check_failures == 3 and quiet in keeper.held
    finally:
        keeper.close()


def test_kept_device_that_reports_here_is_this_collectors_own(tmp_path: Path) -> None:
    """Its held alert's end cancels it (never announced); silent again later, its
    deadman is announced by the usual path, without a question."""
    (dev,), _theirs = kept_and_not(1)
    engine = province_engine(tmp_path, [dev])
    keeper = unreachable_keeper(engine)
    try:
        keeper.screen(engine.tick(1_000), 1_000)
        assert keeper.screen(engine.tick(7_000), 7_000) == []  # held
        engine.ingest([dev], [8_000], {"pm2_5": [10.0]})
        assert keeper.screen(engine.tick(8_000), 8_000) == []  # its `resolved` too
        assert dev not in keeper.kept and dev not in keeper.held
        out = keeper.screen(engine.tick(14_000), 14_000)
        assert [(t.subject, t.state) for t in out] == [(dev, "firing")]
    finally:
        keeper.close()


def test_registry_reload_keeps_new_devices_of_this_collector(tmp_path: Path) -> None:
    (a, b), (x, _y) = kept_and_not(2)
    engine = province_engine(tmp_path, [a])
    keeper = unreachable_keeper(engine)
    try:
        engine.set_registry([Device(a), Device(b), Device(x)])
        keeper.screen([], 2_000)
        assert keeper.kept == {a, b} and b not in engine.away and x in engine.away
        engine.set_registry([Device(b), Device(x)])  # a retired
        keeper.screen([], 3_000)
        assert keeper.kept == {b}
    finally:
        keeper.close()


def test_table_change_moves_keepership_and_releases_the_old_keepers_alerts(
        tmp_path: Path) -> None:
    """Restarted with k3 added: k1 keeps only what k3 did not take, and at start-up tells
    its alert lifecycle the never-heard devices it no longer keeps (their alerts, open
    from before, are closed silently; k3 finds them on record and takes them over)."""
    ids = [f"kp-{i:03d}" for i in range(40)]
    before = set(mine_of(ids, RING)["k1"])
    ring3 = [*RING, ("k3", 1)]
    after = set(mine_of(ids, ring3)["k1"])
    assert after < before  # only to the newcomer
    engine = province_engine(tmp_path, ids)
    history = InfluxHistory("http://127.0.0.1:9", "x", timeout_s=1)
    released: list[str] = []
    keeper = DeadmanKeeper(engine, HandOver(engine, history, 60_000, 30_000), history,
                           "k1", ring3, recheck_ms=600_000,
                           on_release=[lambda ds, _now: released.extend(ds)])
    engine.hold_heard_only()
    try:
        keeper.keep(1_000)
        assert keeper.kept == after and set(released) == set(ids) - after
    finally:
        keeper.close()
