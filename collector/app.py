"""The collector's composition root: every part built from its configuration, run, stopped.

The one place that reads `CollectorConfig`: the CLI (`collector.cli`) and the province
runner (`orchestration`'s cluster runner) both build a collector here. `load` is all the
validation `run` does before it starts (and all that `check-config` does).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from airgrid.config import ConfigError
from alert_rules.engine import Engine, Entries
from alert_rules.rulefile import DEFAULT_RULES, RuleFileError, load_rules
from alert_rules.transitions import Transition
from collector import config as collector_config
from collector import logfmt, long_lived_heap
from collector import registry as device_registry
from collector.alert_handoff import AlertHandOff, BeforeJudge, Screen
from collector.batch_builder import BatchBuilder, Intake
from collector.batch_writer import BatchWriter
from collector.counters import Counters
from collector.county_points import CountyPoints
from collector.dead_letters import DeadLetters
from collector.deadman_keeper import DeadmanKeeper
from collector.engine_state_file import EngineStateFile
from collector.gauges import Gauges
from collector.handover import HandOver
from collector.influx_sink import InfluxV1Sink
from collector.influx_v2_sink import InfluxV2Sink
from collector.ingest_source import IngestSource
from collector.long_lived_heap import LongLivedHeap
from collector.metrics import Metrics, MetricsServer
from collector.mqtt_ingest import MqttIngest
from collector.pipeline import Batching, Pipeline
from collector.quarantine import MAX_ATTEMPTS, Quarantine, path_beside
from collector.registry import RegistryError, RegistryWatcher
from collector.registry_feed import RegistryFeed
from collector.retention import Retention, StateDbSizes
from collector.spool import Spool
from collector.state_store import StateStore
from collector.storage_sink import StorageSink
from collector.tag_cache import TagCache
from collector.tick_schedule import TickSchedule
from collector.writer import StorageWriter

if TYPE_CHECKING:
    from collector.alerting.config import AlertingConfig
    from collector.alerting.service import AlertingService
    from collector.config import CollectorConfig
    from collector.workorders.service import WorkOrderService

log = logging.getLogger(__name__)

#: what `load` raises: each message names the file and what is wrong
LOAD_ERRORS = (ConfigError, RuleFileError, RegistryError)


@dataclass(frozen=True)
class LoadedConfig:
    """A collector's configuration with its rules and device registry, all validated."""

    config: CollectorConfig
    engine: Engine
    devices: dict[str, device_registry.Device]
    #: the parser that read `devices`: the watcher's reloads reuse its unchanged rows
    parser: device_registry.RegistryParser | None = None


def load(path: Path) -> LoadedConfig:
    """Config, rules, registry and alerting table, each validated; raises LOAD_ERRORS."""
    return from_config(collector_config.load(path))


def from_config(cfg: CollectorConfig) -> LoadedConfig:
    with long_lived_heap.building():
        return _from_config(cfg)


def _from_config(cfg: CollectorConfig) -> LoadedConfig:
    parser = device_registry.RegistryParser()
    devices = parser.load(cfg.registry.file) if cfg.registry.file else {}
    if cfg.registry.file:
        from collector.workorders.workers import listed_workers

        # the app's `workers:` list (RegistryError); the device contacts' workers are
        # checked with the devices
        listed_workers(cfg.registry.file)
    engine = build_engine(cfg.rules.files, devices)
    _alerting_config(cfg)
    return LoadedConfig(cfg, engine, devices, parser)


def build_engine(files: Sequence[Path], devices: Entries = ()) -> Engine:
    """The rules over the registered fleet: deadman also catches devices never heard."""
    rules = []
    for f in files or (DEFAULT_RULES,):
        rules.extend(load_rules(f))
    return Engine(rules, registry=devices)  # the registry's entries, as they are


