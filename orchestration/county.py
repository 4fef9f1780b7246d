"""A simulated county: devices placed in townships and grids, their registry and contacts,
and the collector tables that give it alerting, /metrics and the alert API.

`airgrid stack up` runs one; the registry is what a county's own would look like
(collector/examples/registry.yaml), generated so that any number of devices has a place.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from orchestration.services import free_port
from orchestration.stack import SimDevice


@dataclass(frozen=True)
class Township:
    name: str  # as people write it
    code: str  # short code used in grid ids
    lat: float
    lon: float
    officer: str
    officer_phone: str


#: Made-up townships of a made-up county (coordinates near 30.5 N, 114.3 E), with the
#: township officer (乡镇干部) each grid worker's alert escalates to.
TOWNSHIPS = (
    Township("城关镇", "CG", 30.512, 114.301, "王镇长", "+8613900000001"),
    Township("河西乡", "HX", 30.481, 114.252, "李乡长", "+8613900000002"),
    Township("东山镇", "DS", 30.547, 114.366, "赵镇长", "+8613900000003"),
)
GRIDS_PER_TOWNSHIP = 2
#: every third device (the first included) goes through a pollution episode
EPISODE_EVERY = 3
COUNTY_BUREAU = ("县生态环境局值班室", "+8613700000007")


def county_devices(n: int, prefix: str = "dev") -> list[SimDevice]:
    """n sensors; devices 1, 4, 7, … go through a 30-minute episode peaking well above
    150 µg/m³, long enough for the default rule (10-minute mean above 150 for 10 minutes)
    to fire about 20 minutes after it begins."""
    out = []
    for i in range(1, n + 1):
        episode = (i - 1) % EPISODE_EVERY == 0
        out.append(SimDevice(
            device=f"{prefix}-{i:03d}", scenario="episode" if episode else "clean",
            baseline=20.0 + 5 * (i % 4), peak=260.0, seed=i,
            episode_start_s=60.0 + 30 * (i % 5), episode_length_s=1800.0,
        ))
    return out


def placement(index: int) -> tuple[Township, str, float, float]:
    """(township, grid, lat, lon) of the index-th device (0-based): round robin over
    townships, then grids, a few hundred metres apart."""
    town = TOWNSHIPS[index % len(TOWNSHIPS)]
    k = index // len(TOWNSHIPS)
    grid = f"{town.code}-{k % GRIDS_PER_TOWNSHIP + 1:02d}"
    return town, grid, round(town.lat + 0.004 * (k % 7), 5), round(town.lon + 0.005 * (k // 7), 5)


def grid_worker(town: Township, grid: str) -> tuple[str, str]:
    """(name, phone) of a grid's worker (网格员): one per grid, a stable made-up number."""
    t = TOWNSHIPS.index(town)
    g = int(grid.rsplit("-", 1)[1])
    return f"{grid}网格员", f"+86138{t:02d}{g:02d}0{t * 10 + g:03d}"


def technician(town: Township) -> tuple[str, str]:
    """(name, phone) of the township's technician (设备维护员), who gets its devices'
    sensor faults: a stable made-up number."""
    t = TOWNSHIPS.index(town)
    return f"{town.name}设备维护员", f"+861360000{t:04d}"


def registry(devices: list[SimDevice]) -> dict[str, object]:
    """The device registry (collector/registry.py format): place, coordinates, sensor,
    contacts (the grid worker first, the alert's first recipient, and the township
    officer) and the technician who maintains the device."""
    entries = []
    for i, d in enumerate(devices):
        town, grid, lat, lon = placement(i)
        worker, phone = grid_worker(town, grid)
        entries.append({
            "id": d.device, "name": f"{town.name}{grid}监测点", "site": d.device,
            "township": town.name, "grid": grid, "lat": lat, "lon": lon, "sensor": "pms5003",
            "contacts": [{"name": worker, "phone": phone},
                         {"name": town.officer, "phone": town.officer_phone}],
            "technician": dict(zip(("name", "phone"), technician(town), strict=True)),
        })
    return {"devices": entries}


