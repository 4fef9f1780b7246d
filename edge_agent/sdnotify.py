"""systemd's notify protocol (sd_notify(3)): READY=1, WATCHDOG=1, STATUS=… on a datagram."""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send to $NOTIFY_SOCKET; False when not run by systemd with Type=notify."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.sendall(message.encode())
    except OSError:
        return False
    return True
