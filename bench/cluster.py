"""Province bench: 3-node RabbitMQ, C collectors, N devices; faults mid-run.

    .venv/bin/python bench/cluster.py --devices 1000 --collectors 4
    .venv/bin/python bench/cluster.py --devices 10000 --collectors 4 --interval-s 30 --duration 300

Most devices are simulated by `orchestration.device_swarm` in processes of their own
(2,500 devices and one asyncio loop each, the agent's outbox contract, MQTT 3.1.1 QoS 1);
`--agents` of them are the real edge-agent `Outbox` + `Publisher`, so the agent's own code
path is always in the run.
Every device captures one reading per `--interval-s` (60 s is a county's rate; shorter
speeds the run up), phases spread evenly, each device starting at another node and failing
over. Faults, at fractions of `--duration`: 30 % node 3 killed with SIGKILL, 45 %
collector c1 crashes (connection dropped unacknowledged, memory lost) and restarts, 60 %
collector c(C+1) added, 85 % (and at least two intervals after the added one is
consuming) a collector removed (unbound, drained, stopped, its queues deleted; by default
the one added at 60 %, see `--remove`). A slow step delays the next, it never drops it.
Every 4th device goes through a pollution episode from 20 % to 80 %. The clock starts
once the simulated devices are connected. Resource figures for sizing (node and collector
memory, connections per node, InfluxDB series) are taken at 25 %. The last line is one
JSON object; figures and their meaning are in bench/notes/cluster.md.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TypedDict

import msgspec
import numpy as np

from orchestration.cluster_run import ClusterRun, scaled_rules
from orchestration.rabbitmq import RabbitCluster
from orchestration.services import InfluxDB, QuerySeries, ServiceError

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

#: Simulated devices per load-generator process: one asyncio loop serves a few thousand
#: connections (each wakes every second for its keepalive bookkeeping and publishes on
#: schedule); on a shared CPU one loop for 10,000 fell minutes behind its own schedule.
SWARM_DEVICES_PER_PROCESS = 2500

#: Quorum queues per collector: after the node kill each queue works through one `down`
#: per publisher it had on the lost node, each a pass over all its publishers; 16 queues
#: of ~600 publishers do a quarter of the work of 4 of ~2,500 (docs/province.md).
QUEUES_PER_COLLECTOR = 4

WEIGHT = 100  # points per collector on the hash ring: shares within a few % of 1/N


class Sizing(TypedDict, total=False):
    """Resource figures for sizing, taken once at 25 % (empty until then)."""

    at_s: float
    load: str
    node_rss_mb: list[int]
    node_idle_rss_mb: list[int]
    connections_per_node: list[int]
    bench_process_rss_mb: int
    bench_process_cpu_pct: int
    swarm_rss_mb: int
    swarm_cpu_s: float
    swarm_processes: int
    influxd_rss_mb: int
    engine_bytes_per_device: int
    engine_devices_held: int


class _Statement(msgspec.Struct):
    series: list[QuerySeries] = []


class _Answer(msgspec.Struct):
    """InfluxDB 1.x's /query answer, as far as the cardinality needs it."""

    results: list[_Statement]


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


def queue_leaders(rabbit: RabbitCluster) -> dict[str, str]:
    """Each quorum queue's leader node, asked of a live node ({} if it cannot answer)."""
    import json

    for node in rabbit.running():
        try:
            rows = json.loads(node.ctl("list_queues", "name", "leader", "--formatter", "json",
                                       timeout=30))
        except (ServiceError, ValueError, subprocess.TimeoutExpired):
            continue
        return {r["name"]: str(r.get("leader", "")) for r in rows}
    return {}


def busiest_sampler(seconds: int) -> str:
    """Erlang for `rabbitmqctl eval`: once a second for `seconds`, the processes with the
    longest mailboxes (over 50 messages), what they are and what they run; returns the
    non-empty samples as {unix second, [...]}. Started before the kill, because the CLI
    itself takes 10-25 s to start on a loaded machine."""
    sample = (
        "L = [{Q, P} || P <- erlang:processes(), "
        "{message_queue_len, Q} <- [erlang:process_info(P, message_queue_len)], Q > 50], "
        "[{Q, erlang:process_info(P, [registered_name, current_function])} "
        "|| {Q, P} <- lists:sublist(lists:reverse(lists:sort(L)), 4)]")
    return (f"F = fun() -> {sample} end, "
            f"R = [begin timer:sleep(1000), {{os:system_time(second), F()}} end "
            f"|| _ <- lists:seq(1, {seconds})], "
            "[X || {_, S} = X <- R, S =/= []].")


def sample_busiest(rabbit: RabbitCluster, nodes: list[int], seconds: int,
                   out: dict[str, str]) -> list[threading.Thread]:
    """One thread per node running `busiest_sampler` on it; answers land in `out`."""

    def one(i: int) -> None:
        node = rabbit.nodes[i]
        try:
            out[node.name] = node.ctl("eval", busiest_sampler(seconds), timeout=seconds + 120)
        except (ServiceError, subprocess.TimeoutExpired) as exc:
            out[node.name] = f"(no answer: {exc})"[:300]

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in nodes]
    for t in threads:
        t.start()
    return threads


