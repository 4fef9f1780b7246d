"""`airgrid-edge`: the edge agent service and the technician's tools."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from airgrid.cli_support import add_log_level, cli_main, json_dumps, new_parser
from airgrid.config import ConfigError
from edge_agent.drivers import SENSOR_MODELS, SERIAL_PROTOCOLS

#: `airgrid-edge run` exit codes besides 0: a config error, and an outbox that cannot be
#: written (sysexits.h EX_CANTCREAT), so `systemctl status` tells the two apart.
EXIT_CONFIG = 2
EXIT_NOT_WRITABLE = 73


def _cmd_run(args: argparse.Namespace) -> int:
    from edge_agent import config as edge_config
    from edge_agent.agent import EdgeAgent
    from edge_agent.i2c_reader import I2cUnavailable
    from edge_agent.outbox import OutboxNotWritable

    try:
        cfg = edge_config.load(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        agent = EdgeAgent(cfg)
    except OutboxNotWritable as exc:
        logging.getLogger(__name__).error("%s; exiting with status %d", exc, EXIT_NOT_WRITABLE)
        return EXIT_NOT_WRITABLE
    except I2cUnavailable as exc:
        print(f"error: {args.config}: sensor.model = {cfg.sensor.model!r}: {exc}",
              file=sys.stderr)
        return EXIT_CONFIG

    def _stop(signum: int, frame: object) -> None:
        agent._stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    logging.getLogger(__name__).info(
        "agent %s: %s on %s, every %.1f s, outbox %s (seq continues after %d)",
        cfg.device, cfg.sensor.model, cfg.sensor.port, cfg.sampling.interval_s, cfg.outbox.path,
        agent.outbox.last_seq,
    )
    try:
        agent.run()
    finally:
        agent.stop(drain_s=args.drain)
    return 0


def _print(fields: dict[str, Any], as_json: bool, out: TextIO) -> None:
    print(json_dumps(fields) if as_json else
          "  ".join(f"{k}={v}" for k, v in fields.items()), file=out, flush=True)


def read_serial(port: str, sensor: str, count: int, timeout: float, as_json: bool,
                polled: bool = False, out: TextIO = sys.stdout) -> tuple[int, Counter[str]]:
    """Print `count` reading frames; returns (printed, what was skipped and why)."""
    import serial

    protocol = SERIAL_PROTOCOLS[sensor]
    decoder = protocol.new_decoder()
    skipped: Counter[str] = Counter()
    printed = 0
    with serial.Serial(port, protocol.baudrate, timeout=0.2) as s:
        s.write(protocol.wake + protocol.configure(polled))
        deadline = time.monotonic() + timeout
        while printed < count and time.monotonic() < deadline:
            if polled:
                s.write(protocol.poll)
            for item in decoder.feed(s.read(64)):
                if not protocol.is_measurement(item):
                    skipped["command replies"] += 1
                    continue
                if item.warming_up:  # type: ignore[attr-defined]
                    skipped["warm-up frames"] += 1
                    continue
                _print(item.fields(), as_json, out)  # type: ignore[attr-defined]
                printed += 1
                if printed >= count:
                    break
    for cause, n in decoder.errors.items():
        skipped[f"{cause} errors"] += n
    return printed, skipped


def read_i2c(bus: Any, address: int, count: int, timeout: float, as_json: bool,
             out: TextIO = sys.stdout) -> tuple[int, Counter[str]]:
    from edge_agent.drivers.pmsa003i import Pmsa003iSensor, SensorReadError

    sensor = Pmsa003iSensor(bus, address)
    skipped: Counter[str] = Counter()
    printed = 0
    deadline = time.monotonic() + timeout
    while printed < count and time.monotonic() < deadline:
        try:
            frame = sensor.read()
        except SensorReadError as exc:
            skipped[f"{exc.cause} errors"] += 1
            time.sleep(0.2)
            continue
        if frame.warming_up:
            skipped["warm-up frames"] += 1
        else:
            _print(frame.fields(), as_json, out)
            printed += 1
        if printed < count:
            time.sleep(0.2)
    return printed, skipped


def _cmd_read(args: argparse.Namespace) -> int:
    try:
        if args.i2c:
            from edge_agent.i2c_reader import blinka_bus

            printed, skipped = read_i2c(blinka_bus(), args.address, args.count, args.timeout,
                                        args.json)
        else:
            printed, skipped = read_serial(args.port, args.sensor, args.count, args.timeout,
                                           args.json, polled=args.polled)
    except Exception as exc:  # a technician's tool: say what failed, never a traceback
        print(f"cannot read the sensor: {exc}", file=sys.stderr)
        return 1
    what = ", ".join(f"{n} {k}" for k, n in sorted(skipped.items())) or "nothing"
    print(f"read {printed} frames; skipped {what}", file=sys.stderr)
    return 0 if printed >= args.count else 1


def _cmd_doctor(args: argparse.Namespace) -> int:
    from edge_agent import doctor

    checks = doctor.run(args.config, sensor_seconds=args.sensor_seconds)
    for c in checks:
        print(c.line(), flush=True)
    failed = [c for c in checks if c.verdict == "FAIL"]
    print("verdict: " + ("READY" if not failed else f"NOT READY ({len(failed)} failed)"))
    return 1 if failed else 0


def _cmd_install(args: argparse.Namespace) -> int:
    from edge_agent.service_unit import install

    args.config = args.config.absolute()  # systemd needs absolute paths
    args.unit_dir = args.unit_dir.absolute()
    writes_config = args.force or not args.config.exists()
    missing = [flag for flag, value in (("--device ID", args.device),
                                        ("--broker-host NAME", args.broker_host))
               if writes_config and not value]
    if missing:
        print(f"error: install-service writes a new {args.config}: pass {' and '.join(missing)}"
              " (the device id from `airgrid-admin device add`, the broker's name as this Pi "
              "reaches it), or install the device's bundle there first", file=sys.stderr)
        return 2
    try:
        done = install(unit_dir=args.unit_dir, config=args.config, device=args.device,
                       sensor=args.sensor, port=args.port, broker_host=args.broker_host,
                       broker_port=args.broker_port, user=args.user, force=args.force)
    except OSError as exc:
        print(f"cannot install: {exc} (run with sudo?)", file=sys.stderr)
        return 1
    for line in done:
        print(line)
    print(f"next: sudo useradd --system --groups dialout,i2c,gpio {args.user}; edit "
          f"{args.config}; airgrid-edge doctor --config {args.config}; "
          "sudo systemctl daemon-reload; sudo systemctl enable --now airgrid-edge")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(prog="airgrid-edge", description="airgrid edge agent")
    add_log_level(p)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="run the agent service",
        epilog=f"exit status: 0 stopped by SIGTERM/SIGINT; {EXIT_CONFIG} config error; "
               f"{EXIT_NOT_WRITABLE} the outbox file or its directory is not writable. A "
               "locked outbox, or one on a full disk, is waited for, not an exit.")
    run.add_argument("--config", type=Path, required=True, help="TOML config file")
    run.add_argument("--drain", type=float, default=5.0,
                     help="seconds to keep publishing the outbox on shutdown")
    run.set_defaults(func=_cmd_run)
    read = sub.add_parser("read", help="wiring check: print frames from a sensor")
    read.add_argument("--port", default="/dev/serial0", help="serial port")
    read.add_argument("--sensor", choices=sorted(SERIAL_PROTOCOLS), default="pms5003")
    read.add_argument("--i2c", action="store_true", help="a PMSA003I on the Pi's I2C bus")
    read.add_argument("--address", type=lambda s: int(s, 0), default=0x12,
                      help="I2C address (PMSA003I: 0x12)")
    read.add_argument("--polled", action="store_true",
                      help="ask for each frame (passive / query mode)")
    read.add_argument("--count", type=int, default=5, help="frames to print")
    read.add_argument("--timeout", type=float, default=60.0, help="give up after seconds")
    read.add_argument("--json", action="store_true", help="one JSON object per frame")
    read.set_defaults(func=_cmd_read)
    doc = sub.add_parser("doctor", help="check wiring, config, broker, clock, disk")
    doc.add_argument("--config", type=Path, required=True, help="TOML config file")
    doc.add_argument("--sensor-seconds", type=float, default=5.0,
                     help="how long to wait for the sensor")
    doc.set_defaults(func=_cmd_doctor)
    ins = sub.add_parser("install-service", help="write the systemd unit and a config")
    ins.add_argument("--unit-dir", type=Path, default=Path("/etc/systemd/system"))
    ins.add_argument("--config", type=Path, default=Path("/etc/airgrid/edge.toml"))
    ins.add_argument("--device", default=None,
                     help="device id for a new config (required unless --config exists)")
    ins.add_argument("--sensor", default="pms5003", choices=SENSOR_MODELS)
    ins.add_argument("--port", default="/dev/serial0")
    ins.add_argument("--broker-host", default=None,
                     help="broker name or address as the Pi reaches it (required unless "
                     "--config exists)")
    ins.add_argument("--broker-port", type=int, default=1883)
    ins.add_argument("--user", default="airgrid", help="system user the agent runs as")
    ins.add_argument("--force", action="store_true", help="overwrite an existing config")
    ins.set_defaults(func=_cmd_install)
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
