"""Shared pieces of the alerting tests: config, transitions, a real modem sim and receivers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alert_rules.transitions import Transition
from collector.alerting import config as alerting_config
from collector.alerting.channels.webhook_verify import HEADER, SignatureError, verify
from firmware_sim.gsm_modem import GsmModem
from firmware_sim.pty_port import PtyPort
from tests.support.http_fake import LoopbackServer, Request, Response

# The threshold rule most collector-with-alerting tests fire: one reading above 150 µg/m³.
PM25_HEAVY_RULE = """  - name: pm25_heavy
    kind: threshold
    field: pm2_5
    above: 150
    clear_below: 135
    for: 0s
"""
PM25_HEAVY_RULES = "rules:\n" + PM25_HEAVY_RULE

T0 = 1_764_050_000_000  # 2025-11-25 05:53:20 UTC, a fixed clock for decisions
WORKER = "+8613800000001"
WORKER_B = "+8613800000002"
OFFICER = "+8613900000009"
BUREAU = "+8613700000007"

CONTACTS: dict[str, Any] = {
    "devices": [
        {"device": "dev-a", "name": "城关镇政府楼顶", "township": "城关镇", "grid": "g1",
         "worker_name": "张三", "worker_phone": WORKER, "worker_app_id": "app-zhang"},
        {"device": "dev-b", "name": "城关小学", "township": "城关镇", "grid": "g1",
         "worker_name": "张三", "worker_phone": WORKER, "worker_app_id": "app-zhang"},
        {"device": "dev-c", "name": "河口村", "township": "河口镇", "grid": "g7",
         "worker_name": "李四", "worker_phone": WORKER_B, "worker_app_id": "app-li"},
    ],
    "officers": [
        {"role": "township_officer", "township": "城关镇", "name": "王镇长", "phone": OFFICER},
        {"role": "township_officer", "township": "河口镇", "name": "赵镇长", "phone": OFFICER},
        {"role": "county_bureau", "township": "*", "name": "县环保局", "phone": BUREAU},
    ],
}

#: One credential per person or app (tokens of at least 16 characters).
TOKEN_ZHANG = "token-zhang-san-0001"
TOKEN_LI = "token-li-si-0000002"
TOKEN_OFFICER = "token-wang-zhenzhang-3"
TOKEN_APP_ZHANG = "token-app-zhang-0004"
PRINCIPALS: list[dict[str, str]] = [
    {"name": "张三", "phone": WORKER, "token": TOKEN_ZHANG},
    {"name": "李四", "phone": "138 0000 0002", "token": TOKEN_LI},  # national form: same person
    {"name": "王镇长", "phone": OFFICER, "token": TOKEN_OFFICER},
    {"name": "张三的网格通", "app_id": "app-zhang", "token": TOKEN_APP_ZHANG},
]


def config(tmp_path: Path, **extra: Any) -> alerting_config.AlertingConfig:
    data: dict[str, Any] = {"state_db": str(tmp_path / "alerting.sqlite"),
                            "contacts": CONTACTS, "ack": {"mqtt": False}}
    data.update(extra)
    return alerting_config.from_dict(data, tmp_path / "collector.toml")


def sms_config(tmp_path: Path, port: str, **extra: Any) -> alerting_config.AlertingConfig:
    """Grid worker by SMS (grouped by grid), then township officer, then county bureau."""
    base: dict[str, Any] = {
        "event_channels": [],
        "channels": {"modem": {"type": "sms_modem", "port": port, "timeout_s": 5.0,
                               "backoff": "200ms", "max_attempts": 5}},
        "receivers": {
            "grid_worker": {"targets": [{"channel": "modem", "to": "grid_worker"}]},
            "township_officer": {"targets": [{"channel": "modem", "to": "township_officer"}]},
            "county_bureau": {"targets": [{"channel": "modem", "to": "county_bureau"}]},
        },
        "route": {"receiver": "grid_worker", "group_by": ["township", "grid"],
                  "group_wait": "0s", "group_interval": "1m", "repeat_interval": "4h"},
        "escalation": [{"after": "10m", "receivers": ["township_officer"]},
                       {"after": "20m", "receivers": ["county_bureau"]}],
    }
    base.update(extra)
    return config(tmp_path, **base)


def tr(device: str, state: str, value: float, at_ms: int, rule: str = "pm25_heavy",
       **labels: str) -> Transition:
    return Transition(rule=rule, subject=device, state=state, value=value,  # type: ignore[arg-type]
                      at_ms=at_ms, labels={"category": "pollution", **labels})


def sms_only(contact: dict[str, Any]) -> dict[str, Any]:
    """A device contact of CONTACTS without the worker's app: SMS is their only channel."""
    return {k: v for k, v in contact.items() if k != "worker_app_id"}


def _toml_value(v: str | int | float | bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    # a JSON string is a valid TOML basic string
    return json.dumps(v, ensure_ascii=False) if isinstance(v, str) else str(v)


def toml_entries(table: str, *entries: dict[str, str | int | float | bool]) -> str:
    """`[[table]]` entries of a collector config, one per mapping."""
    return "".join(f"[[{table}]]\n" + "".join(f"{k} = {_toml_value(v)}\n"
                                             for k, v in e.items()) for e in entries)


@contextmanager
def modem_sim(tmp_path: Path) -> Iterator[GsmModem]:
    """The simulated GSM modem on a pseudo-terminal, answering in a thread."""
    port = PtyPort(tmp_path / "ttyGSM")
    modem = GsmModem(port, record=tmp_path / "sms.jsonl")
    t = threading.Thread(target=modem.run, daemon=True)
    t.start()
    try:
        yield modem
    finally:
        modem.stop()
        t.join(2)
        port.close()


@dataclass
class Receiver:
    """An HTTP endpoint on loopback: verifies the webhook signature, answers per a script."""

    secret: bytes = b""
    statuses: list[int] = field(default_factory=list)  # answered in order, then 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    delay_s: float = 0.0  # a slow receiver
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: LoopbackServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{self.server.url}/hook"

    def start(self) -> None:
        self.server = LoopbackServer(self._respond)

    def _respond(self, request: Request) -> Response:
        if self.delay_s:
            time.sleep(self.delay_s)
        ok = True
        if self.secret:
            try:
                verify(self.secret, request.header(HEADER), request.body)
            except SignatureError:
                ok = False
        with self.lock:
            if not ok:
                self.bad_signatures += 1
            status = self.statuses.pop(0) if self.statuses else 200
            self.requests.append({"headers": request.headers, "body": request.body,
                                  "status": status, "at": time.monotonic()})
        return Response(401 if not ok else status, b"{}")

    def accepted(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests if r["status"] == 200]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
