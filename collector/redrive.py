"""`airgrid-collector quarantine list|redrive`: what the collector set aside, and sending
it again once the cause is fixed (a range limit widened, a registry entry added).

Redrive publishes each quarantined reading that the current validator accepts as an
`up` message on its device's topic (with its original epoch and boot), with the
collector's own broker account, so it takes the ordinary path: validated, deduplicated
(a rejected reading's seq was never marked seen), stored, hourly sums, judged. A reading
still invalid stays quarantined. A whole message set aside as `poison` or
`processing_error` is published again as it was, its attempt count reset.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

from airgrid.wire import SCHEMA_VERSION, WireError, decode_up_readings, up_topic
from collector import config as collector_config
from collector.quarantine import Entry, Quarantine, message_key, path_beside

#: whole messages set aside because processing them failed: sent again as they were
RETRY_AS_IS = ("poison", "processing_error")


def open_store(config_file: Path) -> tuple[collector_config.CollectorConfig, Quarantine]:
    cfg = collector_config.load(config_file)
    return cfg, Quarantine(path_beside(cfg.state.file))


def list_entries(q: Quarantine, show_all: bool, as_json: bool) -> int:
    entries = q.entries(pending_only=not show_all)
    if as_json:
        for e in entries:
            print(json.dumps(e.as_json(), ensure_ascii=False))
        return len(entries)
    by: dict[tuple[str, str], int] = defaultdict(int)
    for e in entries:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.at_ms / 1000))
        state = "redriven" if e.redriven_ms else "pending"
        print(f"{e.id}\t{at}\t{state}\t{e.kind}\t{e.device or '-'}\t{e.reason}\t{e.detail}")
        by[(e.device, e.reason)] += 1
    for (device, reason), n in sorted(by.items()):
        print(f"# {device or '-'} {reason}: {n}", file=sys.stderr)
    return len(entries)


def plan(entries: list[Entry], prefix: str) -> tuple[list[tuple[str, bytes, list[int]]],
                                                     list[Entry]]:
    """(topic, payload, entry ids) to publish, and the entries still refused."""
    out: list[tuple[str, bytes, list[int]]] = []
    still: list[Entry] = []
    groups: dict[tuple[str, str, str], list[Entry]] = defaultdict(list)
    for e in entries:
        if e.kind == "reading":
            groups[(e.device, e.epoch, e.boot)].append(e)
        elif e.reason in RETRY_AS_IS and e.topic:
            out.append((e.topic, e.body, [e.id]))
        else:
            still.append(e)
    for (device, epoch, boot), group in groups.items():
        payload = (f'{{"v":{SCHEMA_VERSION},"device":{json.dumps(device)},'
                   f'"boot":{json.dumps(boot)},"readings":['
                   + ",".join(e.body.decode("utf-8", "replace") for e in group)
                   + f'],"epoch":{json.dumps(epoch)}}}').encode()
        try:
            _, bad = decode_up_readings(payload, device)
        except WireError:
            still += group
            continue
        bad_idx = {b.index for b in bad}
        ok = [e for i, e in enumerate(group) if i not in bad_idx]
        still += [e for i, e in enumerate(group) if i in bad_idx]
        if ok:
            body = (f'{{"v":{SCHEMA_VERSION},"device":{json.dumps(device)},'
                    f'"boot":{json.dumps(boot)},"readings":['
                    + ",".join(e.body.decode() for e in ok)
                    + f'],"epoch":{json.dumps(epoch)}}}').encode()
            out.append((up_topic(device, prefix), body, [e.id for e in ok]))
    return out, still


def redrive(cfg: collector_config.CollectorConfig, q: Quarantine, dry_run: bool) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    entries = q.entries()
    sends, still = plan(entries, cfg.broker.prefix)
    n = sum(len(ids) for _, _, ids in sends)
    print(f"{n} of {len(entries)} quarantined entries pass validation now; "
          f"{len(still)} stay quarantined")
    if dry_run or not sends:
        return 0
    b = cfg.broker
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"{b.client_id}-redrive", protocol=mqtt.MQTTv5)
    if b.username:
        client.username_pw_set(b.username, b.password)
    client.connect(b.host, b.port, keepalive=30)
    client.loop_start()
    failed = 0
    try:
        for topic, payload, ids in sends:
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(timeout=10)
            if not info.is_published():
                failed += len(ids)
                continue
            by_id = {e.id: e for e in entries}
            q.forget_attempts(message_key(topic, by_id[i].body) for i in ids)
            q.mark_redriven(ids)
    finally:
        client.loop_stop()
        client.disconnect()
    print(f"redriven {n - failed}; {failed} not acknowledged by the broker (still pending)")
    return 1 if failed else 0