def _influx_v1(cfg: CollectorConfig) -> StorageSink:
    return InfluxV1Sink(cfg.influx.url, cfg.influx.database, cfg.influx.username,
                        cfg.influx.password, timeout_s=cfg.influx.timeout_s,
                        gzip_level=1 if cfg.influx.compress else 0)


def _influx_v2(cfg: CollectorConfig) -> StorageSink:
    return InfluxV2Sink(cfg.influx.url, cfg.influx.token or "", cfg.influx.org,
                        cfg.influx.bucket or cfg.influx.database, cfg.influx.timeout_s,
                        cfg.influx.compress)


#: the explicit registry of storage sinks, chosen by `influx.api` in the config
SINKS: dict[str, Callable[[CollectorConfig], StorageSink]] = {"v1": _influx_v1,
                                                              "v2": _influx_v2}


def make_sink(cfg: CollectorConfig) -> StorageSink:
    return SINKS[cfg.influx.api](cfg)


def configure_logging(loaded: LoadedConfig, level: str, log_format: str | None) -> None:
    """`log_format` from the command line wins over `[log] format` in the config."""
    logfmt.setup(level, log_format or loaded.config.log.format)


def _alerting_config(cfg: CollectorConfig) -> AlertingConfig:
    from collector.alerting import config as alerting_config

    return alerting_config.resolve(cfg.alerting)


def build_alerting(cfg: CollectorConfig, shared: MqttIngest | None,
                   registry: RegistryWatcher, metrics: Metrics | None = None,
                   points: CountyPoints | None = None) -> AlertingService | None:
    """The alert lifecycle, or None when `[alerting] enabled = false`. With an MQTT ingest
    its client is shared (one connection per collector); an AMQP collector has none, so
    alert channels and acknowledgements open their own to [broker]."""
    from collector.alerting.channels.notifier import Context
    from collector.alerting.service import AlertingService
    from collector.registry_contacts import RegistryContacts

    acfg = _alerting_config(cfg)
    if not acfg.enabled:
        return None
    # grid workers come from the device registry when there is one
    contacts = RegistryContacts(registry, acfg.contacts) if registry.path else None
    return AlertingService(acfg, metrics=None if metrics is None else metrics.registry,
                           recorder=points, contacts=contacts, ctx=Context(
        broker_host=cfg.broker.host, broker_port=cfg.broker.port,
        broker_username=cfg.broker.username, broker_password=cfg.broker.password,
        prefix=cfg.broker.prefix, client_id=cfg.broker.client_id,
        shared_client=None if shared is None else shared.client,
        shared_connected=None if shared is None else shared.connected))


