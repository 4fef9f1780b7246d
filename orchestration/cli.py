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
        "goes through a pollution episode, an alert for the grid worker; the second one's "
        "sensor freezes after 8 s, a sensor fault for the technician), an edge agent per "
        "sensor and the collector, and shows readings and alerts live.",
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
    stack = sub.add_parser(
        "stack", help="start, inspect or stop a simulated county that keeps running",
        description="A county you can look into: Mosquitto, InfluxDB, the collector with "
        "alerting, the default rules, a generated device registry (townships, grids, "
        "coordinates, grid workers and township officers) and N simulated sensors with "
        "their agents. Processes outlive the command; their PIDs are recorded in DIR.",
    )
    ssub = stack.add_subparsers(dest="action", required=True)
    s_up = ssub.add_parser("up", help="start the county; prints one JSON line with its "
                           "ports, URLs, files, devices and PIDs")
    s_up.add_argument("--devices", type=int, default=6,
                      help="simulated sensors (default 6; every third is in an episode)")
    s_up.add_argument("--dir", type=Path, required=True,
                      help="where configs, data, logs and the PID record go")
    for action, text in (("down", "stop exactly the processes `up` started in DIR"),
                         ("status", "which recorded processes still run (JSON)")):
        s = ssub.add_parser(action, help=text)
        s.add_argument("--dir", type=Path, required=True, help="the directory given to `up`")
    return p


def _stack(args: argparse.Namespace) -> int:
    from orchestration import stack_control

    try:
        if args.action == "up":
            if args.devices < 1:
                print("--devices must be at least 1", file=sys.stderr)
                return 2
            print(json_dumps(stack_control.up(args.dir.resolve(), args.devices)), flush=True)
        elif args.action == "down":
            print(json_dumps(stack_control.down(args.dir.resolve())))
        else:
            print(json_dumps(stack_control.status(args.dir.resolve())))
    except stack_control.StackControlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


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
    if args.command == "stack":
        return _stack(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
