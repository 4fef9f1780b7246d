"""systemd's notify protocol (sd_notify(3)) without libsystemd: READY=1 and the watchdog.

A datagram to the AF_UNIX socket named by $NOTIFY_SOCKET (a leading '@' is the abstract
namespace). The watchdog is petted at a third of $WATCHDOG_USEC, and only while the
caller's health check passes: a process that is alive but stuck stops petting, and
systemd restarts it after WatchdogSec. Outside systemd every call does nothing.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable


def notify(message: str) -> bool:
    """Send one notification; False when not run by systemd with Type=notify."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(message.encode())
        except OSError:
            return False
    return True


def watchdog_interval_s() -> float | None:
    """Half-life of the watchdog from $WATCHDOG_USEC (if it is meant for this process)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6
    except ValueError:
        return None


def start_watchdog(healthy: Callable[[], bool], stop: threading.Event) -> threading.Thread | None:
    """Pet the watchdog every WatchdogSec/3 while `healthy()`; None when there is none."""
    interval = watchdog_interval_s()
    if interval is None:
        return None
    period = interval / 3

    def run() -> None:
        while not stop.wait(period):
            if healthy():
                notify("WATCHDOG=1")

    thread = threading.Thread(target=run, name="sd-watchdog", daemon=True)
    thread.start()
    return thread