def build_pipeline(cfg: CollectorConfig, ingest: IngestSource, sink: StorageSink,
                   engine: Engine, *, registry: RegistryWatcher | None = None,
                   metrics: Metrics | None = None, spool: Spool | None = None,
                   state: StateStore | None = None, quarantine: Quarantine | None = None,
                   engine_state_path: Path | None = None,
                   alerting: AlertingService | None = None,
                   before_judge: Sequence[BeforeJudge] = (),
                   points: CountyPoints | None = None,
                   screen: Screen | None = None) -> Pipeline:
    """The pipeline and its parts over the given ingest, sink and engine.

    Without a spool the spool is a temp dir: still ordered and retried, but not durable
    across a restart (the collector service always has one). Without a state store the
    seq and hourly state is not checkpointed; without `engine_state_path` the engine's
    is not kept.
    """
    metrics = metrics if metrics is not None else Metrics()
    registry = registry if registry is not None else RegistryWatcher(None)
    points = points if points is not None else CountyPoints()
    if spool is None:
        spool = Spool(Path(tempfile.mkdtemp(prefix="airgrid-spool-")), 1 << 30)
    counters = Counters()
    dead_letters = DeadLetters(ingest.publish, cfg.broker.prefix, counters, metrics,
                               quarantine)
    builder = BatchBuilder(
        Intake(prefix=cfg.broker.prefix, max_payload_bytes=cfg.validation.max_payload_bytes,
               max_future_ms=cfg.validation.max_future_ms, unknown_devices=cfg.registry.unknown),
        TagCache(registry), dead_letters, counters, metrics, quarantine)
    builder.seqs.max_gap_age_ms = int(cfg.gaps.max_age_s * 1000)
    builder.seqs.max_gap_ranges = cfg.gaps.max_ranges
    builder.aggregates.keep_ms = int(cfg.retention.hourly_s * 1000)
    alerts = AlertHandOff(engine, ingest.publish, cfg.broker.prefix, counters, metrics,
                          alerting=alerting, before_judge=before_judge,
                          late_after_ms=None if cfg.rules.late_after_s is None
                          else int(cfg.rules.late_after_s * 1000),
                          ticks=TickSchedule(cfg.rules.tick_interval_s,
                                             cfg.rules.max_arrival_ticks_per_s),
                          # a province take-over reads what was announced
                          # (collector.handover); the lifecycle writes its own events
                          record=points.add if alerting is None and cfg.source == "amqp"
                          else None, screen=screen)
    storage = StorageWriter(sink, spool, cfg.influx.retries, cfg.influx.backoff_ms / 1000,
                            observe_latency=metrics.write_latency.observe)
    writer = BatchWriter(storage, ingest.ack, dead_letters, counters, metrics, alerts.judge,
                         state=state, max_writes=cfg.influx.writes_in_flight,
                         quarantine=quarantine, on_refused=builder.unstore,
                         spill_after_s=cfg.influx.spill_after_ms / 1000
                         if cfg.influx.spill_after_ms else None)
    gauges = Gauges(metrics, counters, seqs=builder.seqs, devices=builder.health,
                    storage=storage, spool=spool, registry=registry,
                    spool_full=lambda: writer.spool_full, connected=ingest.connected,
                    per_device=cfg.metrics.per_device_completeness)
    batching = Batching(max_messages=cfg.batch.max_messages, max_lines=cfg.batch.max_lines,
                        max_wait_s=cfg.batch.max_wait_ms / 1000)
    retention = Retention(builder, engine, registry, metrics,
                          int(cfg.retention.forget_devices_after_s * 1000), state)
    engine_state = EngineStateFile(engine, engine_state_path, metrics=metrics)
    return Pipeline(ingest, builder, writer, alerts, engine_state, gauges, batching,
                    feed=RegistryFeed(registry, engine, points), points=points,
                    retention=retention, heap=LongLivedHeap())


