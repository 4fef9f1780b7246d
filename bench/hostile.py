"""Hostile input against the real collector, Mosquitto and InfluxDB: what each probe is
expected to do and what it did. Each probe uses its own device; a good batch from a
bystander device follows all of them and must be stored. Last line: one JSON object
{"probes", "as_expected", "collector_alive", "measurements", "forged_points"}.

    .venv/bin/python bench/hostile.py
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from airgrid.wire import (
    SCHEMA_VERSION,
    Reading,
    Status,
    UpBatch,
    deadletter_topic,
    encode_status,
    encode_up,
    status_topic,
    up_topic,
)
from orchestration.services import InfluxDB, Mosquitto

# Run as `python bench/X.py`, Python puts bench/ first on sys.path instead of the repo
# root (`python -m bench.X` puts the root there): a bench that imports bench.* or tests.*
# swaps it back with this one line, the only path fix-up in bench/.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.record import emit
from tests.support.collector_process import AgentLikePublisher, Collector, TopicWatcher, count
from tests.support.wait import wait_for

#: The keys of the last line (bench/record.py checks them; RESULTS.md lists them).
RESULT_KEYS = ("probes", "as_expected", "collector_alive", "measurements", "forged_points",
               "status_dead_letters")


def reading(seq: int, ts: int, pm: float) -> Reading:
    return Reading(seq=seq, ts=ts, sensor="pms5003", pm2_5=pm, pm10=pm + 11.5)


def _up(device: str, readings: list[Reading], epoch: str = "") -> bytes:
    # the epoch spliced in by hand, so this also runs against a collector from before it
    body = encode_up(UpBatch(v=SCHEMA_VERSION, device=device, boot="b",
                             readings=tuple(readings)))
    if body.endswith(b',"epoch":""}'):
        body = body[:-len(b',"epoch":""}')] + b"}"
    return body[:-1] + f',"epoch":"{epoch}"}}'.encode() if epoch else body


def _raw(device: str, readings: str, extra: str = "") -> bytes:
    return (f'{{"v":1,"device":"{device}","boot":"b","readings":[{readings}]{extra}}}'
            ).encode()


def probes(now: int) -> list[tuple[str, str, list[bytes], int, list[str]]]:
    """(name, device, payloads sent in order to its up topic, readings expected stored,
    dead-letter reasons expected)."""
    r = reading
    rep = msgspec.structs.replace
    five = [r(i, now - 60_000 + i * 1000, 20.0) for i in range(1, 6)]
    one = f'{{"seq":1,"ts":{now - 5000},"sensor":"pms5003","pm2_5":5.0}}'
    return [
        ("seq = 2^63 in a batch of 5", "h-seq", [_up("h-seq", [*five[:4], rep(
            five[4], seq=2**63)])], 4, ["range"]),
        ("raw 16-bit pm10_cf1 = 2100, flagged out_of_range", "h-pms", [_up("h-pms", [
            rep(x, pm10_cf1=2100.0, flags=("out_of_range",)) for x in five])], 5, []),
        ("PMS5003T RH = 100.1, flagged", "h-rh", [_up("h-rh", [
            rep(x, humidity_pct=100.1, flags=("high_humidity",)) for x in five])], 5, []),
        ("pm2_5 = -1 in a batch of 5", "h-neg", [_up("h-neg", [rep(five[0], pm2_5=-1.0),
                                                               *five[1:]])], 4, ["range"]),
        ("pm2_5 = 1e999 (inf)", "h-inf", [_raw("h-inf", one.replace("5.0", "1e999"))],
         0, ["schema"]),
        ("pm2_5 = NaN literal", "h-nan", [_raw("h-nan", one.replace("5.0", "NaN"))],
         0, ["not_json"]),
        ("ts = 1970-01-02 (no RTC, no NTP)", "h-1970", [_up("h-1970", [
            rep(five[0], ts=86_400_000), *five[1:]])], 4, ["ts_too_old"]),
        ("ts 1 h in the future", "h-future", [_up("h-future", [
            rep(five[0], ts=now + 3_600_000), *five[1:]])], 4, ["future_ts"]),
        ("re-flashed outbox: seq 1..5 again, new epoch", "h-epoch", [
            _up("h-epoch", five, "e1"),
            _up("h-epoch", [rep(x, ts=x.ts - 30_000) for x in five], "e2")], 10, []),
        ("same seqs again without epoch (old agent)", "h-old", [
            _up("h-old", five), _up("h-old", five)], 5, []),
        ("line feed + forged point in sensor", "h-lf", [_up("h-lf", [rep(
            five[0], sensor="x\nreadings pm2_5=760 1700000000000")])], 1, []),
        ("sensor ending in a backslash", "h-bs", [_up("h-bs", [rep(five[0], sensor="p\\")])],
         1, []),
        ("U+2028, CR, NUL, U+0085 in sensor", "h-u2028", [_up("h-u2028", [rep(
            five[0], sensor="a\u2028b\rc\x00d\x85")])], 1, []),
        ("wrong type: pm2_5 = \"12\"", "h-type", [_raw("h-type", one.replace(
            '"pm2_5":5.0', '"pm2_5":"12"'))], 0, ["schema"]),
        ("unknown field in a reading", "h-unk", [_raw("h-unk", one.replace(
            '"pm2_5"', '"x":1,"pm2_5"'))], 0, ["schema"]),
        ("unknown field in the envelope", "h-env", [_raw("h-env", one, ',"x":1')],
         0, ["schema"]),
        ("readings is an object", "h-obj", [b'{"v":1,"device":"h-obj","boot":"b",'
                                            b'"readings":{}}'], 0, ["schema"]),
        ("oversize payload (300 KB)", "h-big", [_raw("h-big", one, ',"pad":"'
                                                   + "x" * 300_000 + '"')],
         0, ["too_large"]),
        ("huge batch: 1000 readings in one message", "h-huge", [_up("h-huge", [
            r(i, now - 2_000_000 + i * 1000, 9.0) for i in range(1, 1001)])], 1000, []),
        ("deep JSON (100,000 nested arrays)", "h-deep", [b"[" * 100_000 + b"]" * 100_000],
         0, ["schema"]),
        ("deep JSON inside a reading field", "h-deep2", [_raw("h-deep2", one.replace(
            "5.0", "[" * 50_000 + "]" * 50_000))], 0, ["too_deep"]),
        ("invalid UTF-8 inside a JSON string", "h-utf8",
         [b'{"v":1,"device":"h-utf8","boot":"\xff\xfe","readings":[]}'], 0, ["not_json"]),
        ("invalid UTF-8 in a reading's sensor", "h-utf8b", [_raw("h-utf8b", one.replace(
            "pms5003", "pmsXX")).replace(b"XX", b"\xff")], 0, ["not_json"]),
        ("payload names another device than the topic", "h-mis",
         [_up("h-other", five)], 0, ["device_mismatch"]),
        ("empty payload", "h-empty", [b""], 0, ["not_json"]),
        ("a good reading after every probe", "h-bystander", [_up("h-bystander", five)], 5,
         []),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (data, "
                    "logs) instead of removing it")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="airgrid-hostile-"))
    broker, influx = Mosquitto(tmp / "mosquitto"), InfluxDB(tmp / "influx")
    broker.start()
    influx.start()
    influx.create_database("hostile")
    collector = Collector(tmp / "collector", broker.port, influx.url, "hostile")
    listener = TopicWatcher(broker.port, deadletter_topic())
    try:
        collector.start()
    except TimeoutError:
        raise SystemExit(f"collector did not start: see {collector.log}") from None
    pub = AgentLikePublisher(broker.port, "hostile-bench")
    now = int(time.time() * 1000)
    plan = probes(now)
    try:
        for _, device, payloads, _, _ in plan:
            for p in payloads:
                pub.send(up_topic(device), p)
        pub.send(status_topic("h-status"), encode_status(Status(
            v=1, device="h-status", state="online", agent_version="1\nreadings x=1 1")))
        pub.send(status_topic("h-status2"), b"\xff")

        wait_for(lambda: count(influx, "hostile", "h-bystander") == 5, 60, step=0.2)
        time.sleep(1.0)
        dead = listener.decoded()
        rows = []
        ok = 0
        for name, device, _, want_n, want_reasons in plan:
            got_n = count(influx, "hostile", device)
            reasons = sorted(str(d["reason"]) for d in dead
                             if f"/dev/{device}/" in str(d["topic"]))
            good = got_n == want_n and reasons == sorted(want_reasons)
            ok += good
            rows.append((name, want_n, want_reasons, got_n, reasons, good))
        names = sorted(str(v[0]) for s in influx.series("SHOW MEASUREMENTS", db="hostile")
                       for v in s.values)
        forged = influx.series("SELECT count(pm2_5) FROM readings WHERE device=''",
                               db="hostile")
        alive = collector.proc is not None and collector.proc.poll() is None
        print("| input | expected stored | expected dead letter | observed stored | "
              "observed dead letter | |")
        print("|---|---|---|---|---|---|")
        for name, wn, wr, gn, gr, good in rows:
            print(f"| {name} | {wn} | {', '.join(wr) or '—'} | {gn} | "
                  f"{', '.join(gr) or '—'} | {'ok' if good else 'DIFFERS'} |")
        status_dead = sorted(str(d["reason"]) for d in dead if "h-status" in str(d["topic"]))
        print(f"status probes dead letters: {status_dead}")
        emit("hostile", {"probes": len(rows), "as_expected": ok, "collector_alive": alive,
                          "measurements": names, "forged_points": 0 if not forged else 1,
                          "status_dead_letters": status_dead}, RESULT_KEYS)
        return 0 if ok == len(rows) and alive and not forged else 1
    finally:
        pub.close()
        listener.close()
        collector.stop()
        influx.stop()
        broker.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
