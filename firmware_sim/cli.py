"""`airgrid-sim`: play sensor firmware on a pseudo-terminal."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from airgrid.cli_support import cli_main, new_parser
from firmware_sim.device_loop import UartDevice
from firmware_sim.faults import FaultPlan
from firmware_sim.pms5003_device import Pms5003Device
from firmware_sim.pty_port import LinkInUse, PtyPort
from firmware_sim.scenarios import SCENARIOS, Profile, frozen_after, with_noise
from firmware_sim.sds011_device import Sds011Device


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--link", type=Path, required=True,
                   help="path of a symlink to the pseudo-terminal (what the agent opens)")
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="clean")
    p.add_argument("--baseline", type=float, default=25.0, help="PM2.5 baseline, µg/m³")
    p.add_argument("--peak", type=float, default=220.0, help="episode peak PM2.5, µg/m³")
    p.add_argument("--episode-start", type=float, default=15.0, help="seconds after start")
    p.add_argument("--episode-length", type=float, default=30.0, help="seconds at the peak")
    p.add_argument("--noise", type=float, default=2.0, help="Gaussian noise σ, µg/m³")
    p.add_argument("--freeze-at", type=float, default=None,
                   help="seconds after start: the sensor freezes (every frame repeats the "
                        "value measured then: a stalled fan or a hung measurement)")
    p.add_argument("--frame-period", type=float, default=1.0, help="seconds between frames")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--seed", type=int, default=0)
    f = p.add_argument_group("faults")
    f.add_argument("--garbage", type=float, default=0.0, help="P(random bytes before a frame)")
    f.add_argument("--bad-checksum", type=float, default=0.0, help="P(wrong checksum)")
    f.add_argument("--truncate", type=float, default=0.0, help="P(frame cut short)")
    f.add_argument("--acks", type=float, default=0.0, help="P(unsolicited ack before a frame)")
    f.add_argument("--silent-at", type=float, default=None, help="go silent after seconds")
    f.add_argument("--silent-for", type=float, default=None,
                   help="seconds of silence (default: until a wake or mode command)")
    f.add_argument("--vanish-at", type=float, default=None,
                   help="seconds after start: the port disappears")
    f.add_argument("--vanish-for", type=float, default=3.0, help="seconds it stays away")


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(prog="airgrid-sim",
        description="Simulated PM sensors on pseudo-terminals: airgrid without hardware.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    pms = sub.add_parser("pms5003", help="a Plantower PMS5003 on a pseudo-terminal")
    _common(pms)
    pms.add_argument("--warmup", type=float, default=30.0, help="seconds of zero frames at wake")
    pms.add_argument("--trap42", type=float, default=0.0,
                     help="P(a frame's checksum ends in 0x42)")
    sds = sub.add_parser("sds011", help="a Nova Fitness SDS011 on a pseudo-terminal")
    _common(sds)
    sds.add_argument("--device-id", type=lambda s: int(s, 0), default=0xA1B2)
    sds.add_argument("--minute", type=float, default=60.0,
                     help="seconds in a working-period minute (shorten for tests)")
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

    try:
        port = PtyPort(args.link)
    except LinkInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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


def _profile(args: argparse.Namespace) -> Profile:
    if args.scenario == "episode":
        profile = SCENARIOS["episode"](
            baseline=args.baseline, peak=args.peak,
            start=args.episode_start, length=args.episode_length,
        )
    else:
        profile = SCENARIOS["clean"](baseline=args.baseline)
    noisy = with_noise(profile, args.noise, args.seed)
    return noisy if args.freeze_at is None else frozen_after(noisy, args.freeze_at)


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "gsm":
        return _run_gsm(args)
    faults = FaultPlan(
        garbage=args.garbage, bad_checksum=args.bad_checksum, truncate=args.truncate,
        acks=args.acks, silent_at=args.silent_at, silent_for=args.silent_for,
        vanish_at=args.vanish_at, vanish_for=args.vanish_for, seed=args.seed,
    )
    try:
        port = PtyPort(args.link)
    except LinkInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    device: UartDevice
    if args.command == "pms5003":
        device = Pms5003Device(
            port=port, profile=_profile(args), frame_period_s=args.frame_period,
            warmup_s=args.warmup, seed=args.seed, faults=faults, trap42=args.trap42,
        )
    else:
        device = Sds011Device(
            port=port, profile=_profile(args), frame_period_s=args.frame_period,
            seed=args.seed, faults=faults, device_id=args.device_id, minute_s=args.minute,
        )

    def _stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    print(f"{args.command} on {port.path} -> {port.slave_path}", flush=True)
    try:
        device.run(args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        device.port.close()
        print(f"frames sent: {device.frames_sent}; faults: {faults.counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
