"""`airgrid`: the umbrella command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from airgrid.cli_support import cli_main, json_dumps, new_parser


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(prog="airgrid", description="airgrid PM2.5 monitoring")
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="run the whole system on simulated sensors",
        description="Starts Mosquitto and InfluxDB, N simulated PMS5003 sensors (the first "
        "goes through a pollution episode), an edge agent per sensor and the collector, "
        "and shows readings and alerts live.",
    )
    demo.add_argument("--devices", type=int, default=5, help="simulated sensors (default 5)")
    demo.add_argument("--seconds", type=float, default=None,
                      help="stop after this long (default: until Ctrl-C; 60 when headless)")
    demo.add_argument("--headless", action="store_true",
                      help="no live view; print one JSON summary as the last line")
    demo.add_argument("--keep", action="store_true",
                      help="keep services and data after the run until Enter is pressed")
    demo.add_argument("--workdir", type=Path, default=None,
                      help="where data and logs go (default: a temp dir, removed at exit)")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from orchestration.demo import run_demo

        if args.devices < 1:
            print("--devices must be at least 1", file=sys.stderr)
            return 2
        seconds = args.seconds if args.seconds is not None else (60.0 if args.headless else None)
        summary = run_demo(args.devices, seconds, args.headless, args.keep and not args.headless,
                           args.workdir)
        print(json_dumps(summary))
        return 0 if summary.get("lost") == 0 else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
