"""Thousands of simulated devices on one asyncio loop: the province's load generator.

Each device keeps the agent's contract (docs/province.md, DESIGN.md guarantee 1) without
the agent's process: a reading is *captured* once it is in the device's outbox (here in
memory, keyed by seq, per outbox epoch); it is published in `up` batches at QoS 1 and
deleted only when the broker's PUBACK for that batch arrives; after a reconnect whatever
is left is published again, oldest first. Connections are MQTT 3.1.1 with a persistent
session and a Last Will on the retained status topic, each device starting at another
broker and failing over in turn, as `edge_agent.publisher` does. Payloads are built by
`airgrid.wire.encode_up`, the one encoder.

Why aiomqtt and not one paho thread per device (what `edge_agent` does, one device per
process): paho's own loop waits in `select()`, which cannot watch a descriptor above
1024; aiomqtt drives paho through its external-loop API on the asyncio loop (epoll), so
one process holds thousands of connections. See docs/decisions.md.

    python -m orchestration.device_swarm --hosts 127.0.0.1:1883 --devices 2000 \\
        --interval-s 6 --duration 60 --result swarm.json

The last line printed is one JSON object (captured, acked, left in outboxes, reconnects).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import secrets
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from airgrid.wire import (
    DEFAULT_PREFIX,
    SCHEMA_VERSION,
    Reading,
    Status,
    UpBatch,
    encode_status,
    encode_up,
    status_topic,
    up_topic,
)

log = logging.getLogger(__name__)
_jitter = random.Random()


@dataclass(frozen=True)
class SwarmSettings:
    batch_max: int = 50  # readings per `up` message, as the agent's publish.batch_max
    keepalive_s: int = 60
    # For the CONNACK, as long as the agent waits for it (paho: until its keepalive). A
    # short wait turns a slow broker into a storm: the retry carries the same client id, so
    # the broker drops the attempt before it ("duplicate id") and the device starts over.
    # A PUBACK is waited for as long as the connection lives (a quorum queue electing a
    # new leader after a node loss delays PUBACKs by seconds; the agent waits too).
    ack_timeout_s: float = 60.0
    backoff_min_s: float = 0.5
    backoff_max_s: float = 4.0
    connecting_max: int = 100  # CONNECTs in flight at once: a reconnect storm is paced
    prefix: str = DEFAULT_PREFIX
    status: bool = True  # retained online status at connect, offline as the Last Will


def parse_host(host: str) -> tuple[str, int]:
    name, _, port = host.rpartition(":")
    return (name, int(port)) if name else (host, 1883)


@dataclass
class SimDevice:
    """One device: its outbox (seq → reading, oldest first) and what became of it."""

    name: str
    hosts: list[tuple[str, int]]
    epoch: str = field(default_factory=lambda: secrets.token_hex(8))
    boot: str = field(default_factory=lambda: secrets.token_hex(4))
    outbox: dict[int, Reading] = field(default_factory=dict)
    last_seq: int = 0
    captured: int = 0
    acked: int = 0  # readings whose batch was PUBACKed (and so deleted)
    published: int = 0  # `up` messages sent, repeats included
    connects: int = 0
    failovers: int = 0
    connected: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def capture(self, ts_ms: int, pm2_5: float, sensor: str = "pms5003") -> int:
        """Commit one reading to the outbox; from here it must reach storage."""
        self.last_seq += 1
        self.outbox[self.last_seq] = Reading(seq=self.last_seq, ts=ts_ms, sensor=sensor,
                                             pm2_5=pm2_5, clock_synced=True)
        self.captured += 1
        self.wake.set()
        return self.last_seq

    def depth(self) -> int:
        return len(self.outbox)

    def next_batch(self, batch_max: int) -> tuple[Reading, ...]:
        out = []
        for r in self.outbox.values():
            out.append(r)
            if len(out) >= batch_max:
                break
        return tuple(out)

    def delete(self, batch: Sequence[Reading]) -> None:
        """After the PUBACK only."""
        for r in batch:
            if self.outbox.pop(r.seq, None) is not None:
                self.acked += 1


OnPublish = Callable[[SimDevice, tuple[Reading, ...]], None]


class Swarm:
    """Runs every device's connection on the current event loop."""

    def __init__(self, devices: Sequence[SimDevice], settings: SwarmSettings | None = None,
                 on_publish: OnPublish | None = None) -> None:
        self.devices = list(devices)
        self.settings = settings or SwarmSettings()
        #: called as each `up` batch is handed to its client (a bench times readings from it)
        self.on_publish = on_publish
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._connecting: asyncio.Semaphore | None = None

    def start(self) -> None:
        self._connecting = asyncio.Semaphore(self.settings.connecting_max)
        self._tasks = [asyncio.create_task(self._run(d), name=d.name) for d in self.devices]

    async def stop(self, timeout_s: float = 15.0) -> bool:
        """Cancel every device; False if some did not finish within timeout_s (a
        connection stuck in paho's blocking connect on an overloaded broker)."""
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        _, pending = await asyncio.wait(self._tasks, timeout=timeout_s) if self._tasks else (
            set(), set())
        for d in self.devices:
            d.connected = False
        return not pending

    def depth(self) -> int:
        return sum(d.depth() for d in self.devices)

    def connected(self) -> int:
        return sum(d.connected for d in self.devices)

    async def drain(self, timeout_s: float) -> bool:
        """Until every outbox is empty (True) or the timeout (False)."""
        deadline = time.monotonic() + timeout_s
        while self.depth() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        return self.depth() == 0

    async def _run(self, d: SimDevice) -> None:
        s = self.settings
        assert self._connecting is not None
        backoff = s.backoff_min_s
        turn = 0
        while not self._stopping:
            host, port = d.hosts[turn % len(d.hosts)]
            try:
                async with self._connecting:
                    client = aiomqtt.Client(
                        host, port, identifier=d.name, clean_session=False,
                        protocol=aiomqtt.ProtocolVersion.V311, keepalive=s.keepalive_s,
                        timeout=s.ack_timeout_s, will=self._will(d),
                    )
                    await client.__aenter__()
                try:
                    d.connected = True
                    d.connects += 1
                    backoff = s.backoff_min_s
                    if s.status:
                        await client.publish(status_topic(d.name, s.prefix),
                                             encode_status(self._status(d, "online")),
                                             qos=1, retain=True)
                    await self._until_disconnected(client, self._pump(d, client))
                finally:
                    d.connected = False
                    with contextlib.suppress(aiomqtt.MqttError, OSError):
                        await client.__aexit__(None, None, None)
            except (aiomqtt.MqttError, OSError) as exc:
                log.debug("%s via %s:%d: %s", d.name, host, port, exc)
            if self._stopping:
                return
            # The next broker in the list, as the agent fails over.
            turn += 1
            d.failovers += 1
            # "equal jitter", as the agent: a reconnect storm after a node loss spreads out
            await asyncio.sleep(backoff / 2 + _jitter.random() * backoff / 2)
            backoff = min(s.backoff_max_s, backoff * 2)

    @staticmethod
    async def _until_disconnected(client: aiomqtt.Client, work: Coroutine[Any, Any, None]
                                  ) -> None:
        """Run `work` until the connection drops: an idle device notices at once, and a
        publish waiting for its PUBACK is abandoned (its readings stay in the outbox).
        aiomqtt's message iterator is what raises on a disconnect."""

        async def watch() -> None:
            async for _ in client.messages:
                pass

        tasks = [asyncio.create_task(work), asyncio.create_task(watch())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for t in done:
            t.result()  # MqttError from either side ends this connection

    async def _pump(self, d: SimDevice, client: aiomqtt.Client) -> None:
        """Publish the outbox oldest first, one batch in flight, delete on PUBACK."""
        s = self.settings
        topic = up_topic(d.name, s.prefix)
        while True:
            batch = d.next_batch(s.batch_max)
            if not batch:
                d.wake.clear()
                await d.wake.wait()
                continue
            payload = encode_up(UpBatch(v=SCHEMA_VERSION, device=d.name, boot=d.boot,
                                        readings=batch, epoch=d.epoch))
            d.published += 1
            if self.on_publish is not None:
                self.on_publish(d, batch)
            # Returns on PUBACK; raises MqttError when refused. A dead connection is found
            # by the keepalive and `_until_disconnected`, which abandons this wait.
            await client.publish(topic, payload, qos=1, timeout=math.inf)
            d.delete(batch)

    def _status(self, d: SimDevice, state: str) -> Status:
        return Status(v=SCHEMA_VERSION, device=d.name, state=state,  # type: ignore[arg-type]
                      agent_version="swarm", outbox_depth=d.depth())

    def _will(self, d: SimDevice) -> aiomqtt.Will | None:
        if not self.settings.status:
            return None
        return aiomqtt.Will(status_topic(d.name, self.settings.prefix),
                            encode_status(self._status(d, "offline")), qos=1, retain=True)


def make_devices(names: Sequence[str], hosts: Sequence[str]) -> list[SimDevice]:
    """Devices spread over the brokers: device i starts at broker i mod len(hosts)."""
    parsed = [parse_host(h) for h in hosts]
    return [SimDevice(n, parsed[i % len(parsed):] + parsed[:i % len(parsed)])
            for i, n in enumerate(names)]


def device_names(count: int, start: int = 0, prefix: str = "sim") -> list[str]:
    # Every 7th id is dotted: RabbitMQ turns `/` into `.` in routing keys, and a `.`
    # inside the device id must survive the way back.
    return [f"{prefix}.{i:05d}" if i % 7 == 3 else f"{prefix}-{i:05d}"
            for i in range(start, start + count)]


PmFor = Callable[[SimDevice, float], float]


async def capture_schedule(devices: Sequence[SimDevice], interval_s: float, duration_s: float,
                           pm_for: PmFor, on_second: Callable[[float], None] | None = None
                           ) -> None:
    """Each device captures once per interval, device i at phase i/N of it, so the load is
    even (a county's agents are not synchronised). `pm_for(device, t)` gives PM2.5 at t
    seconds into the run."""
    n = len(devices)
    t0 = time.monotonic()
    nxt = [interval_s * i / n for i in range(n)]
    last_second = -1
    while (t := time.monotonic() - t0) < duration_s:
        ts_ms = int(time.time() * 1000)
        for i, d in enumerate(devices):
            if nxt[i] <= t:
                d.capture(ts_ms, pm_for(d, t))
                nxt[i] += interval_s
        if on_second is not None and int(t) != last_second:
            last_second = int(t)
            on_second(t)
        await asyncio.sleep(0.05)


def episode_pm(devices: Sequence[SimDevice], every: int, start_s: float, end_s: float
               ) -> PmFor:
    """PM2.5 of 220 µg/m³ (heavily polluted: the demo rules fire) for every `every`-th
    device between start_s and end_s, a clean 25–34 µg/m³ otherwise."""
    index = {d.name: i for i, d in enumerate(devices)}

    def pm(d: SimDevice, t: float) -> float:
        i = index[d.name]
        high = every > 0 and i % every == 0 and start_s <= t < end_s
        return 220.0 if high else 25.0 + i % 10

    return pm


async def _main(args: argparse.Namespace) -> dict[str, object]:
    names = device_names(args.devices, args.first, args.name_prefix)
    devices = make_devices(names, args.hosts.split(","))
    swarm = Swarm(devices, SwarmSettings(batch_max=args.batch_max, status=not args.no_status,
                                         connecting_max=args.connecting_max))
    t_start = time.monotonic()
    swarm.start()
    connected_at = None
    while time.monotonic() - t_start < args.connect_timeout:
        if swarm.connected() == len(devices):
            connected_at = time.monotonic() - t_start
            break
        await asyncio.sleep(0.2)
    if args.ready:  # capturing starts now: whoever waits for the fleet may start its clock
        Path(args.ready).write_text(json.dumps({"connected": swarm.connected(),
                                                "connect_all_s": connected_at}))
    if args.go:  # several swarm processes start capturing together, when told
        deadline = time.monotonic() + args.connect_timeout
        while not Path(args.go).exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    d = args.duration
    pm = episode_pm(devices, args.episode_every, args.episode[0] * d, args.episode[1] * d)

    def progress(t: float) -> None:
        if args.progress:
            print(json.dumps({"t": round(t, 1), "at": round(time.time(), 1),
                              "connected": swarm.connected(), "depth": swarm.depth(),
                              "captured": sum(x.captured for x in devices),
                              "acked": sum(x.acked for x in devices)}),
                  file=sys.stderr, flush=True)

    await capture_schedule(devices, args.interval_s, d, pm, progress)
    drained = await swarm.drain(args.drain_timeout)
    result: dict[str, object] = {
        "devices": len(devices),
        "captured": sum(x.captured for x in devices),
        "acked": sum(x.acked for x in devices),
        "left_in_outboxes": swarm.depth(),
        "published": sum(x.published for x in devices),
        "connects": sum(x.connects for x in devices),
        "failovers": sum(x.failovers for x in devices),
        "connect_all_s": None if connected_at is None else round(connected_at, 1),
        "drained": drained,
    }
    if args.result:
        Path(args.result).write_text(json.dumps(
            {**result, "per_device": {x.name: x.captured for x in devices}}))
    if not await swarm.stop():
        # asyncio.run would wait for them forever: report and leave
        print(json.dumps(result), flush=True)
        log.error("some devices did not stop; exiting without waiting for them")
        os._exit(0 if drained else 1)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m orchestration.device_swarm",
        description="Simulated devices (agent contract: outbox, seq, QoS 1, replay after "
                    "reconnect) on one event loop, publishing to MQTT brokers.")
    p.add_argument("--hosts", required=True, help="host:port,host:port… (device i starts "
                   "at broker i mod count and fails over in turn)")
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--first", type=int, default=0, help="index of the first device id")
    p.add_argument("--name-prefix", default="sim")
    p.add_argument("--interval-s", type=float, default=60.0,
                   help="seconds between a device's readings (60 = a county's rate)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of capturing")
    p.add_argument("--episode-every", type=int, default=0,
                   help="every Nth device is polluted during --episode (0 = none)")
    p.add_argument("--episode", type=float, nargs=2, default=(0.2, 0.8),
                   metavar=("FROM", "TO"), help="fractions of --duration")
    p.add_argument("--batch-max", type=int, default=50)
    p.add_argument("--connecting-max", type=int, default=100)
    p.add_argument("--no-status", action="store_true", help="no retained status messages")
    p.add_argument("--connect-timeout", type=float, default=120.0)
    p.add_argument("--drain-timeout", type=float, default=120.0)
    p.add_argument("--result", help="write the result with per-device captured counts here")
    p.add_argument("--ready", help="write this file once connected, as capturing starts")
    p.add_argument("--go", help="once connected (and --ready written), wait for this file "
                   "to exist before capturing: several swarm processes start together")
    p.add_argument("--progress", action="store_true", help="a JSON line a second on stderr")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(_main(args))
    print(json.dumps(result), flush=True)
    return 0 if result["drained"] else 1


if __name__ == "__main__":
    sys.exit(main())
