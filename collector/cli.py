"""`airgrid-collector`: the county collector service."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from airgrid import sd_notify
from airgrid.config import ConfigError

if TYPE_CHECKING:
    from alert_rules.engine import Engine
    from collector.alerting.config import AlertingConfig
    from collector.alerting.service import AlertingService
    from collector.config import CollectorConfig
    from collector.handover import HandOver
    from collector.ingest_source import IngestSource
    from collector.mqtt_ingest import MqttIngest
    from collector.registry import Device as RegistryDevice
    from collector.registry import RegistryWatcher


def _load_engine(files: tuple[Path, ...], devices: Iterable[RegistryDevice] = ()) -> Engine:
    """The rules over the registered fleet: deadman also catches devices never heard."""
    from alert_rules.engine import Engine
    from alert_rules.registry import Device
    from alert_rules.rulefile import DEFAULT_RULES, load_rules

    rules = []
    for f in files or (DEFAULT_RULES,):
        rules.extend(load_rules(f))
    expected = [Device(id=d.id, township=d.township, grid=d.grid, lat=d.lat, lon=d.lon,
                       name=d.name) for d in devices]
    return Engine(rules, registry=expected)


def _alerting_config(cfg: CollectorConfig) -> AlertingConfig:
    from collector.alerting import config as alerting_config

    return alerting_config.resolve(cfg.alerting)


def _build_alerting(cfg: CollectorConfig, shared: MqttIngest | None,
                    registry: RegistryWatcher) -> AlertingService | None:
    from collector.alerting.channels.notifier import Context
    from collector.alerting.service import AlertingService
    from collector.registry_contacts import RegistryContacts

    acfg = _alerting_config(cfg)
    if not acfg.enabled:
        return None
    # grid workers come from the device registry when there is one
    contacts = RegistryContacts(registry, acfg.contacts) if registry.path else None
    return AlertingService(acfg, contacts=contacts, ctx=Context(
        broker_host=cfg.broker.host, broker_port=cfg.broker.port,
        broker_username=cfg.broker.username, broker_password=cfg.broker.password,
        prefix=cfg.broker.prefix, client_id=cfg.broker.client_id,
        shared_client=None if shared is None else shared.client,
        shared_connected=None if shared is None else shared.connected))


def _load(path: Path) -> tuple[CollectorConfig, Engine, int]:
    """Config, rules and registry, each validated; raises with a message naming the file."""
    from collector import config as collector_config
    from collector import registry

    cfg = collector_config.load(path)
    devices = registry.load(cfg.registry.file) if cfg.registry.file else {}
    engine = _load_engine(cfg.rules.files, devices.values())
    return cfg, engine, len(devices)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from alert_rules.rulefile import RuleFileError
    from collector.registry import RegistryError

    try:
        _cfg, engine, n_devices = _load(args.file)
    except (ConfigError, RuleFileError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file}: ok ({len(engine.rules)} rules, {n_devices} registered devices)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from alert_rules.rulefile import RuleFileError
    from collector import logfmt
    from collector.alerting.ack_mqtt import command_topic
    from collector.metrics import Metrics, MetricsServer
    from collector.mqtt_ingest import MqttIngest
    from collector.pipeline import Pipeline
    from collector.registry import RegistryError, RegistryWatcher
    from collector.sinks import make_sink
    from collector.spool import Spool
    from collector.state_store import StateStore

    try:
        cfg, engine, _ = _load(args.config)
    except (ConfigError, RuleFileError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logfmt.setup(args.log_level, args.log_format or cfg.log.format)
    log = logging.getLogger("collector")
    sink = make_sink(cfg)
    ingest: IngestSource
    handover: HandOver | None = None
    shared: MqttIngest | None = None
    if cfg.source == "amqp":
        ingest, handover = _amqp_source(cfg, engine)
    else:
        ingest = shared = MqttIngest(
            cfg.broker.host, cfg.broker.port, cfg.broker.client_id, cfg.broker.prefix,
            cfg.broker.max_unacked, cfg.broker.username, cfg.broker.password,
            session_expiry_s=cfg.broker.session_expiry_s)
    registry = RegistryWatcher(cfg.registry.file, cfg.registry.reload_check_s)
    # one MQTT connection per collector: alert channels and acknowledgements share it;
    # an AMQP collector has none, so they open their own to [broker]
    alerting = _build_alerting(cfg, shared, registry)
    if alerting is not None and alerting.mqtt_ack is not None and shared is not None:
        shared.extra_subscriptions.append((command_topic(cfg.broker.prefix), 1))
    metrics = Metrics()
    pipeline = Pipeline(
        ingest, sink, engine, cfg.broker.prefix, cfg.batch.max_messages,
        cfg.batch.max_wait_ms / 1000, cfg.rules.tick_interval_s, max_lines=cfg.batch.max_lines,
        spool=Spool(cfg.spool.dir, cfg.spool.max_bytes), state=StateStore(cfg.state.file),
        registry=registry,
        unknown_devices=cfg.registry.unknown, metrics=metrics, retries=cfg.influx.retries,
        backoff_s=cfg.influx.backoff_ms / 1000, max_payload_bytes=cfg.validation.max_payload_bytes,
        max_future_ms=cfg.validation.max_future_ms, max_writes=cfg.influx.writes_in_flight,
        handover=handover,
    )
    pipeline.alerting = alerting
    # Rule windows and alert states survive a restart (saved periodically and at exit).
    pipeline.engine_state_path = cfg.state.file.with_name("engine.npz")
    pipeline.restore_engine_state()
    server = None
    if cfg.metrics.port:
        server = MetricsServer(metrics, pipeline.health_report, cfg.metrics.host,
                               cfg.metrics.port)
        server.start()
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()
        pipeline.stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    ingest.start()
    # systemd (Type=notify, WatchdogSec): stuck = messages waiting and no progress since
    # the last check (a write retry during an InfluxDB outage counts as progress).
    progress = [-1]

    def _healthy() -> bool:
        c = pipeline.counters
        before, progress[0] = progress[0], c.messages + c.write_retries
        return ingest.waiting() == 0 or before != progress[0]

    sd_notify.start_watchdog(_healthy, stop)
    sd_notify.notify("READY=1")
    if alerting is not None:
        alerting.start()
    log.info("collector: source %s, broker %s:%d, InfluxDB %s (%s) db %s, %d rules, "
             "spool %s", cfg.source, cfg.broker.host, cfg.broker.port, cfg.influx.url,
             cfg.influx.api, cfg.influx.database, len(engine.rules), cfg.spool.dir)
    try:
        pipeline.run()
    finally:
        if alerting is not None:
            alerting.stop()
        ingest.stop()
        sink.close()
        if server is not None:
            server.stop()
        c = pipeline.counters
        log.info("stopped: %d messages, %d readings stored, %d duplicates, %d spooled, "
                 "spool depth %d lines, rejected %s", c.messages, c.readings_stored,
                 c.duplicates, c.spooled, pipeline.spool.lines, dict(c.rejected))
    return 0


def _amqp_source(cfg: CollectorConfig, engine: Engine) -> tuple[IngestSource, HandOver]:
    from collector.amqp_ingest import AmqpIngest
    from collector.amqp_topology import Topology
    from collector.handover import HandOver, InfluxHistory

    topology = (Topology(dict(cfg.amqp.ring), cfg.broker.prefix)
                if cfg.amqp.setup_topology else None)
    ingest = AmqpIngest(list(cfg.amqp.urls), cfg.amqp.collector, cfg.amqp.prefetch, topology)
    history = InfluxHistory(cfg.influx.url, cfg.influx.database, cfg.influx.username,
                            cfg.influx.password)
    handover = HandOver(engine, history, int(cfg.amqp.rebuild_lookback_s * 1000),
                        int(cfg.amqp.forget_after_s * 1000))
    return ingest, handover


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="airgrid-collector", description="airgrid county collector")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    p.add_argument("--log-format", choices=("text", "json"), default=None,
                   help="overrides [log] format in the config")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the collector service")
    run.add_argument("--config", type=Path, required=True, help="TOML config file")
    run.set_defaults(func=_cmd_run)
    chk = sub.add_parser("check-config",
                         help="validate a config file, its rule files and its device registry")
    chk.add_argument("file", type=Path)
    chk.set_defaults(func=_cmd_check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "run":
        logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO))
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
