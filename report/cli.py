"""`airgrid-report`: the daily and monthly air-quality report, and its scheduled delivery.

    airgrid-report daily --date 2026-11-25 --config collector.toml --out report.pdf
    airgrid-report monthly --month 2026-11 --config collector.toml --out month.pdf
    airgrid-report deliver --config report.toml          # yesterday; folder, e-mail, bus

Exit status: 0 done; 1 InfluxDB unreachable or a delivery route failed (the others ran);
2 bad arguments or config.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airgrid.cli_support import LOG_LEVELS, Parser, cli_main, json_dumps, version_string
from airgrid.config import ConfigError
from report import period as periods

log = logging.getLogger("airgrid.report")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _month(text: str) -> tuple[int, int]:
    try:
        d = dt.datetime.strptime(text, "%Y-%m")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a month YYYY-MM, got {text!r}") from None
    return d.year, d.month


def _level(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return text.upper()


def build_parser() -> argparse.ArgumentParser:
    def manners(default: object) -> Parser:
        parent = Parser(add_help=False)
        parent.add_argument("--version", action="version",
                            version=version_string("airgrid-report"))
        parent.add_argument("--log-level", type=_level, default=default,
                            help=f"one of {', '.join(LOG_LEVELS)} (default WARNING)")
        return parent

    # A subcommand's default would overwrite `--log-level` given before the subcommand.
    common = manners(argparse.SUPPRESS)
    p = Parser(
        prog="airgrid-report", parents=[manners("WARNING")],
        description="空气质量日报/月报: the county's daily and monthly air-quality report "
                    "(HJ 633-2026 AQI) from what the collector stores")
    sub = p.add_subparsers(dest="command", required=True)

    def render_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", type=Path, required=True,
                        help="the collector's TOML (its [influx] and [alerting] are read)")
        sp.add_argument("--out", type=Path, required=True, help="file to write")
        sp.add_argument("--format", choices=("pdf", "png", "html"), default=None,
                        help="default: from the --out suffix, else pdf")
        sp.add_argument("--lang", choices=("zh", "en"), default="zh", help="default zh")
        sp.add_argument("--county", default="", help="county name in the title")
        sp.add_argument("--standard", default="hj633-2026", help="AQI standard id")

    d = sub.add_parser("daily", parents=[common], help="one day's report",
                       description="Render one day's report (Beijing-time day).")
    d.add_argument("--date", type=_date, default=None,
                   help="YYYY-MM-DD (default: yesterday, Beijing time)")
    render_args(d)
    m = sub.add_parser("monthly", parents=[common], help="one month's report, with the "
                       "AQI calendar", description="Render one month's report.")
    m.add_argument("--month", type=_month, required=True, help="YYYY-MM")
    render_args(m)
    s = sub.add_parser("deliver", parents=[common],
                       help="render and deliver per a report config (the 07:00 timer)",
                       description="Render the report in every configured format into "
                       "out_dir, then e-mail it and announce it on the MQTT bus.")
    s.add_argument("--config", type=Path, required=True, help="the report's TOML")
    when = s.add_mutually_exclusive_group()
    when.add_argument("--date", type=_date, default=None, help="default: yesterday")
    when.add_argument("--month", type=_month, default=None, help="a monthly report")
    return p


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    suffix = args.out.suffix.lower().lstrip(".")
    return suffix if suffix in ("pdf", "png", "html") else "pdf"


def _render(args: argparse.Namespace, p: periods.Period) -> int:
    from report import build, render

    r = build.build(args.config, p, args.standard)
    files = render.write(r, _format(args), args.out, args.lang, args.county,
                         build.colors(args.standard))
    _emit({"period": p.first.isoformat(), "kind": p.kind, "has_data": r.has_data,
           "files": [str(f) for f in files]})
    return 0


def _deliver(args: argparse.Namespace) -> int:
    from report import build, delivery, render, summary
    from report import config as report_config
    from report.errors import DeliveryFailed

    cfg = report_config.load(args.config)
    if args.month:
        p = periods.month(*args.month)
        stem = f"airgrid-report-{p.first:%Y-%m}"
    else:
        p = periods.day(args.date or periods.yesterday())
        stem = f"airgrid-report-{p.first.isoformat()}"
    r = build.build(cfg.collector_config, p, cfg.standard)
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="airgrid-report-") as tmp:
        rendered: list[Path] = []
        for fmt in cfg.formats:
            rendered += render.write(r, fmt, Path(tmp) / f"{stem}.{fmt}", cfg.language,
                                     cfg.county, build.colors(cfg.standard))
        sub = f"{p.first:%Y}/{p.kind}"
        files = delivery.to_folder(rendered, cfg.out_dir, sub)
    lines = summary.sentences(r, cfg.language)
    title = f"{render.title(r, cfg.language, cfg.county)} {p.label(cfg.language)}"
    base = cfg.link_base.rstrip("/")
    links = [f"{base}/{sub}/{f.name}" if base else f.resolve().as_uri() for f in files]
    done: dict[str, Any] = {"period": p.first.isoformat(), "kind": p.kind,
                            "has_data": r.has_data, "files": [str(f) for f in files]}
    if cfg.email is not None:
        try:
            delivery.by_email(cfg.email, title, "\n".join([*lines, "", *links]), files)
            done["email"] = list(cfg.email.to)
        except DeliveryFailed as exc:
            log.error("%s", exc)
            failed.append("email")
    if cfg.bus is not None:
        try:
            event = delivery.cloud_event(p.kind, title, p.first.isoformat()
                                         if p.kind == "daily" else f"{p.first:%Y-%m}",
                                         links, lines)
            done["bus"] = delivery.on_bus(cfg.bus, p.kind, event)
        except DeliveryFailed as exc:
            log.error("%s", exc)
            failed.append("bus")
    done["failed"] = failed
    _emit(done)
    return 1 if failed else 0


def _emit(obj: dict[str, Any]) -> None:
    print(json_dumps(obj), flush=True)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    from collector.registry import RegistryError
    from report.errors import ReportError, SourceUnavailable

    try:
        if args.command == "deliver":
            return _deliver(args)
        if args.command == "monthly":
            return _render(args, periods.month(*args.month))
        return _render(args, periods.day(args.date or periods.yesterday()))
    except (ConfigError, RegistryError) as exc:
        print(f"airgrid-report: config error:\n{exc}", file=sys.stderr)
        return 2
    except SourceUnavailable as exc:
        print(f"airgrid-report: {exc}", file=sys.stderr)
        return 1
    except ReportError as exc:
        print(f"airgrid-report: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