@dataclass
class CountyServices:
    """What a county collector has beyond ingest: registry, /metrics, alerting + API."""

    devices: list[SimDevice]
    metrics_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    app_port: int = field(default_factory=free_port)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api"

    @property
    def app_url(self) -> str:
        """The grid worker app (`airgrid-admin worker-link` gives each worker's link)."""
        return f"http://127.0.0.1:{self.app_port}/app/"

    @staticmethod
    def modem_link(workdir: Path) -> Path:
        """The simulated GSM modem's pseudo-terminal (`airgrid-sim gsm`), which people's
        alerts go to as SMS; what it sent is in `sms_record`."""
        return workdir / "tty" / "gsm-modem"

    @staticmethod
    def sms_record(workdir: Path) -> Path:
        return workdir / "logs" / "sms-sent.jsonl"

    def modem_args(self, workdir: Path) -> list[str]:
        """`python -m` arguments of the modem process."""
        return ["firmware_sim.cli", "gsm", "--link", str(self.modem_link(workdir)),
                "--record", str(self.sms_record(workdir))]

    def write_registry(self, workdir: Path) -> Path:
        path = workdir / "config" / "registry.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "# Generated by `airgrid stack up`: simulated devices in made-up townships.\n"
            + yaml.safe_dump(registry(self.devices), allow_unicode=True, sort_keys=False),
            encoding="utf-8",
        )
        return path

    def collector_tables(self, workdir: Path) -> str:
        """TOML appended to the stack's collector config."""
        reg = self.write_registry(workdir)
        state = workdir / "collector-state"
        officers = "".join(
            "[[alerting.contacts.officers]]\n"
            f'role = "township_officer"\ntownship = "{t.name}"\n'
            f'name = "{t.officer}"\nphone = "{t.officer_phone}"\n'
            for t in TOWNSHIPS
        )
        return (
            "[registry]\n"
            f'file = "{reg}"\n'
            "reload_check_s = 2.0\n"
            "[metrics]\n"
            f"port = {self.metrics_port}\n"
            "[spool]\n"
            f'dir = "{state / "spool"}"\n'
            "[state]\n"
            f'file = "{state / "state.db"}"\n'
            "[alerting]\n"
            f'state_db = "{state / "alerting.sqlite"}"\n'
            'event_channels = ["bus"]\n'
            "[alerting.ack]\n"
            f"http_port = {self.api_port}\n"
            # the printed API token is the county bureau's credential (it may acknowledge
            # any alert of the county); grid workers' own come with their sign-in links
            "[[alerting.ack.principals]]\n"
            f'name = "{COUNTY_BUREAU[0]}"\nphone = "{COUNTY_BUREAU[1]}"\n'
            f'token = "{self.api_token}"\n'
            "[alerting.channels.bus]\n"
            'type = "mqtt"\n'
            "[alerting.channels.modem]\n"
            'type = "sms_modem"\n'
            f'port = "{self.modem_link(workdir)}"\n'
            "[alerting.receivers.grid_worker]\n"
            'targets = [{ channel = "modem", to = "grid_worker" }]\n'
            "[alerting.receivers.township_officer]\n"
            'targets = [{ channel = "modem", to = "township_officer" }]\n'
            "[alerting.receivers.county_bureau]\n"
            'targets = [{ channel = "modem", to = "county_bureau" }]\n'
            "[alerting.receivers.maintenance]\n"
            'targets = [{ channel = "modem", to = "technician" }]\n'
            "[alerting.route]\n"
            'receiver = "grid_worker"\n'
            'group_by = ["township", "grid"]\n'
            'group_wait = "5s"\n'
            # sensor faults go to whoever maintains the device (docs/alerting.md)
            "[[alerting.route.routes]]\n"
            'match = { audience = "maintenance" }\n'
            'receiver = "maintenance"\n'
            # and hold back that device's "unusual here" alerts while open: one fault
            # sends one person
            "[[alerting.inhibit]]\n"
            'source = { audience = "maintenance" }\n'
            'target = { alertname = "~pm25_local_source|pm25_anomaly|pm25_spike" }\n'
            'equal = ["device"]\n'
            "[[alerting.escalation]]\n"
            'after = "10m"\n'
            'receivers = ["township_officer"]\n'
            "[[alerting.escalation]]\n"
            'after = "30m"\n'
            'receivers = ["county_bureau"]\n'
            f"{officers}"
            "[[alerting.contacts.officers]]\n"
            'role = "county_bureau"\ntownship = "*"\n'
            f'name = "{COUNTY_BUREAU[0]}"\nphone = "{COUNTY_BUREAU[1]}"\n'
            "[alerting.app]\n"
            f"http_port = {self.app_port}\n"
        )
