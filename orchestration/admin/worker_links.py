"""`airgrid-admin worker-link` / `worker-revoke`: a grid worker's personal sign-in link.

Reads the collector's TOML (the alerting state database, the registry's workers, the
app's address), so the link is written where the running collector checks it. With
`--sms CHANNEL` the link also goes into the alert outbox for that SMS channel: the running
collector's delivery worker sends it within a second, with its retries and dead letters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from collector import config as collector_config
from collector.alerting.config import resolve
from collector.alerting.model import Message
from collector.alerting.store import Store
from collector.workorders.errors import UnknownWorker
from collector.workorders.links import SignInLinks
from collector.workorders.workers import Worker, from_registry


@dataclass(frozen=True)
class IssuedLink:
    worker: Worker
    url: str
    expires_ms: int
    sms_id: str | None


def _open(config: Path, worker_id: str) -> tuple[collector_config.CollectorConfig, Worker]:
    cfg = collector_config.load(config)
    if cfg.registry.file is None:
        raise UnknownWorker(f"{config}: no [registry] file, so no workers")
    workers = from_registry(cfg.registry.file)
    w = workers.get(worker_id)
    if w is None:
        known = ", ".join(sorted(workers)[:20]) or "none"
        raise UnknownWorker(f"no worker {worker_id!r} in {cfg.registry.file} (known: {known})")
    return cfg, w


def app_url(cfg: collector_config.CollectorConfig) -> str:
    app = cfg.alerting.app
    if app.public_url:
        return app.public_url.rstrip("/")
    if not app.http_port:
        raise UnknownWorker("[alerting.app] has no public_url and no fixed http_port: the "
                            "link would not say where the app is")
    return f"http://{app.http_host}:{app.http_port}"


def issue(config: Path, worker_id: str, ttl_ms: int, sms_channel: str | None = None
          ) -> IssuedLink:
    cfg, w = _open(config, worker_id)
    base = app_url(cfg)
    acfg = resolve(cfg.alerting)
    if sms_channel is not None and sms_channel not in acfg.channels:
        raise UnknownWorker(f"no channel {sms_channel!r} in [alerting.channels] (have: "
                            f"{', '.join(sorted(acfg.channels))})")
    now = int(time.time() * 1000)
    store = Store(acfg.state_db)
    try:
        token = SignInLinks(store.db, store.lock).issue(w.id, now, ttl_ms)
        url = f"{base}/app/?t={token}"
        sms_id = None
        if sms_channel is not None:
            days = max(1, round(ttl_ms / 86_400_000))
            text = f"{w.name}：空气质量工单登录链接（{days}天内有效，勿转发）{url}"
            sms_id = f"link:{w.id}:{now}"
            store.enqueue([Message(id=sms_id, channel=sms_channel, recipient=w.phone,
                                   kind="notification", text=text, event={
                                       "specversion": "1.0", "type": "org.airgrid.workorder.link",
                                       "source": "/airgrid/admin", "id": sms_id,
                                       "subject": w.id, "data": {"worker": w.id}})], now)
    finally:
        store.close()
    return IssuedLink(w, url, now + ttl_ms, sms_id)


def revoke(config: Path, worker_id: str) -> int:
    cfg = collector_config.load(config)
    store = Store(resolve(cfg.alerting).state_db)
    try:
        return SignInLinks(store.db, store.lock).revoke(worker_id, int(time.time() * 1000))
    finally:
        store.close()