class CollectorApp:
    """A whole collector: ingest (MQTT, or AMQP with the hand-over), sink, spool, state,
    registry, engine, alerting, metrics endpoint and the pipeline between them.

    `start` connects and restores state, `run` takes deliveries until `stop` (from any
    thread), then drains and closes everything. `before_judge` hooks see every stored
    batch just before the engine does (the province runner records who judged what).
    """

    def __init__(self, loaded: LoadedConfig, *,
                 before_judge: Sequence[BeforeJudge] = ()) -> None:
        with long_lived_heap.building():  # what lives as long as the process
            self._build(loaded, before_judge)

    def _build(self, loaded: LoadedConfig, before_judge: Sequence[BeforeJudge]) -> None:
        cfg = self.config = loaded.config
        self.engine = loaded.engine
        self.sink = make_sink(cfg)
        self.metrics = Metrics()
        self.handover: HandOver | None = None
        shared: MqttIngest | None = None
        self.ingest: IngestSource
        if cfg.source == "amqp":
            self.ingest, self.handover = _amqp_source(cfg, self.engine)
        else:
            b = cfg.broker
            self.ingest = shared = MqttIngest(
                b.host, b.port, b.client_id, b.prefix, b.max_unacked, b.username, b.password,
                session_expiry_s=b.session_expiry_s)
        # the registry `load` read (and validated) is the one in force: not read twice
        self.registry = RegistryWatcher(cfg.registry.file, cfg.registry.reload_check_s,
                                        devices=loaded.devices, parser=loaded.parser)
        self.points = CountyPoints()  # alert events and device places, for InfluxDB
        self.alerting = build_alerting(cfg, shared, self.registry, self.metrics, self.points)
        if self.handover is not None:
            held = self.metrics.held_firing
            self.handover.on_held.append(lambda outcome, n: held.labels(outcome).inc(n))
        if self.handover is not None and self.alerting is not None:
            self.handover.on_forget.append(self.alerting.hand_over)
            self.handover.on_adopt.append(self.alerting.adopt)
        # the deadman of registered devices no province collector has heard: one keeper
        # each, by rendezvous hash over the collectors table (collector.deadman_keeper)
        self.keeper: DeadmanKeeper | None = None
        if self.handover is not None:
            self.keeper = DeadmanKeeper(
                self.engine, self.handover, self.handover.history, cfg.amqp.collector,
                cfg.amqp.ring, self.handover.forget_after_ms, self.metrics,
                on_release=[] if self.alerting is None else [self.alerting.hand_over])
        if self.alerting is not None and self.alerting.mqtt_ack is not None and shared:
            from collector.alerting.ack_mqtt import command_topic

            shared.extra_subscriptions.append((command_topic(cfg.broker.prefix), 1))
        self.workorders = _workorders(cfg, self.alerting, self.registry, self.points)
        self.spool = Spool(cfg.spool.dir, cfg.spool.max_bytes)
        self.state = StateStore(cfg.state.file)
        self.state_sizes = StateDbSizes(cfg.state.file, self.metrics)
        self.quarantine = Quarantine(path_beside(cfg.state.file))
        hooks = ([self.handover.before_ingest] if self.handover else []) + list(before_judge)
        self.pipeline = build_pipeline(
            cfg, self.ingest, self.sink, self.engine, registry=self.registry,
            metrics=self.metrics, spool=self.spool, state=self.state,
            quarantine=self.quarantine,
            # rule windows and alert states survive a restart
            engine_state_path=cfg.state.file.with_name("engine.npz"),
            alerting=self.alerting, before_judge=hooks, points=self.points,
            screen=self._screen if self.handover is not None else None)
        self.server: MetricsServer | None = None
        if cfg.metrics.port:
            self.server = MetricsServer(self.metrics, self.pipeline.health_report,
                                        cfg.metrics.host, cfg.metrics.port)

    def _screen(self, transitions: list[Transition], now_ms: int) -> list[Transition]:
        """The hand-over holds overdue devices' firing (they may have moved), then the
        deadman keeper holds kept devices' deadman until InfluxDB has answered."""
        assert self.handover is not None
        out = self.handover.screen(transitions, now_ms)
        return out if self.keeper is None else self.keeper.screen(out, now_ms)

    @property
    def counters(self) -> Counters:
        return self.pipeline.counters

    def start(self) -> None:
        """Restore saved state, connect to the broker, start alerting, serve metrics."""
        # What start-up built (registry, engine, restored state) lives as long as the
        # process: frozen, out of the collector's reach, a full collection no longer
        # walks it on the ingest thread (at 100,000 devices, hundreds of ms each time).
        with long_lived_heap.building():
            n = self.state.restore(self.pipeline.builder.seqs,
                                   self.pipeline.builder.aggregates)
            self.pipeline.builder.restore_epochs()
            log.info("restored seq state of %d devices", n)
            suspects = self.quarantine.recover()
            if suspects:
                log.warning("%d messages were in flight when the collector last stopped "
                            "abnormally: each is processed alone, and quarantined after %d "
                            "attempts", suspects, MAX_ATTEMPTS)
            self.pipeline.engine_state.restore()
            self.pipeline.engine_state.warm()
        self.state_sizes.start()
        if self.handover is not None:
            self.handover.restore()
            # a registry device never heard here reports to another collector, or to
            # none: then its deadman is kept by one collector
            self.engine.hold_heard_only()
        if self.keeper is not None:
            self.keeper.keep(int(time.time() * 1000))
        self.ingest.start()
        if self.alerting is not None:
            self.alerting.start()
        if self.workorders is not None:
            self.workorders.start()
        # /healthz last: once it answers, every port of the collector is bound (the
        # acknowledgement API and the grid worker app were found closed right after a
        # healthz that said "connected")
        if self.server is not None:
            self.server.start()
        cfg = self.config
        log.info("collector: source %s, broker %s:%d, InfluxDB %s (%s) db %s, %d rules, "
                 "spool %s", cfg.source, cfg.broker.host, cfg.broker.port, cfg.influx.url,
                 cfg.influx.api, cfg.influx.database, len(self.engine.rules), cfg.spool.dir)

    def run(self) -> None:
        """Run the pipeline until `stop`; then drain what is held and close everything."""
        try:
            self.pipeline.run()
        finally:
            self.close()

    def stop(self) -> None:
        self.pipeline.stopping.set()

    def close(self) -> None:
        if self.keeper is not None:
            self.keeper.close()
        if self.handover is not None:
            self.handover.close()
        if self.workorders is not None:
            self.workorders.stop()
        self.pipeline.engine_state.close()  # the last snapshot is written in the background
        if self.alerting is not None:
            self.alerting.stop()
        self.ingest.stop()
        self.sink.close()
        self.quarantine.close()
        self.state_sizes.stop()
        self.state.close()  # after the pipeline's last checkpoint (`Pipeline.drain`)
        if self.server is not None:
            self.server.stop()
        c = self.counters
        log.info("stopped: %d messages, %d readings stored, %d duplicates, %d spooled, "
                 "spool depth %d lines, rejected %s, rejected readings %s", c.messages,
                 c.readings_stored, c.duplicates, c.spooled, self.spool.lines,
                 dict(c.rejected), dict(c.rejected_readings))


