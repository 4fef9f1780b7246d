"""`airgrid-admin`: the county CA, device credentials and the broker's configuration."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from airgrid.cli_support import cli_main, json_dumps, new_parser
from airgrid.config import ConfigError
from collector.errors import CollectorError
from orchestration.admin.broker_config import LOOPBACK, Listeners
from orchestration.admin.errors import AdminError
from orchestration.admin.home import AdminHome
from orchestration.admin.registry import ROLES

RELOAD_HINT = ("reload the broker to apply: kill -HUP $(pidof mosquitto), or "
               "`docker compose kill -s HUP mosquitto`")


def _home(args: argparse.Namespace) -> AdminHome:
    return AdminHome(args.home)


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})


def _cmd_ca_init(args: argparse.Namespace) -> int:
    if not args.broker_host:
        print("error: ca init: pass --broker-host NAME, the name or address the devices "
              "dial (e.g. --broker-host mqtt.county.example); it goes into every bundle and "
              "the broker's certificate. For a lab on one machine: --broker-host localhost",
              file=sys.stderr)
        return 2
    home = _home(args)
    home.init(args.name, args.broker_host, args.prefix)
    print(f"county CA created in {home.root}; CA certificate {home.ca_cert}")
    return 0


def _cmd_ca_crl(args: argparse.Namespace) -> int:
    home = _home(args)
    home.refresh_crl()
    print(f"CRL re-signed: {home.crl}; {RELOAD_HINT}")
    return 0


def _cmd_device_add(args: argparse.Namespace) -> int:
    home = _home(args)
    ca_host = home.registry().broker.host
    if args.broker_host is None and ca_host in LOOPBACK_HOSTS:
        print(f"error: device add {args.id}: the CA's broker host is {ca_host!r}, which on "
              "the device means the device itself. Pass --broker-host NAME (the broker's "
              "name or address as the device reaches it), or --broker-host localhost "
              "explicitly for a lab where agent and broker share one machine", file=sys.stderr)
        return 2
    issued = home.add_device(
        args.id, use_password=args.password, install_dir=args.install_dir,
        broker_host=args.broker_host, broker_port=args.broker_port,
        sensor_port=args.sensor_port, outbox_path=args.outbox, out=args.out,
    )
    # The password is in the bundle's edge.toml (0600); it is never printed.
    kind = "password" if args.password else "certificate"
    print(f"device {args.id}: {kind} issued; bundle in {issued.path}")
    if args.password:
        print(RELOAD_HINT)
    return 0


def _cmd_device_revoke(args: argparse.Namespace) -> int:
    d = _home(args).revoke_device(args.id)
    what = f"certificate serial {d.serial:x} added to the CRL" if d.serial else "password removed"
    print(f"device {args.id} revoked: {what}; {RELOAD_HINT}")
    return 0


def _cmd_device_list(args: argparse.Namespace) -> int:
    reg = _home(args).registry()
    rows = [{"device": k, "auth": v.auth, "added_at": v.added_at, "revoked_at": v.revoked_at,
             "fingerprint": v.fingerprint} for k, v in sorted(reg.devices.items())]
    if args.json:
        print(json_dumps(rows))
    else:
        for r in rows:
            state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
            print(f"{r['device']:<24} {r['auth']:<9} {state}")
    return 0


def _cmd_account_add(args: argparse.Namespace) -> int:
    issued = _home(args).add_account(args.name, args.role)
    print(f"account {args.name} ({args.role}) added; credentials in {issued.path}; "
          f"{RELOAD_HINT}")
    return 0


def _cmd_broker_config(args: argparse.Namespace) -> int:
    listeners = Listeners(tls_port=args.tls_port, port=args.port, bind=args.bind,
                          password_listener=not args.no_password_listener,
                          password_tls=args.password_tls, password_bind=args.password_bind)
    if listeners.plaintext_passwords_exposed():
        print(f"warning: the password listener on {args.password_bind}:{args.port} sends "
              "passwords in the clear; add --password-tls unless that network is trusted",
              file=sys.stderr)
    files = _home(args).write_broker_config(args.out, listeners, args.hostname,
                                            args.config_path, args.data_dir)
    print(f"broker config written to {args.out}: {', '.join(f.name for f in files)}")
    return 0


def _cmd_k8s_secrets(args: argparse.Namespace) -> int:
    from orchestration.admin.k8s_secrets import write_secrets

    files = write_secrets(_home(args), args.out, args.broker_dir, args.namespace,
                          args.collector_account)
    print(f"wrote {len(files)} Secret manifests (mode 0600) to {args.out}: "
          f"{', '.join(f.name for f in files)}; they hold keys and passwords: keep them out "
          "of version control")
    return 0


def _cmd_worker_link(args: argparse.Namespace) -> int:
    from airgrid.durations import parse_duration_ms
    from orchestration.admin import worker_links

    try:
        ttl = parse_duration_ms(args.ttl)
    except ValueError as exc:
        print(f"error: worker-link: --ttl {args.ttl!r}: {exc}", file=sys.stderr)
        return 2
    try:
        issued = worker_links.issue(args.config, args.worker, ttl, args.sms)
    except (CollectorError, ConfigError, ValueError) as exc:
        print(f"error: worker-link: {exc}", file=sys.stderr)
        return 2
    print(issued.url)
    w = issued.worker
    print(f"worker {w.id} ({w.name}, {w.role} {w.township} {w.grid}); valid until "
          f"{issued.expires_ms} (epoch ms)" + (f"; SMS {issued.sms_id} queued to {w.phone}"
                                               if issued.sms_id else ""), file=sys.stderr)
    return 0


def _cmd_worker_revoke(args: argparse.Namespace) -> int:
    from orchestration.admin import worker_links

    try:
        n = worker_links.revoke(args.config, args.worker)
    except (CollectorError, ConfigError) as exc:
        print(f"error: worker-revoke: {exc}", file=sys.stderr)
        return 2
    print(f"worker {args.worker}: {n} sign-in link(s) revoked")
    return 0


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(prog="airgrid-admin", description=__doc__)
    p.add_argument("--home", type=Path,
                   default=Path(os.environ.get("AIRGRID_ADMIN_HOME",
                                               Path.home() / ".airgrid-admin")),
                   help="admin home: CA, registry, bundles (env AIRGRID_ADMIN_HOME)")
    sub = p.add_subparsers(dest="command", required=True)

    ca = sub.add_parser("ca", help="the county CA").add_subparsers(dest="ca_cmd", required=True)
    init = ca.add_parser("init", help="create the county CA and the registry")
    init.add_argument("--name", default="county", help="county name, in the CA's subject")
    init.add_argument("--broker-host", default=None,
                      help="host name devices dial (put in bundles and the server "
                      "certificate); required, `localhost` only for a lab")
    init.add_argument("--prefix", default="airgrid", help="topic prefix")
    init.set_defaults(func=_cmd_ca_init)
    crl = ca.add_parser("crl", help="re-sign the CRL (it is valid for a year)")
    crl.set_defaults(func=_cmd_ca_crl)

    dev = sub.add_parser("device", help="device credentials").add_subparsers(
        dest="device_cmd", required=True)
    add = dev.add_parser("add", help="issue credentials and write the device's bundle")
    add.add_argument("id", help="device id (letters, digits, '_', '.', '-')")
    add.add_argument("--password", action="store_true",
                     help="a password for the password listener instead of a certificate")
    add.add_argument("--install-dir", default=None,
                     help="where the bundle is installed on the device (default /etc/airgrid)")
    add.add_argument("--broker-host", default=None, help="override the registry's broker host")
    add.add_argument("--broker-port", type=_port, default=None, help="override the port")
    add.add_argument("--sensor-port", default="/dev/serial0", help="sensor's serial port")
    add.add_argument("--outbox", default="/var/lib/airgrid/outbox.db", help="outbox path")
    add.add_argument("--out", type=Path, default=None,
                     help="bundle directory (default HOME/devices/ID)")
    add.set_defaults(func=_cmd_device_add)
    rev = dev.add_parser("revoke", help="revoke a device (CRL or password removal)")
    rev.add_argument("id")
    rev.set_defaults(func=_cmd_device_revoke)
    lst = dev.add_parser("list", help="the registry's devices")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=_cmd_device_list)

    acc = sub.add_parser("account", help="service accounts").add_subparsers(
        dest="account_cmd", required=True)
    aadd = acc.add_parser("add", help="a password account for the collector or an app")
    aadd.add_argument("name")
    aadd.add_argument("--role", choices=ROLES, required=True)
    aadd.set_defaults(func=_cmd_account_add)

    bc = sub.add_parser("broker-config", help="write the Mosquitto configuration")
    bc.add_argument("--out", type=Path, required=True, help="directory to write into")
    bc.add_argument("--port", type=_port, default=1883, help="password listener port")
    bc.add_argument("--tls-port", type=_port, default=8883, help="certificate listener port")
    bc.add_argument("--bind", default="0.0.0.0",
                    help="listen address of the device (certificate) listener")
    bc.add_argument("--password-bind", default=LOOPBACK,
                    help="listen address of the password listener (default: this host "
                         "only; to open it to a network, add --password-tls)")
    bc.add_argument("--hostname", action="append", default=[],
                    help="extra name or IP for the server certificate (repeatable)")
    bc.add_argument("--config-path", default=None,
                    help="where the broker sees --out (e.g. /mosquitto/config in a container)")
    bc.add_argument("--data-dir", default="/var/lib/mosquitto",
                    help="broker persistence directory")
    bc.add_argument("--no-password-listener", action="store_true",
                    help="certificate listener only")
    bc.add_argument("--password-tls", action="store_true",
                    help="TLS (server certificate) on the password listener too")
    bc.set_defaults(func=_cmd_broker_config)

    ks = sub.add_parser("k8s-secrets",
                        help="the broker config, CA and accounts as Kubernetes Secrets")
    ks.add_argument("--out", type=Path, required=True,
                    help="directory for the manifests, e.g. deploy/k8s/overlays/county/secrets")
    ks.add_argument("--broker-dir", type=Path, default=None,
                    help="broker-config's --out (default: the last one written)")
    ks.add_argument("--namespace", default="airgrid")
    ks.add_argument("--collector-account", default="collector",
                    help="the account whose password the collector uses")
    ks.set_defaults(func=_cmd_k8s_secrets)

    wl = sub.add_parser("worker-link", help="a grid worker's personal sign-in link for the "
                        "app (printed; with --sms also sent)")
    wl.add_argument("--config", type=Path, required=True, help="the collector's TOML")
    wl.add_argument("worker", help="worker id in the registry (`workers:`, or a device "
                    "contact's phone digits, e.g. 8613800000001)")
    wl.add_argument("--ttl", default="7d", help="how long the link works (default 7d)")
    wl.add_argument("--sms", default=None, metavar="CHANNEL",
                    help="also send the link by this [alerting.channels] SMS channel")
    wl.set_defaults(func=_cmd_worker_link)
    wr = sub.add_parser("worker-revoke", help="end every sign-in link of a worker")
    wr.add_argument("--config", type=Path, required=True, help="the collector's TOML")
    wr.add_argument("worker", help="worker id")
    wr.set_defaults(func=_cmd_worker_revoke)
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
