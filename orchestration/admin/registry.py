"""The county's registry of devices and service accounts (one JSON file in the admin home).

It is the source every generated broker file is rendered from: the password file, the
accounts' ACL and the CRL. Password hashes are kept here (never the passwords).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from orchestration.admin.errors import AdminError, Conflict, UnknownName
from orchestration.admin.files import write_file

Role = Literal["collector", "app"]
ROLES: tuple[Role, ...] = ("collector", "app")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


@dataclass
class Device:
    auth: Literal["cert", "password"]
    added_at: str
    serial: int | None = None
    fingerprint: str | None = None
    not_after: str | None = None
    password_hash: str | None = None
    revoked_at: str | None = None


@dataclass
class Account:
    role: Role
    password_hash: str
    added_at: str


@dataclass
class BrokerSettings:
    """What device bundles need to reach the broker, recorded by `ca init`/`broker-config`."""

    host: str = "localhost"
    tls_port: int = 8883
    port: int = 1883
    password_listener: bool = True
    password_tls: bool = False
    config_dir: str | None = None  # where `broker-config` last wrote; refreshed on changes


@dataclass
class Registry:
    county: str
    prefix: str = "airgrid"
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    devices: dict[str, Device] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    revoked_serials: list[tuple[int, str]] = field(default_factory=list)
    version: int = 1

    # --- persistence ----------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> Registry:
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
            return cls(
                county=raw["county"], prefix=raw["prefix"],
                broker=BrokerSettings(**raw["broker"]),
                devices={k: Device(**v) for k, v in raw["devices"].items()},
                accounts={k: Account(**v) for k, v in raw["accounts"].items()},
                revoked_serials=[(int(s), str(t)) for s, t in raw["revoked_serials"]],
                version=raw["version"],
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AdminError(f"{path}: not a readable registry ({exc})") from exc

    def save(self, path: Path) -> None:
        write_file(path, json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    # --- names ----------------------------------------------------------------------

    def _check_free(self, name: str) -> None:
        d = self.devices.get(name)
        if d is not None and d.revoked_at is None:
            raise Conflict(f"device {name!r} exists (revoke it first to issue new credentials)")
        if name in self.accounts:
            raise Conflict(f"{name!r} is a service account; a device cannot share its name")

    def add_device(self, name: str, device: Device) -> None:
        self._check_free(name)
        self.devices[name] = device

    def add_account(self, name: str, account: Account) -> None:
        if name in self.devices or name in self.accounts:
            raise Conflict(f"{name!r} is taken by a device or an account")
        self.accounts[name] = account

    def revoke_device(self, name: str) -> Device:
        d = self.devices.get(name)
        if d is None:
            raise UnknownName(f"no device {name!r} in the registry")
        if d.revoked_at is not None:
            raise Conflict(f"device {name!r} was revoked at {d.revoked_at}")
        d.revoked_at = now_iso()
        if d.serial is not None:
            self.revoked_serials.append((d.serial, d.revoked_at))
        d.password_hash = None
        return d

    def active_devices(self) -> dict[str, Device]:
        return {k: v for k, v in self.devices.items() if v.revoked_at is None}

    def password_entries(self) -> dict[str, str]:
        """{username: hash} for the password file: accounts and password devices in force."""
        out = {name: a.password_hash for name, a in self.accounts.items()}
        for name, d in self.active_devices().items():
            if d.password_hash:
                out[name] = d.password_hash
        return out