def _workorders(cfg: CollectorConfig, alerting: AlertingService | None,
                registry: RegistryWatcher, points: CountyPoints) -> WorkOrderService | None:
    """Work orders ride on the alert lifecycle: none without it. The app's HTTP server
    runs when `[alerting.app] http_port` is set."""
    from collector.workorders.readings import ReadingsQuery
    from collector.workorders.service import WorkOrderService

    if alerting is None:
        return None
    i = cfg.influx
    readings = ReadingsQuery(i.url, i.bucket or i.database if i.api == "v2" else i.database,
                             i.username, i.password, i.token if i.api == "v2" else None,
                             timeout_s=i.timeout_s)
    return WorkOrderService(cfg.alerting.app, alerting, registry, points.add, readings)


def _amqp_source(cfg: CollectorConfig, engine: Engine) -> tuple[IngestSource, HandOver]:
    from collector.amqp_ingest import AmqpIngest
    from collector.amqp_topology import Topology
    from collector.handover import InfluxHistory

    topology = (Topology(dict(cfg.amqp.ring), cfg.broker.prefix,
                         queues_per_collector=cfg.amqp.queues_per_collector)
                if cfg.amqp.setup_topology else None)
    ingest = AmqpIngest(cfg.amqp.url_list, cfg.amqp.collector, cfg.amqp.prefetch, topology,
                        queues=cfg.amqp.queues_per_collector)
    history = InfluxHistory(cfg.influx.url, cfg.influx.database, cfg.influx.username,
                            cfg.influx.password)
    handover = HandOver(engine, history, int(cfg.amqp.rebuild_lookback_s * 1000),
                        int(cfg.amqp.forget_after_s * 1000),
                        forgotten_file=cfg.state.file.with_name("forgotten.json"),
                        background=True)  # the ingest thread never waits for InfluxDB
    return ingest, handover
