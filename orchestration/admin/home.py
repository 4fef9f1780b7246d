"""The admin home: CA, registry, bundles, and the broker files kept in step with them.

Layout (everything 0600, directories 0700):
    registry.json            devices, accounts, revoked serials, broker settings
    ca/ca.key ca/ca.crt ca/crl.pem
    devices/<id>/            the device's bundle (see orchestration.admin.bundle)
    accounts/<name>.toml     an account's `[broker]` username and password
After any change the broker's password file, accounts ACL and CRL are rewritten into the
directory `broker-config` last wrote to; the broker picks them up on SIGHUP.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from airgrid.wire import DEVICE_ID_RE
from orchestration.admin import broker_config, bundle, passwd
from orchestration.admin.ca import CertificateAuthority, create_ca, fingerprint
from orchestration.admin.errors import AdminError, NotInitialised
from orchestration.admin.files import PUBLIC_MODE, write_file
from orchestration.admin.registry import Account, Device, Registry, Role, now_iso


@dataclass(frozen=True)
class Issued:
    """What `device add` / `account add` produced: where, and a password if one was made."""

    path: Path
    password: str | None = None


class AdminHome:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.registry_path = root / "registry.json"
        self.ca_key = root / "ca" / "ca.key"
        self.ca_cert = root / "ca" / "ca.crt"
        self.crl = root / "ca" / "crl.pem"

    # --- state ----------------------------------------------------------------------

    def registry(self) -> Registry:
        if not self.registry_path.exists():
            raise NotInitialised(f"{self.root}: no CA here; run `airgrid-admin ca init` first")
        return Registry.load(self.registry_path)

    def ca(self) -> CertificateAuthority:
        try:
            return CertificateAuthority(self.ca_key.read_bytes(), self.ca_cert.read_bytes())
        except OSError as exc:
            raise NotInitialised(f"{self.root}: CA files unreadable ({exc})") from exc

    def _save(self, reg: Registry) -> None:
        reg.save(self.registry_path)
        self._write_crl(reg)
        self.sync_broker(reg)

    def _write_crl(self, reg: Registry) -> None:
        revoked = [(s, dt.datetime.fromisoformat(t)) for s, t in reg.revoked_serials]
        write_file(self.crl, self.ca().crl(revoked), PUBLIC_MODE)

    # --- CA -------------------------------------------------------------------------

    def init(self, county: str, broker_host: str, prefix: str = "airgrid") -> None:
        if self.registry_path.exists() or self.ca_key.exists():
            raise AdminError(f"{self.root}: a CA exists already; refusing to replace it")
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        (self.root / "ca").mkdir(mode=0o700, exist_ok=True)
        issued = create_ca(f"airgrid {county} device CA")
        write_file(self.ca_key, issued.key_pem)
        write_file(self.ca_cert, issued.cert_pem, PUBLIC_MODE)
        reg = Registry(county=county, prefix=prefix)
        reg.broker.host = broker_host
        self._save(reg)

    def refresh_crl(self) -> None:
        reg = self.registry()
        self._write_crl(reg)
        self.sync_broker(reg)

    # --- devices and accounts -------------------------------------------------------

    def add_device(
        self, device: str, *, use_password: bool = False, install_dir: str | None = None,
        broker_host: str | None = None, broker_port: int | None = None,
        sensor_port: str = "/dev/serial0", outbox_path: str = "/var/lib/airgrid/outbox.db",
        out: Path | None = None,
    ) -> Issued:
        if not DEVICE_ID_RE.match(device):
            raise AdminError(f"device id {device!r}: expected letters, digits, '_', '.', '-' "
                             "(first a letter or digit, at most 64)")
        reg = self.registry()
        b = reg.broker
        if use_password and not b.password_listener:
            raise AdminError("the broker config has no password listener "
                             "(broker-config --no-password-listener)")
        port = broker_port or (b.port if use_password else b.tls_port)
        spec = bundle.BundleSpec(
            device=device, broker_host=broker_host or b.host, broker_port=port,
            install_dir=install_dir or bundle.DEFAULT_INSTALL_DIR, sensor_port=sensor_port,
            outbox_path=outbox_path, prefix=reg.prefix,
        )
        (self.root / "devices").mkdir(mode=0o700, exist_ok=True)
        dest = out or self.root / "devices" / device
        ca = self.ca()
        if use_password:
            secret = passwd.new_password()
            reg.add_device(device, Device(auth="password", added_at=now_iso(),
                                          password_hash=passwd.hash_password(secret)))
            bundle.write_bundle(dest, spec, ca.cert_pem, password=secret, tls=b.password_tls)
            self._save(reg)
            return Issued(dest, secret)
        reg.add_device(device, Device(auth="cert", added_at=now_iso()))  # name check first
        leaf = ca.issue_device(device)
        d = reg.devices[device]
        d.serial, d.fingerprint = leaf.serial, fingerprint(leaf.cert_pem)
        d.not_after = leaf.not_after.isoformat()
        bundle.write_bundle(dest, spec, ca.cert_pem, key_pem=leaf.key_pem,
                            cert_pem=leaf.cert_pem)
        self._save(reg)
        return Issued(dest)

    def revoke_device(self, device: str) -> Device:
        reg = self.registry()
        d = reg.revoke_device(device)
        self._save(reg)
        return d

    def add_account(self, name: str, role: Role) -> Issued:
        if not DEVICE_ID_RE.match(name):
            raise AdminError(f"account name {name!r}: expected letters, digits, '_', '.', '-'")
        reg = self.registry()
        secret = passwd.new_password()
        reg.add_account(name, Account(role=role, password_hash=passwd.hash_password(secret),
                                      added_at=now_iso()))
        (self.root / "accounts").mkdir(mode=0o700, exist_ok=True)
        path = self.root / "accounts" / f"{name}.toml"
        write_file(path, (
            f"# airgrid broker account {name} ({role}); copy into the [broker] table of the\n"
            "# component's config. Keep mode 0600.\n"
            "[broker]\n"
            f"username = {json.dumps(name)}\n"
            f"password = {json.dumps(secret)}\n"
        ))
        self._save(reg)
        return Issued(path, secret)

    # --- broker ---------------------------------------------------------------------

    def write_broker_config(
        self, out: Path, listeners: broker_config.Listeners, hostnames: list[str],
        config_path: str | None = None, data_dir: str = "/var/lib/mosquitto",
    ) -> list[Path]:
        reg = self.registry()
        out.mkdir(parents=True, exist_ok=True)
        ca = self.ca()
        hosts = list(dict.fromkeys([reg.broker.host, *hostnames]))
        server = ca.issue_server(hosts)
        write_file(out / broker_config.SERVER_KEY, server.key_pem)
        write_file(out / broker_config.SERVER_CERT, server.cert_pem, PUBLIC_MODE)
        write_file(out / broker_config.CA_CERT, ca.cert_pem, PUBLIC_MODE)
        write_file(out / broker_config.ACL_DEVICES, broker_config.device_acl(reg.prefix))
        conf = broker_config.mosquitto_conf(listeners, config_path or str(out.resolve()),
                                            data_dir)
        write_file(out / broker_config.CONF, conf)
        b = reg.broker
        b.tls_port, b.port = listeners.tls_port, listeners.port
        b.password_listener, b.password_tls = listeners.password_listener, listeners.password_tls
        b.config_dir = str(out.resolve())
        self._save(reg)
        return sorted(out.iterdir())

    def sync_broker(self, reg: Registry) -> None:
        """Rewrite the files the registry decides into the last broker config dir."""
        if not reg.broker.config_dir:
            return
        out = Path(reg.broker.config_dir)
        if not out.is_dir():
            return
        write_file(out / broker_config.PASSWD, passwd.render(reg.password_entries()))
        write_file(out / broker_config.ACL_ACCOUNTS, broker_config.accounts_acl(reg))
        write_file(out / broker_config.CRL, self.crl.read_bytes(), PUBLIC_MODE)
