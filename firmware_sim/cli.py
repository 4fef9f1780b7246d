"""`airgrid-sim`: play sensor firmware on a pseudo-terminal."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from firmware_sim.pms5003_device import Pms5003Device
from firmware_sim.pty_port import PtyPort
from firmware_sim.scenarios import SCENARIOS, with_noise


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="airgrid-sim",
        description="Simulated PM sensors on pseudo-terminals: airgrid without hardware.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    pms = sub.add_parser("pms5003", help="a Plantower PMS5003 on a pseudo-terminal")
    pms.add_argument("--link", type=Path, required=True,
                     help="path of a symlink to the pseudo-terminal (what the agent opens)")
    pms.add_argument("--scenario", choices=sorted(SCENARIOS), default="clean")
    pms.add_argument("--baseline", type=float, default=25.0, help="PM2.5 baseline, µg/m³")
    pms.add_argument("--peak", type=float, default=220.0, help="episode peak PM2.5, µg/m³")
    pms.add_argument("--episode-start", type=float, default=15.0, help="seconds after start")
    pms.add_argument("--episode-length", type=float, default=30.0, help="seconds at the peak")
    pms.add_argument("--noise", type=float, default=2.0, help="Gaussian noise σ, µg/m³")
    pms.add_argument("--frame-period", type=float, default=1.0, help="seconds between frames")
    pms.add_argument("--warmup", type=float, default=30.0, help="seconds of zero frames at wake")
    pms.add_argument("--seconds", type=float, default=None, help="stop after this long")
    pms.add_argument("--seed", type=int, default=0)
    gsm = sub.add_parser("gsm", help="a GSM modem (AT commands, SMS) on a pseudo-terminal")
    gsm.add_argument("--link", type=Path, required=True,
                     help="path of a symlink to the pseudo-terminal (what the sender opens)")
    gsm.add_argument("--record", type=Path, default=None,
                     help="append each sent SMS as a JSON line to this file")
    gsm.add_argument("--seconds", type=float, default=None, help="stop after this long")
    return p


def _run_gsm(args: argparse.Namespace) -> int:
    """Sent SMS are recorded; a line `+8613800000000 收到 12` on stdin arrives as an SMS."""
    import threading

    from firmware_sim.gsm_modem import GsmModem

    port = PtyPort(args.link)
    modem = GsmModem(port, record=args.record)

    def _incoming() -> None:
        for line in sys.stdin:
            sender, _, text = line.strip().partition(" ")
            if sender and text:
                modem.deliver(sender, text)

    def _stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    threading.Thread(target=_incoming, daemon=True).start()
    print(f"gsm modem on {port.path} -> {port.slave_path}", flush=True)
    try:
        modem.run(args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        modem.stop()
        port.close()
        print(f"sms sent: {len(modem.sent)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "gsm":
        return _run_gsm(args)
    if args.scenario == "episode":
        profile = SCENARIOS["episode"](
            baseline=args.baseline, peak=args.peak,
            start=args.episode_start, length=args.episode_length,
        )
    else:
        profile = SCENARIOS["clean"](baseline=args.baseline)
    port = PtyPort(args.link)
    device = Pms5003Device(
        port=port, profile=with_noise(profile, args.noise, args.seed),
        frame_period_s=args.frame_period, warmup_s=args.warmup, seed=args.seed,
    )

    def _stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    print(f"pms5003 on {port.path} -> {port.slave_path}", flush=True)
    try:
        device.run(args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        port.close()
        print(f"frames sent: {device.frames_sent}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
