"""Province bench: 3-node RabbitMQ, C collectors, N devices; faults mid-run.

    .venv/bin/python bench/cluster.py --devices 1000 --collectors 4
    .venv/bin/python bench/cluster.py --devices 10000 --collectors 4 --interval-s 30 --duration 300

Most devices are simulated by `orchestration.device_swarm` in a process of its own (one
asyncio loop, the agent's outbox contract, MQTT 3.1.1 QoS 1); `--agents` of them are the
real edge-agent `Outbox` + `Publisher`, so the agent's own code path is always in the run.
Every device captures one reading per `--interval-s` (60 s is a county's rate; shorter
speeds the run up), phases spread evenly, each device starting at another node and failing
over. Faults, at fractions of `--duration`: 30 % node 3 killed with SIGKILL, 45 %
collector c1 crashes (connection dropped unacknowledged, memory lost) and restarts, 60 %
collector c(C+1) added, 85 % a collector removed (unbound, drained, stopped, its queue
deleted; by default the one added at 60 %, see `--remove`). Every 4th device goes through
a pollution episode from 20 % to 80 %. The clock starts once the simulated devices are
connected. Resource figures for sizing (node and collector memory, connections per node,
InfluxDB series) are taken at 25 %. The last line is one JSON object; figures and their
meaning are in bench/notes/cluster.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from orchestration.cluster_run import ClusterRun, scaled_rules
from orchestration.rabbitmq import RabbitCluster
from orchestration.services import InfluxDB

# Run as `python bench/X.py`, Python puts bench/ first on sys.path (see bench/rules.py).
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.record import emit

#: The keys of the last line (bench/record.py checks them; RESULTS.md lists them).
RESULT_KEYS = ("nodes", "collectors", "devices", "agents", "interval_s", "captured", "stored",
               "lost", "duplicates", "devices_split", "split_kinds", "alerts_duplicated",
               "moved_on_add", "moved_on_add_ideal", "moved_on_remove",
               "moved_on_remove_ideal", "max_stall_s", "alerts_firing",
               "episode_devices_alerted", "devices_rebuilt", "swarm_connect_all_s",
               "swarm_failovers", "agent_failovers", "drained", "removed_collector_drained",
               "devices_wrong_count", "readings_per_s", "influx_series", "sizing",
               "cluster_boot_s", "duration_s", "wall_s", "load_end", "faults")

WEIGHT = 100  # points per collector on the hash ring: shares within a few % of 1/N


def rss_mb(pid: int | None) -> float:
    """Resident memory of a process, from /proc (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (its threads included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def connections_per_node(rabbit: RabbitCluster) -> list[int]:
    """Established TCP connections on each node's MQTT port (`ss`, from the kernel)."""
    out = []
    for n in rabbit.nodes:
        res = subprocess.run(["ss", "-Htn", "state", "established",
                              f"( sport = :{n.mqtt_port} )"],
                             capture_output=True, text=True, check=False)
        out.append(len(res.stdout.splitlines()))
    return out


def engine_bytes(run: ClusterRun) -> tuple[int, int]:
    """(bytes in the engines' numpy state, devices they hold), over live collectors."""
    total = held = 0
    for c in run.collectors.values():
        if c.app is None or c.app.pipeline is None:
            continue
        engine = c.app.handover.engine if c.app.handover else None
        if engine is None:
            continue
        fleet = engine.fleet
        held += len(fleet.index)
        for value in vars(fleet).values():
            if isinstance(value, np.ndarray):
                total += value.nbytes
            elif isinstance(value, dict):
                total += sum(v.nbytes for v in value.values() if isinstance(v, np.ndarray))
    return total, held


def series_cardinality(influx: InfluxDB, db: str) -> int:
    res: Any = influx.query("SHOW SERIES EXACT CARDINALITY", db=db)
    try:
        return sum(int(s["values"][0][0]) for r in res["results"] for s in r.get("series", []))
    except (KeyError, IndexError, TypeError, ValueError):
        return -1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--devices", type=int, default=1000, help="all devices, agents included")
    p.add_argument("--agents", type=int, default=12,
                   help="devices run by the real edge-agent publisher (the rest simulated)")
    p.add_argument("--collectors", type=int, default=4)
    p.add_argument("--interval-s", type=float, default=10.0,
                   help="seconds between a device's readings (60 = a county's rate)")
    p.add_argument("--duration", type=float, default=120.0, help="seconds of capturing")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--no-faults", action="store_true", help="baseline: no faults at all")
    p.add_argument("--remove", default=None, metavar="NAME",
                   help="collector to remove at 85 %% (default: the one added at 60 %%; "
                        "RabbitMQ's ring moves other devices too when it is not the last "
                        "bound, see docs/province.md)")
    args = p.parse_args()
    if args.agents > min(150, args.devices):
        p.error("--agents: at most 150 (paho's select() in one process) and <= --devices")
    if args.duration < 10 * args.interval_s:
        p.error("--duration must be at least 10 intervals: every device must report "
                "between two faults for moved devices to be counted")
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="airgrid-cluster-") as tmp:
        work = Path(tmp)
        t_boot = time.monotonic()
        rabbit = RabbitCluster(work / "rabbit", size=args.nodes)
        influx = InfluxDB(work / "influx")
        rabbit.start()
        influx.start()
        boot_s = time.monotonic() - t_boot
        # A device silent for 2 intervals has moved away (or is offline): forget it. It
        # must be shorter than the time between the add and the remove, or a device that
        # moves back finds its old owner still holding stale windows.
        run = ClusterRun(work / "run", rabbit, influx, "bench", args.agents, args.collectors,
                         episode_every=4, forget_after_s=2 * args.interval_s, weight=WEIGHT,
                         rules_file=scaled_rules(work, args.interval_s),
                         rebuild_lookback_s=max(60.0, 5 * args.interval_s))
        swarm: subprocess.Popen[bytes] | None = None
        sized: dict[str, Any] = {}
        try:
            idle_node_mb = [rss_mb(n.pid) for n in rabbit.nodes]
            run.start()
            sims = args.devices - args.agents
            d = args.duration
            swarm = run.start_swarm(sims, args.interval_s, d)
            t_connect = time.monotonic()
            ready = run.wait_swarm_ready()
            print(f"swarm connected: {ready} in {time.monotonic() - t_connect:.1f} s "
                  f"(load {load()})", file=sys.stderr, flush=True)
            steps = ({} if args.no_faults else
                     {0.25: "size", 0.3: "kill_node", 0.45: "crash_collector",
                      0.6: "add_collector", 0.85: "remove_collector"})
            if args.no_faults:
                steps = {0.25: "size"}
            at: dict[str, float] = {}  # monotonic
            at_wall: dict[str, float] = {}
            removed_drained = True
            cpu0, t_cpu0 = cpu_s(os.getpid()), time.monotonic()
            t0 = time.monotonic()
            next_capture = next_count = 0.0
            episode = (0.2 * d, 0.8 * d)
            while (t := time.monotonic() - t0) < d:
                if t >= next_capture:
                    run.capture_all(t, episode)
                    next_capture += args.interval_s
                for frac, what in steps.items():
                    if t < frac * d or what in at:
                        continue
                    if what == "size" and t < 0.29 * d and t >= next_count:
                        # figures with every device connected, if it comes before the kill
                        next_count = t + 2.0
                        if sum(connections_per_node(rabbit)) < 0.98 * args.devices:
                            continue
                    elif what == "size" and t < 0.29 * d:
                        continue
                    at[what], at_wall[what] = time.monotonic(), time.time()
                    if what == "size":
                        cpu1 = cpu_s(os.getpid())
                        sized = {
                            "at_s": round(t, 1), "load": load(),
                            "node_rss_mb": [round(rss_mb(n.pid)) for n in rabbit.nodes],
                            "node_idle_rss_mb": [round(x) for x in idle_node_mb],
                            "connections_per_node": connections_per_node(rabbit),
                            "bench_process_rss_mb": round(rss_mb(os.getpid())),
                            "bench_process_cpu_pct": round(
                                100 * (cpu1 - cpu0) / max(1e-9, time.monotonic() - t_cpu0)),
                            "swarm_rss_mb": round(rss_mb(swarm.pid)),
                            "swarm_cpu_s": round(cpu_s(swarm.pid), 1),
                            "influxd_rss_mb": round(rss_mb(influx.pid)),
                        }
                        eb, held = engine_bytes(run)
                        sized["engine_bytes_per_device"] = round(eb / max(1, held))
                        sized["engine_devices_held"] = held
                    elif what == "kill_node":
                        rabbit.nodes[-1].kill()
                    elif what == "crash_collector":
                        run.collectors["c1"].crash()
                        run.collectors["c1"].start()
                    elif what == "add_collector":
                        run.add_collector()
                    else:
                        removed = args.remove or f"c{args.collectors + 1}"
                        removed_drained = run.remove_collector(removed)
                    print(f"{t:6.1f} s: {what} (load {load()})", file=sys.stderr, flush=True)
                time.sleep(0.2)
            t_end = time.monotonic()
            agents_drained = run.drain(300)
            sim = run.finish_swarm()
            swarm_rc = sim["exit_code"]
            time.sleep(3.0)
            stored, lost, wrong = run.stored()
            kinds = run.split_kinds()
            split = run.split_devices()
            for kind, devs in kinds.items():
                for dev in devs[:3]:
                    print(f"split {kind} {dev}: {sorted(set(run.judged[dev]))}",
                          file=sys.stderr)
            captured = sum(run.captured_by_device().values())
            moved_add = moved_remove = None
            if "add_collector" in at_wall:
                # owner by the last reading before the add vs the first after it settled
                before = run.owners(before=at_wall["add_collector"])
                after = run.owners(after=at_wall["add_collector"] + args.interval_s)
                common = before.keys() & after.keys()
                moved_add = round(sum(before[k] != after[k] for k in common) / len(common), 4)
            if "remove_collector" in at_wall:
                before = run.owners(before=at_wall["remove_collector"])
                after = run.owners(after=at_wall["remove_collector"] + args.interval_s)
                common = before.keys() & after.keys()
                moved_remove = round(sum(before[k] != after[k] for k in common) / len(common),
                                     4)
            stall = None
            if "kill_node" in at:
                # the crashed collector's own restart is not the node kill's stall
                window = (at["kill_node"], at["crash_collector"] - 0.5
                          if "crash_collector" in at else t_end)
                stall = round(run.max_stall_s(*window), 2)
                print("stall per collector after the node kill:",
                      {k: round(v, 1) for k, v in run.stalls(*window).items()}, file=sys.stderr)
            with_fault_points = args.collectors + (0 if args.no_faults else 1)
            rebuilt = sum(c.handover.counters.rebuilt_devices for c in run.collectors.values()
                          if c.handover)
            result = {
                "nodes": args.nodes, "collectors": args.collectors, "devices": args.devices,
                "agents": args.agents, "interval_s": args.interval_s,
                "captured": captured, "stored": stored, "lost": lost,
                "duplicates": max(0, stored - captured), "devices_split": len(split),
                "split_kinds": {k: len(v) for k, v in kinds.items()},
                "alerts_duplicated": run.alerts_duplicated(),
                "moved_on_add": moved_add, "moved_on_add_ideal": round(1 / with_fault_points, 4),
                "moved_on_remove": moved_remove,
                "moved_on_remove_ideal": round(1 / with_fault_points, 4),
                "max_stall_s": stall,
                "alerts_firing": run.firing_events(),
                "episode_devices_alerted": "{}/{}".format(*run.episode_devices_alerted()),
                "devices_rebuilt": rebuilt,
                "swarm_connect_all_s": sim.get("connect_all_s"),
                "swarm_failovers": sim.get("failovers"),
                "agent_failovers": sum(x.publisher.failovers for x in run.devices),
                "drained": bool(agents_drained and sim.get("drained") and swarm_rc == 0),
                "removed_collector_drained": removed_drained,
                "devices_wrong_count": wrong,
                "readings_per_s": round(captured / d, 1),
                "influx_series": series_cardinality(influx, "bench"),
                "sizing": sized,
                "cluster_boot_s": round(boot_s, 1), "duration_s": d,
                "wall_s": round(time.monotonic() - t_all, 1), "load_end": load(),
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
