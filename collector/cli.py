"""`airgrid-collector`: the county collector service."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from airgrid.config_schema import ConfigError

if TYPE_CHECKING:
    from alert_rules.engine import Engine
    from collector.config import CollectorConfig
    from collector.handover import HandOver
    from collector.ingest_source import IngestSource


def _load_engine(files: tuple[Path, ...]):  # type: ignore[no-untyped-def]
    from alert_rules.engine import Engine
    from alert_rules.rulefile import DEFAULT_RULES, load_rules

    rules = []
    for f in files or (DEFAULT_RULES,):
        rules.extend(load_rules(f))
    return Engine(rules)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from alert_rules.rulefile import RuleFileError
    from collector import config as collector_config

    try:
        cfg = collector_config.load(args.file)
        engine = _load_engine(cfg.rule_files)
    except (ConfigError, RuleFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file}: ok ({len(engine.rules)} rules)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from alert_rules.rulefile import RuleFileError
    from collector import config as collector_config
    from collector.influx_sink import InfluxV1Sink
    from collector.mqtt_ingest import MqttIngest
    from collector.pipeline import Pipeline

    log = logging.getLogger("collector")
    try:
        cfg = collector_config.load(args.config)
        engine = _load_engine(cfg.rule_files)
    except (ConfigError, RuleFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sink = InfluxV1Sink(cfg.influx_url, cfg.influx_database, cfg.influx_username,
                        cfg.influx_password)
    ingest: IngestSource
    handover: HandOver | None = None
    if cfg.source == "amqp":
        ingest, handover = _amqp_source(cfg, engine)
    else:
        ingest = MqttIngest(cfg.broker_host, cfg.broker_port, cfg.client_id, cfg.prefix,
                            cfg.max_unacked, cfg.broker_username, cfg.broker_password)
    pipeline = Pipeline(ingest, sink, engine, cfg.prefix, cfg.batch_max_messages,
                        cfg.batch_max_wait_ms / 1000, cfg.tick_interval_s, handover=handover)
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()
        pipeline.stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    ingest.start()
    log.info("collector: source %s, broker %s:%d, InfluxDB %s db %s, %d rules", cfg.source,
             cfg.broker_host, cfg.broker_port, cfg.influx_url, cfg.influx_database,
             len(engine.rules))
    try:
        pipeline.run()
    finally:
        ingest.stop()
        c = pipeline.counters
        log.info("stopped: %d messages, %d readings stored, %d duplicates, rejected %s",
                 c.messages, c.readings_stored, c.duplicates, dict(c.rejected))
    return 0


def _amqp_source(cfg: CollectorConfig, engine: Engine) -> tuple[IngestSource, HandOver]:
    from collector.amqp_ingest import AmqpIngest
    from collector.amqp_topology import Topology
    from collector.handover import HandOver, InfluxHistory

    topology = (Topology(dict(cfg.amqp_collectors), cfg.prefix)
                if cfg.amqp_setup_topology else None)
    ingest = AmqpIngest(list(cfg.amqp_urls), cfg.amqp_collector, cfg.amqp_prefetch, topology)
    history = InfluxHistory(cfg.influx_url, cfg.influx_database, cfg.influx_username,
                            cfg.influx_password)
    handover = HandOver(engine, history, int(cfg.rebuild_lookback_s * 1000),
                        int(cfg.forget_after_s * 1000))
    return ingest, handover


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="airgrid-collector", description="airgrid county collector")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the collector service")
    run.add_argument("--config", type=Path, required=True, help="TOML config file")
    run.set_defaults(func=_cmd_run)
    chk = sub.add_parser("check-config", help="validate a config file and its rule files")
    chk.add_argument("file", type=Path)
    chk.set_defaults(func=_cmd_check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
