"""`airgrid-collector`: the county collector service."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from airgrid import sd_notify
from airgrid.cli_support import add_log_level, cli_main, new_parser


def _cmd_check_config(args: argparse.Namespace) -> int:
    from collector import app

    try:
        loaded = app.load(args.file)
    except app.LOAD_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file}: ok ({len(loaded.engine.rules)} rules, "
          f"{len(loaded.devices)} registered devices)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from collector import app

    try:
        loaded = app.load(args.config)
        app.configure_logging(loaded, args.log_level, args.log_format)
        collector = app.CollectorApp(loaded)
    except app.LOAD_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()
        collector.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    collector.start()
    # systemd (Type=notify, WatchdogSec): stuck = messages waiting and no progress since
    # the last check (a write retry during an InfluxDB outage counts as progress).
    progress = [-1]

    def _healthy() -> bool:
        c = collector.counters
        before, progress[0] = progress[0], c.messages + c.write_retries
        return collector.ingest.waiting() == 0 or before != progress[0]

    sd_notify.start_watchdog(_healthy, stop)
    sd_notify.notify("READY=1")
    collector.run()
    return 0


def _cmd_quarantine(args: argparse.Namespace) -> int:
    from collector import app, redrive

    try:
        cfg, store = redrive.open_store(args.config)
    except app.LOAD_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.action == "list":
            redrive.list_entries(store, args.all, args.json)
            return 0
        return redrive.redrive(cfg, store, args.dry_run)
    finally:
        store.close()


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(prog="airgrid-collector", description="airgrid county collector")
    add_log_level(p)
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
    q = sub.add_parser(
        "quarantine", help="list or re-drive rejected readings and messages",
        description="Rejected readings and messages are kept in quarantine.db beside the "
                    "state file. `list` shows the pending ones (id, time, kind, device, "
                    "reason, detail; a count per device and reason on stderr); `redrive` "
                    "publishes again every one the current validator accepts (after a "
                    "range limit or the registry was fixed) and marks it redriven.")
    q.add_argument("action", choices=("list", "redrive"))
    q.add_argument("--config", type=Path, required=True, help="the collector's TOML config")
    q.add_argument("--all", action="store_true", help="list: include redriven entries")
    q.add_argument("--json", action="store_true", help="list: one JSON object per line")
    q.add_argument("--dry-run", action="store_true",
                   help="redrive: say what would be sent, send nothing")
    q.set_defaults(func=_cmd_quarantine)
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "run":
        logging.basicConfig(level=args.log_level)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
