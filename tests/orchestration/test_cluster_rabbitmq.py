"""A real 3-node RabbitMQ cluster: topology, AMQP ingest, hand-over, edge failover.

Node start-up is slow (~15-40 s for the cluster on a shared machine), so one cluster
serves the whole module.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pika
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from airgrid.config import ConfigError
from airgrid.wire import SCHEMA_VERSION, Reading, UpBatch, encode_up, up_topic
from alert_rules.engine import Engine
from alert_rules.rulefile import load_rules
from alert_rules.transitions import Transition
from collector.amqp_ingest import AmqpIngest, routing_key_from_topic, topic_from_routing_key
from collector.amqp_topology import (
    HASH_EXCHANGE,
    LEGACY_QUEUE_ARGS,
    Topology,
    declare_queues,
    ensure,
    queue_name,
    queue_names,
)
from collector.app import CollectorApp, from_config
from collector.config import from_dict
from collector.county_points import transition_line
from collector.handover import HandOver, InfluxHistory
from orchestration.cluster_run import ClusterRun, scaled_rules
from orchestration.rabbitmq import RABBITMQ_BIN, RabbitCluster
from orchestration.services import InfluxDB, Mosquitto
from orchestration.stack import DEMO_RULES
from tests.support.integration import process_fixture
from tests.support.wait import wait_for

needs_rabbitmq = pytest.mark.skipif(not (RABBITMQ_BIN / "rabbitmq-server").exists(),
                                    reason="rabbitmq-server not installed (make setup)")


@process_fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    cluster = RabbitCluster(tmp_path_factory.mktemp("rabbit"), size=3)
    cluster.start()
    yield cluster
    cluster.stop()


def test_topic_routing_key_swap() -> None:
    # rabbitmq_mqtt turns `/` into `.` only: a dotted device id must still come back whole.
    assert routing_key_from_topic("airgrid/v1/dev/a.b/up") == "airgrid.v1.dev.a.b.up"
    assert topic_from_routing_key("airgrid.v1.dev.a.b.up") == "airgrid/v1/dev/a.b/up"
    assert topic_from_routing_key("airgrid.v1.dev.d1.status") == "airgrid/v1/dev/d1/status"


def test_amqp_config_is_validated() -> None:
    cfg = from_dict({"source": "amqp", "amqp": {"collector": "c2",
                                                "collectors": {"c1": 1, "c2": 3}}})
    assert cfg.source == "amqp" and cfg.amqp.ring == (("c1", 1), ("c2", 3))
    with pytest.raises(ConfigError, match=r"amqp\.collectors"):
        from_dict({"amqp": {"collector": "c9", "collectors": {"c1": 1}}}, "x.toml")
    with pytest.raises(ConfigError, match=r"x\.toml: source"):
        from_dict({"source": "kafka"}, "x.toml")
    with pytest.raises(ConfigError, match=r"amqp\.urls"):
        from_dict({"amqp": {"urls": ["http://x"]}}, "x.toml")


def test_handover_rebuilds_window_from_influxdb(shared_influxdb: InfluxDB,
                                                influx_db_name: str) -> None:
    now = int(time.time() * 1000)
    lines = [f"readings,device=d1,sensor=pms5003 pm2_5=200.0,seq={i}i {now - 3000 + i * 500}"
             for i in range(1, 5)]
    from collector.influx_sink import InfluxV1Sink
    InfluxV1Sink(shared_influxdb.url, influx_db_name).write(lines)
    engine = Engine(load_rules(DEMO_RULES))
    ho = HandOver(engine, InfluxHistory(shared_influxdb.url, influx_db_name), 60_000, 5_000)
    # The live batch (seq 4, already stored) must not be ingested twice.
    ho.before_ingest(["d1"], [now - 3000 + 4 * 500], now)
    assert ho.counters.rebuilt_devices == 1 and ho.counters.rebuilt_readings == 3
    engine.fleet.advance(now)  # as a tick would: the rule's 3 s window ends now
    row = engine.fleet.index["d1"]
    assert engine.fleet.window_mean("pm2_5", now, 3_000)[row] == pytest.approx(200.0)
    # Silent here for longer than forget_after, and nowhere else heard: offline, not
    # moved. It stays (its deadman is judged here).
    assert ho.expire(now + 6_000) == [] and ho.counters.kept_silent == 1
    # Another collector stores its newer readings: it moved, and is dropped here.
    InfluxV1Sink(shared_influxdb.url, influx_db_name).write(
        [f"readings,device=d1,sensor=pms5003 pm2_5=20.0,seq=9i {now + 5000}"])
    assert ho.expire(now + 12_000) == ["d1"]
    assert np.isnan(engine.fleet.window_mean("pm2_5", now, 3_000)[row])  # nothing left
    assert engine.tick(now + 60_000) == [] and "d1" in engine.away


def test_handover_asks_where_silent_devices_went_off_the_ingest_thread(
        shared_influxdb: InfluxDB, influx_db_name: str) -> None:
    """The collector's hand-over asks InfluxDB on its own thread: the batch that makes
    devices due returns at once, a later one applies the answer. A device heard here
    again while the question was out stays."""
    from collector.influx_sink import InfluxV1Sink

    asked_on: list[str] = []
    # The answer waits until the test has seen the ingest thread go on: InfluxDB on
    # loopback can answer before `expire` returns, which then applies it at once.
    may_answer = threading.Event()

    class Recording(InfluxHistory):
        def heard_after(self, after_ms: Mapping[str, int]) -> dict[str, int]:
            asked_on.append(threading.current_thread().name)
            may_answer.wait(10)
            return super().heard_after(after_ms)

    now = int(time.time() * 1000)
    engine = Engine(load_rules(DEMO_RULES))
    ho = HandOver(engine, Recording(shared_influxdb.url, influx_db_name), 60_000, 5_000,
                  background=True)
    try:
        ho._next_expiry = 2**62  # expiry only when the test says
        ho.before_ingest(["m1", "m2"], [now, now], now)
        engine.ingest(["m1", "m2"], [now, now], {"pm2_5": [10.0, 10.0]})
        # both moved: another collector stores their newer readings
        InfluxV1Sink(shared_influxdb.url, influx_db_name).write(
            [f"readings,device={d},sensor=pms5003 pm2_5=20.0,seq=9i {now + 5000}"
             for d in ("m1", "m2")])
        assert ho.expire(now + 6_000) == []  # asked; the ingest thread goes on
        assert ho._question is not None and not ho._question.done()
        may_answer.set()
        ho._question.exception(10)  # answered (on the hand-over's thread)
        assert asked_on and threading.main_thread().name not in asked_on
        ho.before_ingest(["m2"], [now + 6_500], now + 6_500)  # m2 back here meanwhile
        assert ho.forgotten.keys() == {"m1"} and "m1" in engine.away
        assert "m2" in ho.last_seen and ho.counters.kept_silent == 1
    finally:
        may_answer.set()
        ho.close()


def test_handover_carries_firing_alert_state(shared_influxdb: InfluxDB,
                                             influx_db_name: str) -> None:
    """A device moved while its alert fires must not be announced again by its new owner,
    and its end is announced there."""
    from collector.influx_sink import InfluxV1Sink

    now = int(time.time() * 1000)
    # 10 s above 150 µg/m³: the demo rule (3 s mean, for 3 s) fired on the old owner,
    # which announced it (the alert_events point every collector writes)
    InfluxV1Sink(shared_influxdb.url, influx_db_name).write(
        [f"readings,device=d2,sensor=pms5003 pm2_5=220.0,seq={i}i {now - 10_000 + i * 1000}"
         for i in range(10)]
        + [f"alert_events,rule=pm25_heavy,device=d2,state=firing open=1i "
           f"{now - 6000}"])
    engine = Engine(load_rules(DEMO_RULES))
    adopted: list[str] = []
    ho = HandOver(engine, InfluxHistory(shared_influxdb.url, influx_db_name), 60_000, 30_000,
                  on_adopt=[lambda ts, _now: adopted.extend(t.subject for t in ts)])
    ho.before_ingest(["d2"], [now], now)
    assert adopted == ["d2"] and ho.counters.adopted_announced == 1
    engine.ingest(["d2"], [now], {"pm2_5": [220.0]})
    assert [t.state for t in engine.tick(now)] == []  # still firing, nothing new to say
    engine.ingest(["d2"], [now + 6000], {"pm2_5": [20.0]})
    assert engine.tick(now + 6000) == []  # clearing: keep_firing_for 2 s
    engine.ingest(["d2"], [now + 8500], {"pm2_5": [20.0]})
    assert [t.state for t in engine.tick(now + 8500)] == ["resolved"]
    # Without the hand-over the same readings fire a second time.
    fresh = Engine(load_rules(DEMO_RULES))
    for k in range(4):
        fresh.ingest(["d2"], [now + k * 1000], {"pm2_5": [220.0]})
        states = [t.state for t in fresh.tick(now + k * 1000)]
    assert states == ["firing"]


def test_handover_announces_a_replayed_alert_nobody_announced(
        shared_influxdb: InfluxDB, influx_db_name: str) -> None:
    """The old owner was still `pending` (its readings came late after a node loss) when
    it crashed or lost the device; the replay over the stored readings ends `firing`.
    Nothing on record says it was announced: the new owner announces it, once."""
    from collector.influx_sink import InfluxV1Sink

    now = int(time.time() * 1000)
    InfluxV1Sink(shared_influxdb.url, influx_db_name).write(
        [f"readings,device=d3,sensor=pms5003 pm2_5=220.0,seq={i}i {now - 10_000 + i * 1000}"
         for i in range(10)]
        # an earlier episode of d3, announced and resolved: not open
        + [f"alert_events,rule=pm25_heavy,device=d3,state=firing open=1i "
           f"{now - 600_000}",
           f"alert_events,rule=pm25_heavy,device=d3,state=resolved open=0i "
           f"{now - 500_000}"])
    engine = Engine(load_rules(DEMO_RULES))
    ho = HandOver(engine, InfluxHistory(shared_influxdb.url, influx_db_name), 60_000, 30_000)
    ho.before_ingest(["d3"], [now], now)
    assert ho.counters.replayed_unannounced == 1 and ho.counters.adopted_announced == 0
    engine.ingest(["d3"], [now], {"pm2_5": [220.0]})
    # the take-over announces it with the tick that follows (the hand-over's screen)
    assert [(t.subject, t.state) for t in ho.screen(engine.tick(now), now)] == [
        ("d3", "firing")]
    engine.ingest(["d3"], [now + 1000], {"pm2_5": [220.0]})
    assert ho.screen(engine.tick(now + 1000), now + 1000) == []  # once


def test_handover_adopts_an_announced_alert_the_replay_missed(
        shared_influxdb: InfluxDB, influx_db_name: str) -> None:
    """Announced and still open, though the stored readings no longer show it (most of
    the episode is older than the lookback): taken over as firing, so it neither fires
    twice nor stays open for ever: its end is announced here."""
    from collector.influx_sink import InfluxV1Sink

    now = int(time.time() * 1000)
    InfluxV1Sink(shared_influxdb.url, influx_db_name).write(
        [f"readings,device=d4,sensor=pms5003 pm2_5=220.0,seq=1i {now - 1000}",
         f"alert_events,rule=pm25_heavy,device=d4,state=firing open=1i "
         f"{now - 3_600_000}"])
    engine = Engine(load_rules(DEMO_RULES))
    ho = HandOver(engine, InfluxHistory(shared_influxdb.url, influx_db_name), 60_000, 30_000)
    ho.before_ingest(["d4"], [now], now)
    assert ho.counters.adopted_announced == 1
    for k in range(4):
        engine.ingest(["d4"], [now + k * 1000], {"pm2_5": [220.0]})
        assert engine.tick(now + k * 1000) == []  # announced already: not again
    states = []
    for k in range(4, 10):
        engine.ingest(["d4"], [now + k * 1000], {"pm2_5": [20.0]})
        states += [t.state for t in engine.tick(now + k * 1000)]
    assert states == ["resolved"]


class Owner:
    """A collector's judging as the pipeline runs it, for hand-over stories: readings are
    stored, then the hand-over hook, then the engine; each tick's transitions go through
    the hand-over's screen, and those let out are announced (written to `alert_events`,
    as every collector does)."""

    def __init__(self, influx: InfluxDB, db: str, forget_after_ms: int) -> None:
        from collector.influx_sink import InfluxV1Sink

        self.sink = InfluxV1Sink(influx.url, db)
        self.engine = Engine(load_rules(DEMO_RULES))
        self.ho = HandOver(self.engine, InfluxHistory(influx.url, db), 60_000,
                           forget_after_ms)
        self.ho._next_expiry = 2**62  # expiry only when the story says
        self.announced: list[tuple[str, str, int]] = []

    def reading(self, device: str, ts: int, pm: float) -> None:
        self.sink.write([f"readings,device={device},sensor=pms5003 pm2_5={pm},seq={ts}i {ts}"])
        self.ho.before_ingest([device], [ts], ts)
        self.engine.ingest([device], [ts], {"pm2_5": [pm]})

    def report(self, device: str, times_ms: list[int], pm: float = 220.0) -> None:
        """A reading at each time, each followed by the tick at that time."""
        for t in times_ms:
            self.reading(device, t, pm)
            self.tick(t)

    def tick(self, now: int) -> None:
        out = self.ho.screen(self.engine.tick(now), now)
        lines = [x for x in map(transition_line, out) if x is not None]
        if lines:
            self.sink.write(lines)
        self.announced += [(t.subject, t.state, t.at_ms) for t in out]

    def fired(self, device: str) -> int:
        return sum(d == device and s == "firing" for d, s, _ in self.announced)


def test_a_restarted_old_owner_holds_a_moved_devices_firing(shared_influxdb: InfluxDB,
                                                            influx_db_name: str) -> None:
    """The add's repeats on a crashed and restarted collector (10,000-device run 4): its
    engine comes back from the snapshot, but its hand-over had seen one reading of each
    device since, knew no reporting interval and held nothing, so a device `pending` there
    that moved to the added collector fired on both. The interval now counts from the
    engine's newest reading before the restart."""
    now = (int(time.time() * 1000) // 1000) * 1000 - 20_000
    crashed = Owner(shared_influxdb, influx_db_name, 5_000)
    crashed.report("rs1", [now, now + 1000])  # `pending` from +0 s; fires at +3 s
    assert crashed.announced == [("rs1", "pending", now)]
    old = Owner(shared_influxdb, influx_db_name, 5_000)  # the restart
    old.engine.restore(crashed.engine.snapshot())
    old.report("rs1", [now + 2000])  # the one reading here after the restart
    assert old.ho.counters.rebuilt_devices == 0  # its state came from the snapshot
    new = Owner(shared_influxdb, influx_db_name, 5_000)
    for k in (3, 4, 5):
        new.reading("rs1", now + k * 1000, 220.0)  # moved to the added collector
        old.tick(now + k * 1000)
        new.tick(now + k * 1000)
    assert new.fired("rs1") == 1
    assert old.fired("rs1") == 0, "the restarted old owner announced a moved device's alert"
    assert old.ho.held and old.ho.expire(now + 7_100) == ["rs1"]  # found moved: dropped
    old.tick(now + 8_000)
    assert old.fired("rs1") == 0 and not old.ho.held


def test_a_device_moved_while_pending_fires_once(shared_influxdb: InfluxDB,
                                                  influx_db_name: str) -> None:
    """The 10,000-device run's repeats, step by step: a device `pending` on its old owner
    moves; its next reading goes to the new owner, which rebuilds it and fires when the
    rule's `for` runs out; the old owner, which still holds it, would fire it by time
    alone at the same moment, before either firing is on record. The old owner holds a
    time-only firing of a device that missed its reporting interval: dropped when the
    device turns out to have moved, let out when it reports here again or turns out to be
    silent everywhere."""
    now = (int(time.time() * 1000) // 1000) * 1000
    old, new = (Owner(shared_influxdb, influx_db_name, 5_000) for _ in range(2))
    # a reading a second, above 150 µg/m³: `pending` (for 3 s)
    old.report("mv1", [now + k * 1000 for k in range(2)])
    assert old.announced == [("mv1", "pending", now)]
    new.reading("mv1", now + 2000, 220.0)  # moved: rebuilt from the stored readings
    assert new.ho.counters.rebuilt_devices == 1
    for k in range(2, 5):
        old.tick(now + k * 1000)  # no reading here since +1 s
        if k > 2:
            new.reading("mv1", now + k * 1000, 220.0)
        new.tick(now + k * 1000)
    assert new.fired("mv1") == 1
    assert old.fired("mv1") == 0, "the old owner announced a moved device's alert too"
    assert old.ho.expire(now + 6_100) == ["mv1"]  # heard elsewhere: moved, forgotten
    old.tick(now + 7_000)
    assert old.fired("mv1") == 0 and not old.ho.held

    # The `for` runs out just before the moved device's next reading is due (the
    # 10,000-device run's 30 repeats): held too, and dropped once it is found moved.
    due, due_new = (Owner(shared_influxdb, influx_db_name, 5_000) for _ in range(2))
    # `pending` from +0 s; the `for` runs out at +3 s
    due.report("du1", [now + k * 1000 for k in range(3)])
    due.tick(now + 3_000)  # 1.0 s after its last reading here, an interval of 1 s
    assert due.fired("du1") == 0 and "du1" in due.ho.held
    # its next readings went to the new owner
    due_new.report("du1", [now + k * 1000 for k in (3, 4)])
    assert due_new.fired("du1") == 1

    # ...and comes back before it was forgotten (the owner it went to was removed):
    # taken over again from the record, which says the new owner announced it. Asking
    # where a silent device went (the forget question) moves its `last_seen` to the
    # asking time; the hole in its readings here is what counts.
    due.ho.last_seen["du1"] = now + 4_900
    due.report("du1", [now + 5_000])  # 3 s after its last reading here
    assert due.fired("du1") == 0 and not due.ho.held
    assert due.ho.counters.adopted_announced == 1 and due.ho.counters.held_dropped == 1

    # Late, not moved: held while overdue, let out with the reading that comes.
    late = Owner(shared_influxdb, influx_db_name, 5_000)
    late.report("lt1", [now + k * 1000 for k in range(2)])
    late.tick(now + 3000)
    assert late.fired("lt1") == 0 and "lt1" in late.ho.held
    late.reading("lt1", now + 2000, 220.0)  # the reading of +2 s, 1.5 s late
    late.tick(now + 3500)
    assert late.fired("lt1") == 1

    # Silent everywhere (offline): let out once the store says nobody heard it.
    off = Owner(shared_influxdb, influx_db_name, 5_000)
    off.report("of1", [now + k * 1000 for k in range(2)])
    off.tick(now + 3000)
    assert off.fired("of1") == 0 and "of1" in off.ho.held
    assert off.ho.expire(now + 6_100) == []
    off.tick(now + 6_200)
    assert off.fired("of1") == 1


def test_an_alert_the_removed_collector_left_pending_is_announced_on_the_move_back(
        shared_influxdb: InfluxDB, influx_db_name: str) -> None:
    """The 10,000-device run's one never-alerted device, step by step: `pending` on its
    old owner, it moves to an added collector, which is removed while still `pending`
    (its own replay started the `for` later), so nobody announced it. Back on the old
    owner, the take-over's replay of every stored reading ends `firing` and nothing is on
    record. The episode ends with the reading that brings it back: if the take-over only
    made the alert due, the next tick (condition over) would announce nothing. It is
    announced by the take-over, once, at the time the replay fired it, and resolves."""
    now = (int(time.time() * 1000) // 1000) * 1000 - 20_000  # readings all in the past
    old, added = (Owner(shared_influxdb, influx_db_name, 2_000) for _ in range(2))
    old.report("bk1", [now, now + 1000])  # `pending` (for 3 s) on the old owner
    assert old.announced == [("bk1", "pending", now)]
    added.report("bk1", [now + 2000, now + 3000])  # moved: rebuilt, still `pending` there
    assert added.fired("bk1") == 0 and added.ho.counters.rebuilt_devices == 1
    # the added collector is removed; the old owner forgot the device (heard elsewhere)
    assert old.ho.expire(now + 3_100) == ["bk1"]
    old.report("bk1", [now + 6000], pm=5.0)  # back (its +4 s, +5 s lost), the episode over
    assert old.ho.counters.replayed_unannounced == 1
    assert old.fired("bk1") == 1, f"never announced: {old.announced}"
    fired = [at for d, s, at in old.announced if d == "bk1" and s == "firing"]
    assert fired == [now + 4000]  # when the replay of the stored readings fired it
    old.report("bk1", [now + k * 1000 for k in range(7, 11)], pm=5.0)
    assert [s for d, s, _ in old.announced if d == "bk1"] == ["pending", "firing", "resolved"]
    assert old.fired("bk1") == 1


def test_handover_counts_unreachable_history() -> None:
    engine = Engine(load_rules(DEMO_RULES))
    ho = HandOver(engine, InfluxHistory("http://127.0.0.1:9", "x", timeout_s=1), 60_000, 5_000)
    ho.before_ingest(["d1"], [1], 1)
    assert ho.counters.rebuild_failures == 1


def test_handover_leaves_restored_devices_alone() -> None:
    """After a restart the engine's saved state already holds its devices: reading their
    history again would count it twice. Forgotten devices are rebuilt."""
    engine = Engine(load_rules(DEMO_RULES))
    engine.ingest(["d1", "d2"], [1000, 1000], {"pm2_5": [10.0, 20.0]})
    restarted = Engine(load_rules(DEMO_RULES))
    restarted.restore(engine.snapshot())
    ho = HandOver(restarted, InfluxHistory("http://127.0.0.1:9", "x", timeout_s=1),
                  60_000, 5_000)
    ho.before_ingest(["d1"], [2000], 2000)
    assert ho.counters.rebuild_failures == 0  # no history query was made
    restarted.forget(["d2"])
    ho.before_ingest(["d2"], [3000], 3000)
    assert ho.counters.rebuild_failures == 1  # d2 was forgotten: it is rebuilt


@needs_rabbitmq
@pytest.mark.parametrize("queues", [1, 3])
def test_consistent_hash_never_splits_a_device_and_moves_few(rabbit: RabbitCluster,
                                                             queues: int) -> None:
    """Each device reaches one queue; with several queues per collector (each bound with
    the collector's weight) the shares and the moves on an add are those of one queue."""
    conn = pika.BlockingConnection(pika.URLParameters(rabbit.amqp_urls[1]))
    ch = conn.channel()
    x = f"hx{queues}"
    topo = Topology({f"{x}h1": 20, f"{x}h2": 20, f"{x}h3": 20}, prefix=x,
                    exchange=f"{x}.devices", queues_per_collector=queues)
    # as a collector starts: its own queues declared, the others' bound if they exist,
    # declared if not (here none exist yet: the probe channel's 404 must not hurt `ch`)
    ensure(ch, topo, own=f"{x}h2")
    ensure(ch, topo)  # idempotent
    devices = [f"d{i}" for i in range(300)]

    def route() -> dict[str, set[str]]:
        for d in devices:
            ch.basic_publish("amq.topic", f"{x}.v1.dev.{d}.up", b"x")
            ch.basic_publish("amq.topic", f"{x}.v1.dev.{d}.up", b"x")
        owners: dict[str, set[str]] = {d: set() for d in devices}
        time.sleep(1.0)
        for c in topo.collectors:
            for q in queue_names(c, queues):
                # basic.get is refused on single-active-consumer quorum queues: consume.
                for m, _p, _b in ch.consume(q, auto_ack=True, inactivity_timeout=1.0):
                    if m is None:
                        break
                    assert m.routing_key is not None
                    owners[m.routing_key.split(".")[3]].add(q)
                ch.cancel()
        return owners

    def collector_of(queue: str) -> str:
        return queue.removeprefix("airgrid.collector.").split("/")[0]

    before = route()
    assert all(len(o) == 1 for o in before.values()), "a device reached two queues"
    share = {c: sum(collector_of(q) == c for o in before.values() for q in o)
             for c in topo.collectors}
    assert all(40 <= n <= 160 for n in share.values()), share
    used = {q for o in before.values() for q in o}
    assert len(used) == 3 * queues, used  # every queue of every collector takes devices
    topo4 = Topology({**topo.collectors, f"{x}h4": 20}, prefix=x, exchange=f"{x}.devices",
                     queues_per_collector=queues)
    ensure(ch, topo4, own=f"{x}h4")  # the newcomer binds the others' existing queues
    topo = topo4
    after = route()
    moved = [d for d in devices if after[d] != before[d]]
    assert all(collector_of(next(iter(after[d]))) == f"{x}h4" for d in moved), \
        "a device moved between old collectors"
    assert 20 <= len(moved) <= 150, len(moved)
    conn.close()


@needs_rabbitmq
def test_a_collectors_queue_leaders_are_spread_and_old_queues_kept(
        rabbit: RabbitCluster) -> None:
    """One collector declares all its queues from one node, yet their leaders go to
    different nodes (`balanced`), so a node loss stops only some of them. A queue declared
    before the locator was set (other arguments: a declare would be refused) is kept."""
    import json

    conn = pika.BlockingConnection(pika.URLParameters(rabbit.amqp_urls[2]))
    ch = conn.channel()
    old = queue_name("ll1", 3)
    ch.queue_declare(old, durable=True, arguments=LEGACY_QUEUE_ARGS)
    names = declare_queues(ch, "ll1", 4)
    ch.queue_declare(names[0], passive=True)  # `ch` is unharmed by the refused declare
    rows = json.loads(rabbit.nodes[0].ctl("list_queues", "name", "leader", "arguments",
                                          "--formatter", "json"))
    mine = {r["name"]: r for r in rows if r["name"] in names}
    assert mine.keys() == set(names)
    # `balanced` goes to the node leading fewest quorum queues (the module's other tests
    # leave some); `client-local` would have put all three on the declaring node
    assert len({mine[n]["leader"] for n in names[:3]}) >= 2, mine
    assert "x-queue-leader-locator" not in json.dumps(mine[old]["arguments"])
    for n in names:
        ch.queue_delete(n)
    conn.close()


def fresh_ring(rabbit: RabbitCluster) -> None:
    """Drop the device exchange and with it every binding an earlier test left: each
    test's collectors declare it again with only themselves on the ring."""
    conn = pika.BlockingConnection(pika.URLParameters(rabbit.amqp_urls[0]))
    conn.channel().exchange_delete(HASH_EXCHANGE)
    conn.close()


@needs_rabbitmq
def test_province_run_survives_node_kill_collector_crash_add_and_remove(
    rabbit: RabbitCluster, shared_influxdb: InfluxDB, tmp_path: Path,
) -> None:
    """The bench's scenario, small: 300 simulated devices and 4 real agents, 2 collectors;
    a node SIGKILLed, a collector crashed, a third added, then removed again. Nothing
    lost or doubled, no device judged in two places, every episode device alerted
    exactly once. (Several queues per collector: the consistent-hash test and
    bench/cluster.py.)"""
    interval, duration = 3.0, 45.0
    fresh_ring(rabbit)
    # forget_after_s as short as the bench's (two intervals): under load the node kill
    # delays deliveries past it, so collectors forget and rebuild their own devices too;
    # the crash at 45 % falls while the episode devices are pending: its restart rebuilds
    # them from history, and the replay finds alerts firing that nobody announced
    run = ClusterRun(tmp_path, rabbit, shared_influxdb, "cluster_test", devices_n=4,
                     collectors_n=2, episode_every=4, forget_after_s=2 * interval,
                     weight=100, rebuild_lookback_s=60.0,
                     rules_file=scaled_rules(tmp_path, interval))
    run.start()
    try:
        run.start_swarm(300, interval, duration)
        run.wait_swarm_ready(120)
        episode = (0.2 * duration, 0.8 * duration)
        steps = {0.3: "kill", 0.45: "crash", 0.6: "add", 0.85: "remove"}
        at: dict[str, float] = {}
        t0 = time.monotonic()
        next_capture = 0.0
        while (t := time.monotonic() - t0) < duration:
            if t >= next_capture:
                run.capture_all(t, episode)
                next_capture += interval
            for frac, what in steps.items():
                if t >= frac * duration and what not in at:
                    at[what] = time.time()
                    if what == "kill":
                        rabbit.nodes[2].kill()
                    elif what == "crash":
                        run.collectors["c1"].crash()
                        run.collectors["c1"].start()
                    elif what == "add":
                        run.add_collector()
                        at[what] = time.time()  # its queues are bound once it consumes
                    else:
                        assert run.remove_collector("c3")
            time.sleep(0.2)
        sim = run.finish_swarm()
        assert sim["exit_code"] == 0 and sim["drained"], sim
        assert run.drain(60), "readings stuck in the agents' outboxes"
        time.sleep(3.0)
        stored, lost, wrong = run.stored()
        captured = run.captured_by_device()
        assert len(captured) == 304
        assert lost == 0 and wrong == 0 and stored == sum(captured.values()), (stored, lost)
        assert len(run.judged) == 304  # every device's readings were judged
        assert run.split_devices() == []
        assert run.alerts_duplicated() == 0
        # each episode announced once, by whichever collector held its device then
        fired = run.episode_firing_counts()
        assert len(fired) == 76
        wrong = {d: n for d, n in fired.items() if n != 1}
        assert not wrong, {d: (n, run.story(d)) for d, n in list(wrong.items())[:3]}
        # attributed by wall clock: last reading delivered before the add vs first read after
        moved = run.moved_devices(at["add"], interval)
        assert moved and all(a == "c3" for _b, a in moved.values()), \
            "a device moved between old collectors"
        share = run.moved_share(at["add"], interval)
        assert share is not None and 0.2 <= share <= 0.47, share
        assert run.firing_events() > 0
        assert sim["failovers"] > 0  # the killed node's devices moved to the others
    finally:
        run.stop()
        rabbit.nodes[2].start()


def reconnected(ingest: AmqpIngest, generation: int) -> bool:
    ingest.take(1, 0.1)  # finds the connection closed, then connects again
    return ingest.generation > generation


@needs_rabbitmq
def test_a_reconnect_consumes_at_once_and_declares_a_queue_that_is_gone(
        rabbit: RabbitCluster) -> None:
    """After a lost connection the collector consumes its queues without declaring them
    first (a declare waits for the queue's leader, busy electing after a node loss); a
    queue that is gone is declared again, and what is routed to it is consumed."""
    x = "rc"
    topo = Topology({f"{x}c1": 1}, prefix=x, exchange=f"{x}.devices", queues_per_collector=2)
    ingest = AmqpIngest(rabbit.amqp_urls, f"{x}c1", prefetch=10, topology=topo)
    ingest.start()
    assert ingest.connected.is_set()
    admin = pika.BlockingConnection(pika.URLParameters(rabbit.amqp_urls[0]))
    ch = admin.channel()

    def publish_and_take(device: str) -> list[str]:
        ch.basic_publish("amq.topic", f"{x}.v1.dev.{device}.up", device.encode())
        got: list[str] = []
        wait_for(lambda: bool(got.extend(d.payload.decode() for d in ingest.take(10, 0.2))
                              or got), 20, step=0)
        return got

    assert publish_and_take("before") == ["before"]
    for kept_queue in (True, False):
        generation = ingest.generation
        lost = ingest._conn
        assert lost is not None
        ingest._lost(pika.exceptions.StreamLostError("node lost"))  # as `take` on a node loss
        lost.close()
        if not kept_queue:  # gone while the collector was away: declared again
            ch.queue_delete(queue_names(f"{x}c1", 2)[0])
            ch.queue_delete(queue_names(f"{x}c1", 2)[1])  # and its bindings with it
        assert wait_for(functools.partial(reconnected, ingest, generation), 30, step=0)
        assert publish_and_take(f"after-{kept_queue}") == [f"after-{kept_queue}"]
    ingest.stop()
    admin.close()


def test_edge_broker_hosts_config() -> None:
    from edge_agent.config import from_dict as edge_from_dict

    cfg = edge_from_dict({"device": "d1", "broker": {
        "hosts": ["10.0.0.1:1883", "rabbit-2.local:1884"], "protocol": "3.1.1"}})
    assert cfg.broker.endpoints() == [("10.0.0.1", 1883), ("rabbit-2.local", 1884)]
    with pytest.raises(ConfigError, match=r"edge\.toml: broker: expected a table"):
        edge_from_dict({"device": "d1"}, "edge.toml")  # no silent 127.0.0.1
    with pytest.raises(ConfigError, match=r"edge\.toml: broker\.hosts"):
        edge_from_dict({"device": "d1", "broker": {"hosts": ["nohost"]}}, "edge.toml")
    with pytest.raises(ConfigError, match=r"broker\.protocol"):
        edge_from_dict({"device": "d1", "broker": {"protocol": "4"}}, "edge.toml")


@needs_rabbitmq
def test_collector_cli_runs_on_amqp(rabbit: RabbitCluster, shared_influxdb: InfluxDB,
                                    influx_db_name: str, tmp_path: Path) -> None:
    """`airgrid-collector run` with source = "amqp": MQTT in through one node, stored."""
    import subprocess
    import sys

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from airgrid.wire import SCHEMA_VERSION, Reading, UpBatch, encode_up, up_topic

    fresh_ring(rabbit)
    cfg = tmp_path / "collector.toml"
    urls = ", ".join(f'"{u}"' for u in rabbit.amqp_urls)
    cfg.write_text(f'source = "amqp"\n[amqp]\nurls = [{urls}]\ncollector = "cli1"\n'
                   f'collectors = {{ cli1 = 20 }}\n[influx]\nurl = "{shared_influxdb.url}"\n'
                   f'database = "{influx_db_name}"\n[batch]\nmax_wait_ms = 50\n')
    cfg.chmod(0o600)  # the AMQP URLs carry credentials
    proc = subprocess.Popen([sys.executable, "-m", "collector.cli", "run", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cli-test-dev",
                             protocol=mqtt.MQTTv311)
        client.connect("127.0.0.1", rabbit.nodes[1].mqtt_port)
        client.loop_start()
        now = int(time.time() * 1000)
        batch = UpBatch(v=SCHEMA_VERSION, device="cli.dev1", boot="b",
                        readings=(Reading(seq=1, ts=now, sensor="pms5003", pm2_5=12.0),))
        count = 0

        def stored() -> bool:
            nonlocal count
            # Until the collector has declared its queue, RabbitMQ drops unroutable messages.
            client.publish(up_topic("cli.dev1"), encode_up(batch), qos=1).wait_for_publish(5)
            time.sleep(1.0)
            res = shared_influxdb.query('SELECT count("seq") FROM "readings"', db=influx_db_name)
            series = res["results"][0].get("series", [])  # type: ignore[index]
            count = series[0]["values"][0][1] if series else 0
            return count != 0

        wait_for(stored, 30, step=0)
        client.loop_stop()
        client.disconnect()
        assert count == 1  # the same point rewritten, however often it was sent
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert "source amqp" in out


def test_amqp_collector_alerting_opens_its_own_mqtt_connection(mosquitto: Mosquitto,
                                                               tmp_path: Path) -> None:
    """No MQTT session to share on AMQP: the alert bus and the acknowledgement listener
    connect to [broker] themselves; with MQTT the ingest's client is shared."""
    from collector.alerting.channels.mqtt_bus import MqttNotifier
    from collector.app import build_alerting
    from collector.mqtt_ingest import MqttIngest
    from collector.registry import RegistryWatcher

    cfg = from_dict({"source": "amqp", "broker": {"port": mosquitto.port, "client_id": "c7"},
                     "alerting": {"state_db": str(tmp_path / "a.sqlite"),
                                  "ack": {"mqtt": True, "principals": [
                                      {"name": "app", "app_id": "app-1",
                                       "token": "t" * 16}]}}},
                    tmp_path / "collector.toml")
    alerting = build_alerting(cfg, None, RegistryWatcher(None, 2.0))
    assert alerting is not None and alerting.mqtt_ack is not None
    bus = alerting.notifiers["bus"]
    assert isinstance(bus, MqttNotifier) and bus.owned and alerting.mqtt_ack.owned
    alerting.start()
    try:
        assert bus.connected.wait(10)  # its own session on the broker
    finally:
        alerting.stop()
    shared = MqttIngest("127.0.0.1", mosquitto.port, "c8", "airgrid", 10)
    cfg2 = from_dict({"broker": {"port": mosquitto.port, "client_id": "c8"},
                      "alerting": {"state_db": str(tmp_path / "b.sqlite")}},
                     tmp_path / "collector.toml")
    alerting2 = build_alerting(cfg2, shared, RegistryWatcher(None, 2.0))
    assert alerting2 is not None
    bus2 = alerting2.notifiers["bus"]
    assert isinstance(bus2, MqttNotifier) and not bus2.owned and bus2.client is shared.client


MOVE_RULES = """rules:
  - name: pm25_heavy
    kind: threshold
    field: pm2_5
    aggregate: mean
    window: 2s
    above: 150
    for: 0s
  - name: silent
    kind: deadman
    absent_for: 5s
"""


def province_collector(rabbit: RabbitCluster, influx: InfluxDB, db: str, mosquitto: Mosquitto,
                       tmp_path: Path, name: str, ring: dict[str, int], registry: bool,
                       judged: set[str] | None = None, forget_after_s: float = 2.0,
                       ) -> tuple[CollectorApp, threading.Thread]:
    """A province collector on its own thread, with the alert lifecycle (its event bus on
    `mosquitto`), rules from tmp_path/rules.yaml and, if `registry`, tmp_path/registry.yaml;
    `judged` collects the devices it judges."""
    state = tmp_path / name
    cfg = from_dict({
        "source": "amqp",
        "amqp": {"urls": rabbit.amqp_urls, "collector": name, "collectors": ring,
                 "prefetch": 200, "rebuild_lookback_s": 30.0,
                 "forget_after_s": forget_after_s},
        "broker": {"port": mosquitto.port, "client_id": f"mv-{name}"},
        "influx": {"url": influx.url, "database": db},
        "batch": {"max_messages": 200, "max_wait_ms": 50},
        "rules": {"files": [str(tmp_path / "rules.yaml")], "tick_interval_s": 0.2},
        **({"registry": {"file": str(tmp_path / "registry.yaml")}} if registry else {}),
        "spool": {"dir": str(state / "spool")}, "state": {"file": str(state / "s.db")},
        "alerting": {"state_db": str(state / "alerting.sqlite")},
    }, tmp_path / f"{name}.toml")
    hooks = [] if judged is None else [lambda d, t, n: judged.update(d)]
    a = CollectorApp(from_config(cfg), before_judge=hooks)
    a.start()
    th = threading.Thread(target=a.run, daemon=True)
    th.start()
    assert a.ingest.connected.wait(30)  # type: ignore[attr-defined]
    return a, th


class Publisher:
    """Publishes one reading of every device (but the `quiet` ones) through node 1's MQTT."""

    def __init__(self, rabbit: RabbitCluster, devices: list[str], quiet: set[str]) -> None:
        self.devices, self.quiet, self.seq = devices, quiet, 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="mv-pub",
                                  protocol=mqtt.MQTTv311)
        self.client.connect("127.0.0.1", rabbit.nodes[0].mqtt_port)
        self.client.loop_start()

    def publish_all(self, pm: float = 220.0) -> None:
        self.seq += 1
        now = int(time.time() * 1000)
        for d in self.devices:
            if d in self.quiet:
                continue
            r = Reading(seq=self.seq, ts=now, sensor="pms5003", pm2_5=pm)
            self.client.publish(up_topic(d), encode_up(
                UpBatch(v=SCHEMA_VERSION, device=d, boot="b", readings=(r,))), qos=1)

    def until(self, pred: Callable[[], bool], timeout: float, pm: float = 220.0,
              pause: float = 0.5) -> bool:
        """A round of readings every `pause` s until `pred` holds (checked after each)."""
        def step() -> bool:
            self.publish_all(pm)
            time.sleep(pause)
            return pred()
        return wait_for(step, timeout, step=0)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def firing(a: CollectorApp, rule: str) -> set[str]:
    """Subjects of `rule` with an alert firing in the collector's lifecycle."""
    assert a.alerting is not None
    lc = a.alerting.manager.lifecycle
    return {x.subject for x in list(lc.by_id.values()) if x.rule == rule and x.state == "firing"}


def write_registry(path: Path, devices: list[str]) -> None:
    path.write_text("devices:\n" + "".join(
        f"  - {{id: {d}, site: 北山, township: 城关镇, grid: g1, lat: 30.1, lon: 110.1, "
        f"sensor: pms5003}}\n" for d in devices), encoding="utf-8")


@needs_rabbitmq
def test_old_owner_closes_moved_alerts_and_remembers_moves_across_a_restart(
    rabbit: RabbitCluster, shared_influxdb: InfluxDB, influx_db_name: str,
    mosquitto: Mosquitto, tmp_path: Path,
) -> None:
    """Devices fire on o1; o2 joins and takes some. o1 forgets them: their open alerts
    are closed on o1 without a `resolved` (the episode goes on at o2), and after o1
    restarts it still knows they moved: no deadman for them, while one of its own devices
    that falls silent does get one (the rule is live)."""
    devices = [f"mv-{i:02d}" for i in range(30)]
    fresh_ring(rabbit)
    (tmp_path / "rules.yaml").write_text(MOVE_RULES)
    write_registry(tmp_path / "registry.yaml", devices)

    def app(name: str, ring: dict[str, int], registry: bool,
            judged: set[str] | None = None) -> tuple[CollectorApp, threading.Thread]:
        return province_collector(rabbit, shared_influxdb, influx_db_name, mosquitto,
                                  tmp_path, name, ring, registry, judged)

    quiet: set[str] = set()
    pub = Publisher(rabbit, devices, quiet)

    o1, t1 = app("o1", {"o1": 20}, registry=True)
    o2: CollectorApp | None = None
    try:
        assert pub.until(lambda: firing(o1, "pm25_heavy") >= set(devices), 30)
        taken: set[str] = set()
        o2, _t2 = app("o2", {"o1": 20, "o2": 20}, registry=False, judged=taken)
        assert o1.handover is not None and o1.alerting is not None
        forgotten = o1.handover.forgotten
        assert pub.until(lambda: bool(taken) and taken <= forgotten.keys(), 40)
        moved = set(taken)
        assert 0 < len(moved) < len(devices)
        # (1) the old owner closed the moved devices' alerts, silently
        assert firing(o1, "pm25_heavy") == set(devices) - moved
        assert o1.alerting.manager.counters["handed_over"] == len(moved)
        assert o1.alerting.manager.counters["event_resolved"] == 0
        # o2 took the alerts over as announced (o1's alert_events): no second `firing`,
        # each opened in its lifecycle without an event
        assert o2.alerting is not None and o2.alerting.manager.counters["event_firing"] == 0
        assert o2.alerting.manager.counters["adopted"] == len(moved)
        assert firing(o2, "pm25_heavy") == moved
        # (2) o1 restarts: the moves are remembered
        o1.stop()
        t1.join(30)
        assert (tmp_path / "o1" / "forgotten.json").exists()
        o1, t1 = app("o1", {"o1": 20, "o2": 20}, registry=True)
        quiet.add(sorted(set(devices) - moved)[0])  # one of o1's own falls silent
        assert pub.until(lambda: quiet <= firing(o1, "silent"), 30)
        # the restart counts as seen for the rows it restored: past 5 s from it too
        pub.until(lambda: False, 6)
        assert not (firing(o1, "silent") & moved), firing(o1, "silent") & moved
        # (3) the episode ends: the new owner announces the end of the alerts it adopted
        quiet.clear()
        o2_lc = o2.alerting.manager

        assert pub.until(lambda: o2_lc.counters["event_resolved"] >= len(moved), 30, pm=20.0)
        assert not firing(o2, "pm25_heavy")
        assert o2_lc.counters["event_resolved"] == len(moved)
        assert o2_lc.counters["event_firing"] == 0
    finally:
        pub.close()
        for a in (o1, o2):
            if a is not None:
                a.stop()


PENDING_RULES = """rules:
  - name: pm25_heavy
    kind: threshold
    field: pm2_5
    aggregate: mean
    window: 10s
    above: 150
    for: 4s
"""


@needs_rabbitmq
def test_devices_moved_while_pending_are_alerted_once(
    rabbit: RabbitCluster, shared_influxdb: InfluxDB, influx_db_name: str,
    mosquitto: Mosquitto, tmp_path: Path,
) -> None:
    """The repeated alerts of the 10,000-device run, with real collectors: devices turn
    `pending` on p1, then p2's queue joins the ring and takes some of them. Their `for`
    runs out on p1 with no reading there (its window still holds the readings it saw) and
    on p2, which rebuilt them before anything was on record. Each alert goes out once:
    p1 holds the moved devices' firing and drops it when it forgets them."""
    devices = [f"pd-{i:02d}" for i in range(30)]
    fresh_ring(rabbit)
    (tmp_path / "rules.yaml").write_text(PENDING_RULES)
    judged1: set[str] = set()
    moved: set[str] = set()
    apps: list[CollectorApp] = []
    pub = Publisher(rabbit, devices, set())
    admin = pika.BlockingConnection(pika.URLParameters(rabbit.amqp_urls[0]))
    ch = admin.channel()
    try:
        for name, judged in (("p1", judged1), ("p2", moved)):
            apps.append(province_collector(
                rabbit, shared_influxdb, influx_db_name, mosquitto, tmp_path, name,
                {"p1": 20, "p2": 20}, registry=False, judged=judged,
                forget_after_s=8.0)[0])
        p1, p2 = apps
        ch.queue_unbind(queue_name("p2"), HASH_EXCHANGE, routing_key="20")  # p1 only
        pub.publish_all()
        assert wait_for(lambda: judged1 >= set(devices), 20)
        time.sleep(1.0)
        second = int(time.time() * 1000)
        pub.publish_all()  # `pending` on p1 (for 4 s) since the first round
        assert p1.handover is not None and p1.alerting is not None
        handover = p1.handover
        # p1 judged both rounds of every device: it knows their reporting interval
        assert wait_for(lambda: all(handover.last_ts.get(d, 0) >= second for d in devices), 10)
        ch.queue_bind(queue_name("p2"), HASH_EXCHANGE, routing_key="20")  # p2 joins
        assert p2.alerting is not None
        c1, c2 = p1.alerting.manager.counters, p2.alerting.manager.counters

        assert pub.until(lambda: bool(moved) and moved <= handover.forgotten.keys(), 40,
                         pause=1.0)
        assert 0 < len(moved) < len(devices)
        assert c2["event_firing"] == len(moved)  # the new owner announced them
        # the old owner announced its own devices, not the moved ones
        assert firing(p1, "pm25_heavy") == set(devices) - moved
        assert c1["event_firing"] == len(devices) - len(moved), \
            f"{c1['event_firing'] - (len(devices) - len(moved))} alerts announced twice"
        assert handover.counters.held_dropped == len(moved)
        assert p1.metrics.held_firing.labels("dropped")._value.get() == len(moved)
    finally:
        pub.close()
        admin.close()
        for a in apps:
            a.stop()


BACK_RULES = """rules:
  - name: pm25_heavy
    kind: threshold
    field: pm2_5
    aggregate: mean
    window: 2s
    above: 150
    for: 0s
"""


@needs_rabbitmq
def test_a_removed_collectors_last_alerts_are_on_record_for_the_old_owner(
    rabbit: RabbitCluster, shared_influxdb: InfluxDB, influx_db_name: str,
    mosquitto: Mosquitto, tmp_path: Path,
) -> None:
    """A collector is added, takes devices, fires their alerts and is removed in the
    instant after announcing them (its stop falls right after that tick). The devices
    go back to their old owner, which takes them over from the record: the removed
    collector's last `firing` events must be on it, or the old owner announces the
    alerts a second time. (A graceful stop used to leave the alert events of its last
    tick in memory: they ride with the next batch, and there was none.)"""
    devices = [f"bk-{i:02d}" for i in range(30)]
    fresh_ring(rabbit)
    (tmp_path / "rules.yaml").write_text(BACK_RULES)
    on_old: set[str] = set()
    moved: set[str] = set()
    fired: dict[str, list[str]] = {"b1": [], "b2": []}
    apps: list[tuple[CollectorApp, threading.Thread]] = []
    pub = Publisher(rabbit, devices, set())
    admin = pika.BlockingConnection(pika.URLParameters(rabbit.amqp_urls[0]))
    ch = admin.channel()
    try:
        for name, judged in (("b1", on_old), ("b2", moved)):
            apps.append(province_collector(
                rabbit, shared_influxdb, influx_db_name, mosquitto, tmp_path, name,
                {"b1": 20, "b2": 20}, registry=False, judged=judged))
            app = apps[-1][0]
            assert app.alerting is not None
            app.alerting.listeners.append(
                lambda ev, n=name: fired[n].append(ev.alert.subject)
                if ev.kind == "firing" else None)
        (b1, _t1), (b2, t2) = apps
        assert b1.handover is not None
        forgotten = b1.handover.forgotten
        ch.queue_unbind(queue_name("b2"), HASH_EXCHANGE, routing_key="20")  # b1 only

        assert pub.until(lambda: on_old >= set(devices), 20, pm=20.0)
        ch.queue_bind(queue_name("b2"), HASH_EXCHANGE, routing_key="20")  # b2 added
        # b1 forgets the devices b2 took (silent for 2 s, newer readings stored by b2)
        assert pub.until(lambda: bool(moved) and moved <= forgotten.keys(), 30, pm=20.0)
        assert 0 < len(moved) < len(devices)

        # b2 is removed right after the tick in which it announced its first alerts
        announce = b2.pipeline.alerts.publish_transitions

        def then_stop(transitions: list[Transition]) -> None:
            announce(transitions)
            if any(t.state == "firing" for t in transitions):
                b2.stop()

        b2.pipeline.alerts.publish_transitions = then_stop  # type: ignore[method-assign]
        assert pub.until(lambda: not t2.is_alive(), 30)
        last_said = set(fired["b2"])
        assert last_said, "b2 stopped before announcing anything"
        ch.queue_unbind(queue_name("b2"), HASH_EXCHANGE, routing_key="20")
        back = b1.handover.counters.rebuilt_devices

        # the moved devices report to b1 again: taken over from the record
        assert pub.until(lambda: not (moved & forgotten.keys())
                         and b1.handover.counters.rebuilt_devices - back >= len(moved), 30)
        pub.until(lambda: False, 2)  # a few more ticks on b1
        again = sorted(d for d in fired["b1"] if d in last_said)
        assert not again, f"announced by b2 just before its removal and again by b1: {again}"
        # every moved device's alert went out once: by b2, or by b1 for those b2 never
        # got to (nothing on record for them)
        counts = {d: fired["b1"].count(d) + fired["b2"].count(d) for d in moved}
        assert set(counts.values()) == {1}, counts
    finally:
        pub.close()
        admin.close()
        for a, th in apps:
            a.stop()
            th.join(30)


@needs_rabbitmq
def test_full_registry_on_every_collector_raises_no_deadman_for_others_devices(
    rabbit: RabbitCluster, shared_influxdb: InfluxDB, influx_db_name: str,
    mosquitto: Mosquitto, tmp_path: Path,
) -> None:
    """Two collectors, each given the whole registry: each judges the devices that
    report to it. No deadman alert on either for the devices the other holds; a device
    that falls silent gets one, from its own collector only."""
    devices = [f"dm-{i:02d}" for i in range(20)]
    fresh_ring(rabbit)
    (tmp_path / "rules.yaml").write_text(MOVE_RULES)
    write_registry(tmp_path / "registry.yaml", devices)
    ring = {"p1": 20, "p2": 20}
    held: dict[str, set[str]] = {"p1": set(), "p2": set()}
    pub = Publisher(rabbit, devices, set())
    apps = [province_collector(rabbit, shared_influxdb, influx_db_name, mosquitto, tmp_path,
                               name, ring, True, held[name]) for name in ring]
    try:
        assert pub.until(lambda: len(held["p1"] | held["p2"]) == len(devices), 30, pm=20.0)
        assert held["p1"] and held["p2"] and not held["p1"] & held["p2"]
        silent = sorted(held["p2"])[0]
        pub.quiet.add(silent)

        # past the 5 s deadman from both collectors' start
        assert pub.until(lambda: silent in firing(apps[1][0], "silent"), 30, pm=20.0)
        p1, p2 = firing(apps[0][0], "silent"), firing(apps[1][0], "silent")
        assert p1 == set(), p1  # p1 never heard p2's devices: none is its to judge
        assert p2 == {silent}, p2
    finally:
        pub.close()
        for a, th in apps:
            a.stop()
            th.join(30)


KEEPER_RULES = MOVE_RULES.replace("absent_for: 5s", "absent_for: 8s")


@needs_rabbitmq
def test_never_heard_device_gets_one_deadman_from_its_keeper(
    rabbit: RabbitCluster, shared_influxdb: InfluxDB, influx_db_name: str,
    mosquitto: Mosquitto, tmp_path: Path,
) -> None:
    """Registered devices that never report anywhere get their deadman from exactly one
    province collector, the one rendezvous hashing gives; a device that reports to the
    other collector gets none from its keeper (InfluxDB is asked first: it is handed)."""
    from collector.deadman_keeper import keeper_of

    reporting = [f"kp-{i:02d}" for i in range(16)]
    never = ["kp-never-a", "kp-never-b", "kp-never-c", "kp-never-d"]
    fresh_ring(rabbit)
    (tmp_path / "rules.yaml").write_text(KEEPER_RULES)
    write_registry(tmp_path / "registry.yaml", reporting + never)
    ring = {"k1": 20, "k2": 20}
    held: dict[str, set[str]] = {"k1": set(), "k2": set()}
    pub = Publisher(rabbit, reporting, set())
    stop = threading.Event()

    def publishing() -> None:  # from before the collectors start: their deadman counts
        while not stop.wait(0.5):
            pub.publish_all(20.0)

    feeder = threading.Thread(target=publishing, daemon=True)
    feeder.start()
    apps = [province_collector(rabbit, shared_influxdb, influx_db_name, mosquitto, tmp_path,
                               name, ring, True, held[name]) for name in ring]
    by_name = {name: a for name, (a, _th) in zip(ring, apps, strict=True)}
    try:
        def raised() -> dict[str, set[str]]:
            return {name: firing(a, "silent") for name, a in by_name.items()}

        def settled() -> bool:
            fired = raised()
            return (all(any(d in f for f in fired.values()) for d in never)
                    and len(held["k1"] | held["k2"]) == len(reporting))

        assert wait_for(settled, 40, step=0.5)
        time.sleep(3)  # past every keeper's check of the reporting devices it kept
        fired = raised()
        for d in never:
            assert [n for n, f in fired.items() if d in f] == [keeper_of(d, list(ring.items()))]
        assert not (fired["k1"] | fired["k2"]) & set(reporting), fired
        events = sum(a.alerting.manager.counters["event_firing"]  # type: ignore[union-attr]
                     for a in by_name.values())
        assert events == len(never)  # each announced once, nothing else
        owner = {d: n for n, ds in held.items() for d in ds}
        elsewhere = {d for d in reporting if keeper_of(d, list(ring.items())) != owner[d]}
        keepers = [a.keeper for a in by_name.values()]
        assert all(k is not None for k in keepers)
        handed = sum(k.counters.handed for k in keepers if k is not None)
        assert elsewhere and handed == len(elsewhere), (handed, elsewhere)
    finally:
        stop.set()
        feeder.join(5)
        pub.close()
        for a, th in apps:
            a.stop()
            th.join(30)


def test_queues_per_collector_config() -> None:
    cfg = from_dict({"source": "amqp", "amqp": {"queues_per_collector": 4}}, "c.toml")
    assert cfg.amqp.queues_per_collector == 4
    assert from_dict({"source": "amqp"}, "c.toml").amqp.queues_per_collector == 1
    for bad in (0, 65, "4"):
        with pytest.raises(ConfigError, match=r"c\.toml: amqp\.queues_per_collector"):
            from_dict({"source": "amqp", "amqp": {"queues_per_collector": bad}}, "c.toml")
    with pytest.raises(ValueError, match="queues_per_collector"):
        Topology({"c1": 1}, queues_per_collector=0)
    assert queue_names("c1", 3) == ["airgrid.collector.c1", "airgrid.collector.c1/1",
                                    "airgrid.collector.c1/2"]
