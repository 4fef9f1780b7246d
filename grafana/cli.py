"""`airgrid-grafana`: generate, push and inspect the airgrid dashboards."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from airgrid.cli_support import cli_main, json_dumps, new_parser
from grafana.errors import GrafanaError, PushRejected
from grafana.macros import MacroError


def _cmd_generate(args: argparse.Namespace) -> int:
    from grafana import generate

    if args.check:
        stale = generate.stale()
        if stale:
            print(f"stale: {', '.join(stale)} differ from the generator; run "
                  "`airgrid-grafana generate` and commit", file=sys.stderr)
            return 1
        print("dashboards up to date")
        return 0
    for path in generate.write():
        print(f"wrote {path.name}")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from grafana import generate
    from grafana.http_api import GrafanaApi
    from grafana.push import InfluxSettings, push

    token = args.token or os.environ.get("GRAFANA_TOKEN", "")
    if not token:
        raise PushRejected("no token: pass --token or set GRAFANA_TOKEN "
                           "(a Grafana service account token with Editor rights)")
    api = GrafanaApi(args.url, token)
    influx = InfluxSettings(args.influx_url, args.influx_db, args.influx_user,
                            os.environ.get("AIRGRID_INFLUX_PASSWORD", ""))
    report = push(api, influx, generate.load_committed(), args.folder_uid, args.folder_title)
    for kind, uid, what in report.actions:
        print(f"{kind:<10} {uid:<20} {what}")
    print(json_dumps({"changed": report.changed(), "total": len(report.actions)}))
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from grafana import generate, macros, queries

    start = queries.parse_time(args.time_from)
    end = queries.parse_time(args.time_to)
    given = macros.parse_assignments(args.var)
    out: list[dict[str, object]] = []
    boards = generate.load_committed()
    if args.dashboard and args.dashboard not in {b["uid"] for b in boards}:
        raise MacroError(f"--dashboard {args.dashboard!r}: expected one of "
                         f"{sorted(b['uid'] for b in boards)}")
    for dash in boards:
        if args.dashboard and dash["uid"] != args.dashboard:
            continue
        values, missing = queries.default_variables(dash, given)
        for name in missing:
            print(f"note: {dash['uid']}: ${name} has no All option; pass --var {name}=VALUE",
                  file=sys.stderr)
        for q in queries.rendered(dash, start, end, args.interval, values):
            if args.json:
                out.append({"dashboard": q.dashboard, "panel_id": q.panel_id,
                            "panel": q.panel, "ref_id": q.ref_id, "query": q.query})
            else:
                where = f"panel {q.panel_id}" if q.panel_id else "  "
                print(f"-- {q.dashboard} {where} {q.panel} [{q.ref_id}]\n{q.query};\n")
    if args.json:
        print(json_dumps(out, ensure_ascii=False, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(prog="airgrid-grafana", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("generate", help="write grafana/dashboards/*.json from the source")
    g.add_argument("--check", action="store_true",
                   help="only check that the committed JSON equals the generator's output")
    g.set_defaults(func=_cmd_generate)

    s = sub.add_parser("push", help="create or update the datasource and dashboards")
    s.add_argument("--url", required=True, help="Grafana base URL, e.g. http://grafana:3000")
    s.add_argument("--token", default="", help="service account token (or GRAFANA_TOKEN)")
    s.add_argument("--influx-url", default="http://127.0.0.1:8086",
                   help="InfluxDB URL as Grafana's server reaches it")
    s.add_argument("--influx-db", default="airgrid",
                   help="database (1.x) or DBRP-mapped bucket (2.x / 3.x)")
    s.add_argument("--influx-user", default="",
                   help="user; the password or token comes from AIRGRID_INFLUX_PASSWORD")
    s.add_argument("--folder-uid", default="airgrid")
    s.add_argument("--folder-title", default="Air quality (airgrid)")
    s.set_defaults(func=_cmd_push)

    r = sub.add_parser("render-queries",
                       help="print each panel's InfluxQL with Grafana's macros substituted")
    r.add_argument("--from", dest="time_from", default="now-6h")
    r.add_argument("--to", dest="time_to", default="now")
    r.add_argument("--interval", default="1m", help="what $__interval becomes")
    r.add_argument("--var", action="append", default=[], metavar="NAME=VALUE[,VALUE]",
                   help="a template variable's value (default: All)")
    r.add_argument("--dashboard", default="", help="only this dashboard uid")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_cmd_render)
    return p


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except GrafanaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
