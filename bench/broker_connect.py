"""Cost of a device connecting to the secured broker: TLS with a client certificate versus
the password listener (PBKDF2 at 1000 and at 101 iterations), on the generated config,
and the same config without `set_tcp_nodelay true` as the reference.

After a broker restart every device reconnects at once; this is the per-connection cost
that storm pays. Each sample is TCP connect (+ TLS handshake) + MQTT 3.1.1 CONNECT +
CONNACK, over raw sockets so no client library is measured. Both brokers run at once and
all kinds are interleaved, so machine noise hits them alike.

    .venv/bin/python bench/broker_connect.py [--n 200]

Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

from orchestration.admin import passwd
from orchestration.admin.broker_config import Listeners
from orchestration.admin.home import AdminHome
from orchestration.services import Mosquitto, free_port

# Run as `python bench/X.py`, Python puts bench/ first on sys.path instead of the repo
# root (`python -m bench.X` puts the root there): a bench that imports bench.* or tests.*
# swaps it back with this one line, the only path fix-up in bench/.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.record import emit

#: The keys of the last line (bench/record.py checks them; RESULTS.md lists them).
RESULT_KEYS = ("n_each", "median_ms", "p90_ms", "ratio_tls_no_nodelay_vs_generated",
               "ratio_tls_cert_vs_password_1000", "ratio_password_1000_vs_101",
               "connects_per_s_serial")


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connect_packet(username: str | None = None, password: str | None = None) -> bytes:
    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
    body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", 30) + _str("")
    if username:
        body += _str(username)
    if password:
        body += _str(password)
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


def one(port: int, packet: bytes, ctx: ssl.SSLContext | None) -> float:
    t0 = time.perf_counter()
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
    try:
        sock.sendall(packet)
        ack = sock.recv(4)
        elapsed = time.perf_counter() - t0
        if ack[:1] != b"\x20" or ack[3:4] != b"\x00":
            raise RuntimeError(f"refused: {ack.hex()}")
        sock.sendall(b"\xe0\x00")
    finally:
        sock.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="connections of each kind")
    n = ap.parse_args().n
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        home = AdminHome(root / "admin")
        home.init("bench", "127.0.0.1")
        home.add_device("dev-cert")
        pw1000 = home.add_device("dev-pw1000", use_password=True).password
        pw101 = home.add_device("dev-pw101", use_password=True).password
        assert pw1000 and pw101
        reg = home.registry()  # the kind of entry mosquitto_passwd 2.0.11 writes
        reg.devices["dev-pw101"].password_hash = passwd.hash_password(pw101, iterations=101)
        reg.save(home.registry_path)
        brokers: dict[str, tuple[Mosquitto, int]] = {}
        for variant in ("generated", "no_nodelay"):
            broker = Mosquitto(root / f"mosquitto-{variant}")
            tls_port = free_port()
            out = root / f"broker-{variant}"
            home.write_broker_config(out, Listeners(tls_port=tls_port, port=broker.port,
                                     bind="127.0.0.1"), ["localhost"],
                                     data_dir=str(broker.workdir))
            conf = (out / "mosquitto.conf").read_text()
            assert "set_tcp_nodelay true\n" in conf
            if variant == "no_nodelay":
                conf = conf.replace("set_tcp_nodelay true\n", "")
            broker.base_config = conf
            brokers[variant] = (broker, tls_port)
        bundle = root / "admin" / "devices" / "dev-cert"
        ctx = ssl.create_default_context(cafile=str(bundle / "ca.crt"))
        ctx.load_cert_chain(str(bundle / "device.crt"), str(bundle / "device.key"))
        kinds: dict[str, tuple[int, bytes, ssl.SSLContext | None]] = {}
        try:
            for variant, (broker, tls_port) in brokers.items():
                broker.start()
                kinds[f"{variant}/tls_cert"] = (tls_port, connect_packet(), ctx)
                kinds[f"{variant}/password_pbkdf2_1000"] = (
                    broker.port, connect_packet("dev-pw1000", pw1000), None)
                kinds[f"{variant}/password_pbkdf2_101"] = (
                    broker.port, connect_packet("dev-pw101", pw101), None)
            samples: dict[str, list[float]] = {k: [] for k in kinds}
            for port, pkt, c in kinds.values():  # warm-up
                one(port, pkt, c)
            for _ in range(n):
                for k, (port, pkt, c) in kinds.items():
                    samples[k].append(one(port, pkt, c))
        finally:
            for broker, _ in brokers.values():
                broker.stop()
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    g = "generated/"
    result = {
        "n_each": n,
        "median_ms": {k: round(v, 3) for k, v in med.items()},
        "p90_ms": {k: round(statistics.quantiles(v, n=10)[-1] * 1000, 3)
                   for k, v in samples.items()},
        "ratio_tls_no_nodelay_vs_generated": round(
            med["no_nodelay/tls_cert"] / med[g + "tls_cert"], 1),
        "ratio_tls_cert_vs_password_1000": round(
            med[g + "tls_cert"] / med[g + "password_pbkdf2_1000"], 2),
        "ratio_password_1000_vs_101": round(
            med[g + "password_pbkdf2_1000"] / med[g + "password_pbkdf2_101"], 2),
        "connects_per_s_serial": {k: round(1000 / v) for k, v in med.items()
                                  if k.startswith(g)},
    }
    emit("broker_connect", result, RESULT_KEYS)


if __name__ == "__main__":
    main()
