"""A RabbitMQ cluster of real nodes on loopback, for the cluster tests, docs and bench.

Everything lives in one temp dir: its own epmd on its own port, its own Erlang cookie
(`HOME`), and per node its own AMQP, MQTT and distribution ports, Mnesia and log
directories, enabled-plugins file and `rabbitmq.conf`. The first node boots alone; the
others boot blank with `classic_config` peer discovery naming it, so they join at first
boot without `stop_app`/`join_cluster`. Processes are stopped by PID, never by name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

from orchestration.services import ServiceError, free_port

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
PLUGINS = ("rabbitmq_mqtt", "rabbitmq_consistent_hash_exchange")
# One scheduler and no busy-waiting: several nodes share a small machine with other work.
ERL_ARGS = "+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none"


def _epmd_binary() -> str:
    for candidate in ("/usr/bin/epmd", "/usr/lib/erlang/bin/epmd"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise ServiceError("epmd not found; run `make setup` (installs rabbitmq-server)")


def _kill(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


class RabbitNode:
    """One node; `proc` is the Erlang VM itself (the start script execs `erl`)."""

    def __init__(self, cluster: RabbitCluster, index: int, seed: str | None) -> None:
        self.cluster = cluster
        self.index = index
        self.name = f"rabbit{index}@localhost"
        self.dir = cluster.workdir / f"node{index}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.amqp_port = free_port()
        self.mqtt_port = free_port()
        self.dist_port = free_port()
        self.seed = seed
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "console.log"
        self.ready_once = False  # its ports are known to clients from then on

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    def env(self) -> dict[str, str]:
        d = self.dir
        return {
            **self.cluster.base_env(),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": ERL_ARGS,
            # Makes the start script exec the VM, so our PID is the node itself.
            "RUNNING_UNDER_SYSTEMD": "true",
        }

    def _write_config(self) -> None:
        d = self.dir
        (d / "enabled_plugins").write_text("[" + ",".join(PLUGINS) + "].\n")
        (d / "advanced.config").write_text("[].\n")
        lines = [
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}",
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_port}",
            "mqtt.allow_anonymous = true",
            "mqtt.exchange = amq.topic",
            "loopback_users = none",
            "log.console = true",
            # Ra (quorum queue elections: "detected a new leader", "-> leader") and queue
            # events at info; connections and the rest at warning (one line per CONNECT
            # at info would bury them at 10,000 devices).
            "log.console.level = info",
            "log.default.level = warning",
            "log.connection.level = warning",
            "log.channel.level = warning",
            "log.ra.level = info",
            "log.queue.level = info",
            "log.file = false",
            "disk_free_limit.absolute = 50MB",
            "collect_statistics_interval = 60000",
        ]
        if self.seed is not None:
            lines += [
                "cluster_formation.peer_discovery_backend = classic_config",
                f"cluster_formation.classic_config.nodes.1 = {self.seed}",
                f"cluster_formation.classic_config.nodes.2 = {self.name}",
            ]
        (d / "rabbitmq.conf").write_text("\n".join(lines) + "\n")

    def launch(self) -> None:
        """Start the VM without waiting (see `wait_ready`)."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self._write_config()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")], env=self.env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the MQTT listener answers a CONNECT (it opens after the core and AMQP)."""
        deadline = time.monotonic() + timeout
        clashes = 0
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                tail = self._log_tail()
                # A free port can be taken by another process before the node binds it.
                # Before anyone was given this node's ports, take new ones and try again.
                clash = "eaddrinuse" in tail or "dist_port_already_used" in tail
                if not self.ready_once and clash and clashes < 3:
                    clashes += 1
                    self.amqp_port, self.mqtt_port, self.dist_port = (
                        free_port(), free_port(), free_port())
                    self.launch()
                    continue
                raise ServiceError(f"{self.name} exited with {code}: {tail}")
            if self.mqtt_ready():
                self.ready_once = True
                return
            time.sleep(0.25)
        raise ServiceError(f"{self.name} not ready after {timeout} s: {self._log_tail()}")

    def start(self, timeout: float = 120.0) -> None:
        self.launch()
        self.wait_ready(timeout)

    def mqtt_ready(self) -> bool:
        # A CONNACK (0x20) with return code 0 to a bare MQTT 3.1.1 CONNECT.
        connect = bytes.fromhex("101000044d5154540402003c0004") + b"prbe"
        try:
            with socket.create_connection(("127.0.0.1", self.mqtt_port), timeout=1.0) as s:
                s.sendall(connect)
                ack = s.recv(4)
                return len(ack) == 4 and ack[0] == 0x20 and ack[3] == 0
        except OSError:
            return False

    def stop(self, timeout: float = 60.0) -> None:
        proc, self.proc = self.proc, None
        _kill(proc, signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        proc, self.proc = self.proc, None
        _kill(proc, signal.SIGKILL, 10)

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run rabbitmqctl against this node; returns stdout, raises on failure."""
        return self.cluster.ctl(self.name, *args, timeout=timeout)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"


