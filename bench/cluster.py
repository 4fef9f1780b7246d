"""Province bench: 3-node RabbitMQ, C collectors, N devices; faults mid-run.

    .venv/bin/python bench/cluster.py --devices 60 --collectors 2 --duration 40

Devices publish MQTT 3.1.1 QoS 1 through different nodes (each starts at another node and
fails over). At 30 % of the run one RabbitMQ node is killed with SIGKILL, at 45 % one
collector crashes (connection dropped unacknowledged, memory lost) and restarts, at 60 % a
collector is added. Every 4th device goes through a pollution episode across the move.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from orchestration.cluster_run import ClusterRun
from orchestration.rabbitmq import RabbitCluster
from orchestration.services import InfluxDB

# Run as `python bench/X.py`, Python puts bench/ first on sys.path instead of the repo
# root (`python -m bench.X` puts the root there): a bench that imports bench.* or tests.*
# swaps it back with this one line, the only path fix-up in bench/.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.record import emit

#: The keys of the last line (bench/record.py checks them; RESULTS.md lists them).
RESULT_KEYS = ("nodes", "collectors", "devices", "captured", "stored", "lost", "duplicates",
               "devices_split", "alerts_duplicated", "alerts_firing", "episode_devices_alerted",
               "redelivered_dropped", "devices_rebuilt", "failovers", "drained",
               "devices_wrong_count", "cluster_boot_s", "duration_s", "faults")

# Every simulated device lives in this process and holds ~6 descriptors (SQLite db, -wal,
# -shm, its socket, paho's wake-up socket pair); paho waits with select(), which cannot
# watch a descriptor >= 1024 (FD_SETSIZE), so devices past ~165 never connect. A real
# agent is one device per process.
MAX_DEVICES = 150


def diagnose(run: ClusterRun, rabbit: RabbitCluster) -> None:
    """What is stuck, on stderr: devices with readings left, and the queues."""
    for d in run.devices:
        if d.outbox.depth():
            p = d.publisher
            print(f"stuck {d.name}: depth {d.outbox.depth()} connected {p.connected} "
                  f"port {p.client.port} inflight {p.inflight()} failovers {p.failovers}",
                  file=sys.stderr)
    node = rabbit.running()[0]
    for args in (("list_queues", "name", "type", "messages", "consumers", "leader"),
                 ("list_connections", "name", "state", "protocol"),):
        try:
            print(node.ctl(*args)[-4000:], file=sys.stderr)
        except Exception as exc:  # diagnostics only
            print(f"rabbitmqctl {args[0]}: {exc}", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--devices", type=int, default=60)
    p.add_argument("--collectors", type=int, default=2)
    p.add_argument("--duration", type=float, default=40.0, help="seconds of capturing")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--no-faults", action="store_true", help="baseline: no kill, no crash, no add")
    args = p.parse_args()
    if args.devices > MAX_DEVICES:
        p.error(f"--devices: at most {MAX_DEVICES} in one process (see MAX_DEVICES)")
    logging.basicConfig(level=logging.ERROR)
    # pika logs every lost connection with a traceback; the node kill is deliberate.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="airgrid-cluster-") as tmp:
        work = Path(tmp)
        t_boot = time.monotonic()
        rabbit = RabbitCluster(work / "rabbit", size=args.nodes)
        influx = InfluxDB(work / "influx")
        rabbit.start()
        influx.start()
        boot_s = time.monotonic() - t_boot
        run = ClusterRun(work / "run", rabbit, influx, "bench", args.devices, args.collectors,
                         episode_every=4, forget_after_s=5.0)
        try:
            run.start()
            d = args.duration
            episode = (0.2 * d, 0.8 * d)
            steps = ({} if args.no_faults else
                     {0.3: "kill_node", 0.45: "crash_collector", 0.6: "add_collector"})
            done: set[str] = set()
            t0 = time.monotonic()
            while (t := time.monotonic() - t0) < d:
                run.capture_all(t, episode)
                for at, what in steps.items():
                    if t >= at * d and what not in done:
                        done.add(what)
                        if what == "kill_node":
                            rabbit.nodes[-1].kill()
                        elif what == "crash_collector":
                            run.collectors["c1"].crash()
                            run.collectors["c1"].start()
                        else:
                            run.add_collector()
                        print(f"{t:5.1f} s: {what}", file=sys.stderr)
                time.sleep(max(0.0, 1.0 - (time.monotonic() - t0 - t)))
            drained = run.drain(120)
            if not drained:
                diagnose(run, rabbit)
            time.sleep(3.0)
            stored, lost, wrong = run.stored()
            captured = sum(x.captured for x in run.devices)
            redelivered = sum(c.pipeline.counters.duplicates for c in run.collectors.values()
                              if c.pipeline)
            rebuilt = sum(c.handover.counters.rebuilt_devices for c in run.collectors.values()
                          if c.handover)
            result = {
                "nodes": args.nodes, "collectors": len(run.collectors), "devices": args.devices,
                "captured": captured, "stored": stored, "lost": lost,
                "duplicates": max(0, stored - captured), "devices_split": run.devices_split(),
                "alerts_duplicated": run.alerts_duplicated(),
                "alerts_firing": run.firing_events(),
                "episode_devices_alerted": "{}/{}".format(*run.episode_devices_alerted()),
                "redelivered_dropped": redelivered,
                "devices_rebuilt": rebuilt,
                "failovers": sum(x.publisher.failovers for x in run.devices),
                "drained": drained, "devices_wrong_count": wrong,
                "cluster_boot_s": round(boot_s, 1), "duration_s": d,
                "faults": not args.no_faults,
            }
        finally:
            run.stop()
            influx.stop()
            rabbit.stop()
    emit("cluster", result, RESULT_KEYS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