def series_cardinality(influx: InfluxDB, db: str) -> int:
    """Series in `db`; -1 when the answer is not what InfluxDB gives."""
    try:
        answer = msgspec.convert(influx.query("SHOW SERIES EXACT CARDINALITY", db=db),
                                 _Answer)
        return sum(int(s.values[0][0]) for r in answer.results for s in r.series)
    except (msgspec.ValidationError, IndexError, TypeError, ValueError):
        return -1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--devices", type=int, default=1000, help="all devices, agents included")
    p.add_argument("--agents", type=int, default=12,
                   help="devices run by the real edge-agent publisher (the rest simulated)")
    p.add_argument("--collectors", type=int, default=4)
    p.add_argument("--interval-s", type=float, default=10.0,
                   help="seconds between a device's readings (60 = a county's rate)")
    p.add_argument("--duration", type=float, default=180.0, help="seconds of capturing")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--no-faults", action="store_true", help="baseline: no faults at all")
    p.add_argument("--remove", default=None, metavar="NAME",
                   help="collector to remove at 85 %% (default: the one added at 60 %%; "
                        "RabbitMQ's ring moves other devices too when it is not the last "
                        "bound, see docs/province.md)")
    p.add_argument("--queues-per-collector", type=int, default=QUEUES_PER_COLLECTOR,
                   metavar="K", help="quorum queues per collector (collector config "
                   "`amqp.queues_per_collector`; see docs/province.md)")
    p.add_argument("--swarm-processes", type=int, default=0, metavar="N",
                   help="processes for the simulated devices (default: one per "
                        f"{SWARM_DEVICES_PER_PROCESS:,} devices)")
    p.add_argument("--keep-logs", type=Path, default=None, metavar="DIR",
                   help="copy the nodes' logs and the swarm's log here before cleaning up")
    args = p.parse_args()
    if args.agents > min(150, args.devices):
        p.error("--agents: at most 150 (paho's select() in one process) and <= --devices")
    if args.duration < 10 * args.interval_s:
        p.error("--duration must be at least 10 intervals: every device must report "
                "between two faults for moved devices to be counted")
    logging.basicConfig(level=logging.ERROR,
                        format="%(asctime)s.%(msecs)03d %(threadName)s %(message)s",
                        datefmt="%H:%M:%S")
    # each collector's connection lost / consuming again, with its time (the stall)
    logging.getLogger("collector.amqp_ingest").setLevel(logging.INFO)
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
                         queues_per_collector=args.queues_per_collector,
                         rules_file=scaled_rules(work, args.interval_s),
                         rebuild_lookback_s=max(60.0, 5 * args.interval_s))
        swarms: list[subprocess.Popen[bytes]] = []
        sized: Sizing = {}
        try:
            idle_node_mb = [rss_mb(n.pid) for n in rabbit.nodes]
            run.start()
            sims = args.devices - args.agents
            d = args.duration
            swarms = run.start_swarm(sims, args.interval_s, d, processes=args.swarm_processes
                                     or -(-sims // SWARM_DEVICES_PER_PROCESS))
            t_connect = time.monotonic()
            ready = run.wait_swarm_ready()
            print(f"swarm connected: {ready} in {time.monotonic() - t_connect:.1f} s "
                  f"(load {load()})", file=sys.stderr, flush=True)
            steps = ({} if args.no_faults else
                     {0.25: "size", 0.3: "kill_node", 0.45: "crash_collector",
                      0.6: "add_collector", 0.85: "remove_collector"})
            if args.no_faults:
                steps = {0.25: "size"}
            leaders_at_kill: dict[str, str] = {}
            at: dict[str, float] = {}  # monotonic
            at_wall: dict[str, float] = {}
            removed_drained = True
            # the surviving nodes' busiest processes each second until 40 s after the kill
            busiest: dict[str, str] = {}
            samplers = ([] if args.no_faults else sample_busiest(
                rabbit, list(range(args.nodes - 1)), int(0.3 * args.duration) + 40, busiest))
            cpu0, t_cpu0 = cpu_s(os.getpid()), time.monotonic()
            t0 = time.monotonic()
            next_capture = next_count = 0.0
            episode = (0.2 * d, 0.8 * d)
            # Until the capture time is over and every fault has run: a step that took
            # long (a collector's start-up on a loaded cluster) delays the next ones, it
            # does not drop them.
            while (t := time.monotonic() - t0) < d or not set(steps.values()) <= at.keys():
                if t >= next_capture and t < d:
                    run.capture_all(t, episode)
                    next_capture += args.interval_s
                for frac, what in steps.items():
                    if t < frac * d or what in at:
                        continue
                    if what == "remove_collector" and "add_collector" in at and (
                            time.monotonic() < at["add_collector"] + 2 * args.interval_s):
                        continue  # two intervals on the ring with the added collector
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
                            "swarm_rss_mb": round(sum(rss_mb(x.pid) for x in swarms)),
                            "swarm_cpu_s": round(sum(cpu_s(x.pid) for x in swarms), 1),
                            "swarm_processes": len(swarms),
                            "influxd_rss_mb": round(rss_mb(influx.pid)),
                        }
                        # leaders stay put until the kill; asking takes seconds
                        threading.Thread(target=lambda: leaders_at_kill.update(
                            queue_leaders(rabbit)), daemon=True).start()
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
                        # the ring changes when its queues are bound, once it is up
                        at[what], at_wall[what] = time.monotonic(), time.time()
                    else:
                        removed = args.remove or f"c{args.collectors + 1}"
                        removed_drained = run.remove_collector(removed)
                    print(f"{t:6.1f} s: {what} at unix {time.time():.1f} (load {load()})",
                      file=sys.stderr, flush=True)
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
            for rule, dev, at_ms in run.duplicated_alerts()[:5]:
                events = sorted((e for e in run.alerts if isinstance(e.get("data"), dict)
                                 and e["data"].get("device") == dev),
                                key=lambda e: int(e["data"].get("at_ms", 0)))
                print(f"alert repeated {rule} {dev} at {at_ms}: "
                      f"{[(e['data']['state'], e['data']['at_ms']) for e in events]}; "
                      f"judged {sorted(set(run.judged[dev]))}; delivered "
                      f"{[(round(w, 1), c) for w, c in sorted(run.delivered[dev])]}",
                      file=sys.stderr)
            unalerted = run.unalerted_episode_devices()
            print(f"episode devices never alerted: {len(unalerted)}", file=sys.stderr)
            for dev in unalerted[:60]:
                print(f"never alerted {dev}:\n  " + "\n  ".join(run.story(dev)),
                      file=sys.stderr)
            print("take-overs' alerts per collector (replayed firing never announced, "
                  "announced and adopted):",
                  {n: (c.handover.counters.replayed_unannounced,
                       c.handover.counters.adopted_announced)
                   for n, c in run.collectors.items() if c.handover}, file=sys.stderr)
            print("firing held per collector for devices overdue (held, dropped as "
                  "moved, let out):",
                  {n: (c.handover.counters.held_firing, c.handover.counters.held_dropped,
                       c.handover.counters.held_released)
                   for n, c in run.collectors.items() if c.handover}, file=sys.stderr)
            print("forgotten devices per collector:",
                  {n: c.handover.counters.forgotten_devices for n, c in run.collectors.items()
                   if c.handover}, file=sys.stderr)
            captured = sum(run.captured_by_device().values())
            moved_add = moved_remove = None
            # Attributed by wall clock (see ClusterRun.moved_share): before = who judged
            # the last reading delivered before the change, after = who judged the first
            # reading read one interval after it.
            if "add_collector" in at_wall:
                share = run.moved_share(at_wall["add_collector"], args.interval_s)
                moved_add = None if share is None else round(share, 4)
                moved_to = {a for _b, a in run.moved_devices(
                    at_wall["add_collector"], args.interval_s).values()}
                print(f"moved on add went to {sorted(moved_to)}", file=sys.stderr)
            if "remove_collector" in at_wall:
                share = run.moved_share(at_wall["remove_collector"], args.interval_s)
                moved_remove = None if share is None else round(share, 4)
            stall = None
            if "kill_node" in at:
                # the crashed collector's own restart is not the node kill's stall
                window = (at["kill_node"], at["crash_collector"] - 0.5
                          if "crash_collector" in at else t_end)
                stall = round(run.max_stall_s(*window), 2)
                print("stall per collector after the node kill:",
                      {k: round(v, 1) for k, v in run.stalls(*window).items()}, file=sys.stderr)
                print("queue leaders before the kill:", leaders_at_kill, file=sys.stderr)
                print("queue leaders now:", queue_leaders(rabbit), file=sys.stderr)
                for sampler in samplers:
                    sampler.join(60)
                print(f"kill at unix {at_wall['kill_node']:.1f}; longest mailboxes by second:",
                      file=sys.stderr)
                for node_name, text in busiest.items():
                    print(f"{node_name}: {' '.join(text.split())[:6000]}", file=sys.stderr)
                k = at["kill_node"]
                for name, times in sorted(run.batch_times.items()):
                    near = [round(x - k, 2) for x in times if k - 2 <= x <= k + 40]
                    print(f"{name} batches from kill-2 s to kill+40 s (s after the kill): "
                          f"{near[:80]}", file=sys.stderr)
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
            if args.keep_logs is not None:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for n in rabbit.nodes:
                    with contextlib.suppress(OSError):
                        shutil.copy(n.log_path, args.keep_logs / f"node{n.index}.log")
                for log_file in run.workdir.glob("swarm-*.log"):
                    shutil.copy(log_file, args.keep_logs / log_file.name)
    emit("cluster", result, RESULT_KEYS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
