"""`airgrid-edge`: the edge agent service and the technician's tools."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

from airgrid.config_schema import ConfigError


def _cmd_run(args: argparse.Namespace) -> int:
    from edge_agent import config as edge_config
    from edge_agent.agent import EdgeAgent

    try:
        cfg = edge_config.load(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    agent = EdgeAgent(cfg)

    def _stop(signum: int, frame: object) -> None:
        agent._stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logging.getLogger(__name__).info(
        "agent %s: %s on %s, every %.1f s, outbox %s",
        cfg.device, cfg.sensor_model, cfg.port, cfg.interval_s, cfg.outbox_path,
    )
    try:
        agent.run()
    finally:
        agent.stop(drain_s=args.drain)
    return 0


def _cmd_read(args: argparse.Namespace) -> int:
    import serial

    from edge_agent.drivers.pms5003 import PmsAck, PmsFrame, PmsStreamDecoder

    decoder = PmsStreamDecoder()
    try:
        port = serial.Serial(args.port, 9600, timeout=0.5)
    except (serial.SerialException, OSError) as exc:
        print(f"cannot open {args.port}: {exc}", file=sys.stderr)
        return 1
    printed = acks = warmup = 0
    deadline = time.monotonic() + args.timeout
    with port:
        while printed < args.count and time.monotonic() < deadline:
            for item in decoder.feed(port.read(64)):
                if isinstance(item, PmsAck):
                    acks += 1
                    continue
                assert isinstance(item, PmsFrame)
                if item.all_zero:
                    warmup += 1
                    continue
                values = asdict(item)
                values.pop("reserved")
                print(json.dumps(values) if args.json else
                      "  ".join(f"{k}={v}" for k, v in values.items()), flush=True)
                printed += 1
                if printed >= args.count:
                    break
    errors = dict(decoder.errors)
    print(f"read {printed} frames; skipped: {acks} command acks, {warmup} warm-up frames, "
          f"errors {errors or 'none'}", file=sys.stderr)
    return 0 if printed >= args.count else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="airgrid-edge", description="airgrid edge agent")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the agent service")
    run.add_argument("--config", type=Path, required=True, help="TOML config file")
    run.add_argument("--drain", type=float, default=5.0,
                     help="seconds to keep publishing the outbox on shutdown")
    run.set_defaults(func=_cmd_run)
    read = sub.add_parser("read", help="wiring check: print frames from a sensor")
    read.add_argument("--port", required=True, help="serial port, e.g. /dev/serial0")
    read.add_argument("--sensor", choices=["pms5003"], default="pms5003")
    read.add_argument("--count", type=int, default=5, help="frames to print")
    read.add_argument("--timeout", type=float, default=60.0, help="give up after seconds")
    read.add_argument("--json", action="store_true", help="one JSON object per frame")
    read.set_defaults(func=_cmd_read)
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
