"""The grid worker app's first load on a phone over 3G (target: under 200 kB transferred
and the alert list shown in under 3 s).

The app's own HTTP server (`collector.workorders.http_app.WorkerApp`) runs in this process
on the real alert manager and SQLite store, with 20 open alerts in the worker's grid;
Debian's Chromium (Playwright, phone viewport 390×844) opens the worker's sign-in link
with Chromium's network emulation (`Network.emulateNetworkConditions`) at the DevTools
presets "Fast 3G" (562.5 ms latency, 1.44 Mbit/s down, 675 kbit/s up) and "Slow 3G"
(2 s latency, 400 kbit/s both ways), and unthrottled as the reference, interleaved, each
in a fresh browser context (empty cache). Measured: bytes on the wire (CDP
`Network.loadingFinished.encodedDataLength`, headers included) and the time from
navigation start to the first order in the list. Tiles are off (no Tianditu key): the
basemap is the county's own key and Tianditu's servers, not this page's weight.
Last line: one JSON object.

    python bench/app_first_load.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from alert_rules.transitions import Transition
from collector.alerting import config as alerting_config
from collector.alerting.manager import AlertManager
from collector.alerting.store import Store
from collector.workorders.complaints import ComplaintIntake
from collector.workorders.http_app import WorkerApp
from collector.workorders.links import SignInLinks
from collector.workorders.orders import WorkOrders
from collector.workorders.workers import WorkerDirectory

# Run as `python bench/X.py`, Python puts bench/ first on sys.path (see bench/rules.py).
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.record import emit

#: The keys of the last line (bench/record.py checks them; RESULTS.md lists them).
RESULT_KEYS = ("bench", "runs", "load_average_1min", "cores", "orders_listed", "unthrottled",
               "fast_3g", "slow_3g", "fast_3g_within_target", "fast_3g_over_unthrottled")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Chrome DevTools' throttling presets (front_end/core/sdk/NetworkManager.ts): throughput in
# bytes per second, latency in ms
PROFILES: dict[str, dict[str, Any] | None] = {
    "unthrottled": None,
    "fast_3g": {"latency": 562.5, "downloadThroughput": 1.6e6 * 0.9 / 8,
                "uploadThroughput": 750e3 * 0.9 / 8},
    "slow_3g": {"latency": 2000.0, "downloadThroughput": 500e3 * 0.8 / 8,
                "uploadThroughput": 500e3 * 0.8 / 8},
}
WORKER = "+8613800000001"


def _county(work: Path) -> tuple[WorkerApp, str]:
    devices = "".join(
        f"  - {{id: b-{i:03d}, name: 监测点{i}, site: s{i}, township: 城关镇, grid: g1, "
        f"lat: {36.1 + i / 500}, lon: {117.2 + i / 400}, "
        f"contacts: [{{name: 张三, phone: \"{WORKER}\"}}]}}\n" for i in range(20))
    reg = work / "registry.yaml"
    reg.write_text("devices:\n" + devices, encoding="utf-8")
    cfg = alerting_config.from_dict({"state_db": str(work / "alerting.sqlite"),
                                     "event_channels": [], "ack": {"mqtt": False}})
    store = Store(cfg.state_db)
    from collector.registry import load

    registry = load(reg)
    from collector.registry import RegistryWatcher
    from collector.registry_contacts import RegistryContacts

    contacts = RegistryContacts(RegistryWatcher(reg), cfg.contacts)
    manager = AlertManager(cfg, store, contacts, {})
    orders = WorkOrders(manager, WorkerDirectory(reg), lambda lines: None, [])
    manager.on_event = orders.on_event
    now = int(time.time() * 1000)
    manager.handle([Transition(rule="pm25_heavy", subject=d, state="firing", value=180.0 + i,
                               at_ms=now - i * 60_000, labels={"category": "pollution"})
                    for i, d in enumerate(registry)], now)
    links = SignInLinks(store.db, store.lock)
    app = WorkerApp(orders, ComplaintIntake(orders, lambda: registry, None), links,
                    orders.workers, lambda: registry, None, "")
    app.start()
    token = links.issue(WORKER.lstrip("+"), now)
    return app, f"{app.url}/app/?t={token}"


def _load(browser: Any, url: str, profile: dict[str, Any] | None) -> tuple[int, float]:
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = ctx.new_page()
    cdp = ctx.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    if profile is not None:
        cdp.send("Network.emulateNetworkConditions", {"offline": False, **profile})
    sizes: list[float] = []
    cdp.on("Network.loadingFinished", lambda e: sizes.append(e["encodedDataLength"]))
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_selector("#orders button", timeout=60_000)
    elapsed = time.perf_counter() - t0
    page.wait_for_load_state("networkidle")
    ctx.close()
    return int(sum(sizes)), elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app, url = _county(Path(tmp))
        results: dict[str, list[tuple[int, float]]] = {k: [] for k in PROFILES}
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                for _ in range(args.runs):
                    for name, prof in PROFILES.items():  # interleaved
                        results[name].append(_load(browser, url, prof))
                browser.close()
        finally:
            app.stop()
    out: dict[str, Any] = {"bench": "app_first_load", "runs": args.runs,
                           "load_average_1min": round(os.getloadavg()[0], 1),
                           "cores": os.cpu_count(), "orders_listed": 20}
    for name, rs in results.items():
        kb = statistics.median(b for b, _ in rs) / 1000
        s = statistics.median(t for _, t in rs)
        out[name] = {"transferred_kB": round(kb, 1), "list_shown_s": round(s, 2)}
        print(f"{name:12s} {kb:6.1f} kB  list shown in {s:5.2f} s", file=sys.stderr)
    fast = out["fast_3g"]
    out["fast_3g_within_target"] = fast["transferred_kB"] < 200 and fast["list_shown_s"] < 3
    out["fast_3g_over_unthrottled"] = round(
        fast["list_shown_s"] / max(out["unthrottled"]["list_shown_s"], 1e-3), 1)
    emit("app_first_load", out, RESULT_KEYS)


if __name__ == "__main__":
    main()
