"""The report's own TOML (for the scheduled run): where to read, what to render, where to
deliver. Decoded by the one config mechanism (`airgrid.config`); `password` keys go through
`airgrid.secrets` (`password_file` / `password_env`, never in clear in a readable file).

    collector_config = "collector.toml"   # InfluxDB and the alert store are read from it
    county = "新县"
    formats = ["pdf", "html"]
    out_dir = "/var/lib/airgrid/reports"
    link_base = "https://reports.county.example/"
    [email]
    host = "smtp.county.example"
    username = "report"
    password_file = "/run/credentials/airgrid-report.service/smtp"
    sender = "airgrid@county.example"
    to = ["huanbao@county.example"]
    [bus]
    host = "127.0.0.1"
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta

from airgrid.config import Invalid, RelativeToFile, Section, load_file

Port = Annotated[int, Meta(gt=0, lt=65536, description="a TCP port")]
Format = Annotated[Literal["pdf", "png", "html"], Meta(description='"pdf", "png" or "html"')]


class Email(Section, frozen=True):
    host: str
    sender: str
    to: Annotated[tuple[str, ...], Meta(min_length=1, description="at least one address")]
    port: Port = 587
    starttls: bool = True  # RFC 3207; false only for a relay on loopback
    username: str | None = None
    password: str | None = None
    ca_file: Annotated[Path, RelativeToFile()] | None = None  # else the system's CAs
    timeout_s: Annotated[float, Meta(gt=0, description="seconds > 0")] = 30.0

    def problems(self) -> Iterator[Invalid]:
        if self.password and not self.username:
            yield Invalid("username", "a user name (a password is set)")


class Bus(Section, frozen=True):
    """The MQTT bus the county's systems listen on: a CloudEvent with the report's link."""

    host: str = "127.0.0.1"
    port: Port = 1883
    username: str | None = None
    password: str | None = None
    prefix: str = "airgrid"
    ca_file: Annotated[Path, RelativeToFile()] | None = None
    client_id: str = "airgrid-report"


class ReportConfig(Section, frozen=True):
    collector_config: Annotated[Path, RelativeToFile()]
    county: str = ""
    language: Annotated[Literal["zh", "en"], Meta(description='"zh" or "en"')] = "zh"
    standard: Annotated[str, Meta(description="an AQI standard id")] = "hj633-2026"
    formats: Annotated[tuple[Format, ...], Meta(min_length=1)] = ("pdf",)
    out_dir: Annotated[Path, RelativeToFile()] = Path("reports")
    link_base: str = ""  # where out_dir is served; the CloudEvent's link starts with it
    email: Email | None = None
    bus: Bus | None = None

    def problems(self) -> Iterator[Invalid]:
        from alert_rules import aqi

        if self.standard not in aqi.standards():
            yield Invalid("standard", f"one of {sorted(aqi.standards())}", self.standard)


def load(path: Path) -> ReportConfig:
    return load_file(path, ReportConfig)