class RabbitCluster:
    """`size` nodes sharing one epmd and one cookie; node 1 is the seed the others join."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        if not (RABBITMQ_BIN / "rabbitmq-server").exists():
            raise ServiceError("rabbitmq-server not installed; run `make setup`")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.home = workdir / "home"
        self.home.mkdir(exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
            cookie.chmod(0o400)  # Erlang refuses a cookie others can read
        self.epmd_port = free_port()
        self.epmd: subprocess.Popen[bytes] | None = None
        first = RabbitNode(self, 1, None)
        self.nodes = [first] + [RabbitNode(self, i, first.name) for i in range(2, size + 1)]

    def base_env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
        return {**keep, "HOME": str(self.home), "ERL_EPMD_PORT": str(self.epmd_port),
                "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}

    def start(self, timeout: float = 180.0) -> None:
        with (self.workdir / "epmd.log").open("ab") as log:
            # Our own epmd in the foreground (not -daemon), so it is ours to stop by PID.
            self.epmd = subprocess.Popen(
                [_epmd_binary(), "-port", str(self.epmd_port)], env=self.base_env(),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            self._wait_port(self.epmd_port, 10)
            seed, *others = self.nodes
            seed.start(timeout)
            for n in others:
                n.launch()
            for n in others:
                n.wait_ready(timeout)
            self.await_members(len(self.nodes), timeout=60)
        except BaseException:
            self.stop()  # a failed start leaves no node behind: nobody else will stop it
            raise

    def stop(self) -> None:
        for n in reversed(self.nodes):
            n.stop()
        _kill(self.epmd, signal.SIGTERM, 10)
        self.epmd = None

    def __enter__(self) -> RabbitCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def amqp_urls(self) -> list[str]:
        return [n.amqp_url for n in self.nodes]

    @property
    def mqtt_hosts(self) -> list[str]:
        return [f"127.0.0.1:{n.mqtt_port}" for n in self.nodes]

    def running(self) -> list[RabbitNode]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def ctl(self, node: str, *args: str, timeout: float = 60.0) -> str:
        cmd = [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", node, "-q", *args]
        res = subprocess.run(cmd, env=self.base_env(), capture_output=True, timeout=timeout,
                             check=False)
        if res.returncode != 0:
            raise ServiceError(f"rabbitmqctl {' '.join(args)} on {node}: "
                               f"{res.stderr.decode(errors='replace')[-1000:]}")
        return res.stdout.decode(errors="replace")

    def running_members(self, via: RabbitNode | None = None) -> list[str]:
        import json

        node = via or self.running()[0]
        status = json.loads(node.ctl("cluster_status", "--formatter", "json"))
        return sorted(status.get("running_nodes", []))

    def await_members(self, count: int, timeout: float = 60.0) -> list[str]:
        deadline = time.monotonic() + timeout
        members: list[str] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(ServiceError, ValueError, subprocess.TimeoutExpired):
                members = self.running_members()
                if len(members) >= count:
                    return members
            time.sleep(1.0)
        raise ServiceError(f"cluster has {members}, expected {count} running nodes")

    @staticmethod
    def _wait_port(port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                return
            time.sleep(0.05)
        raise ServiceError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")
