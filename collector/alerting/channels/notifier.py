"""The interface every channel implements, and what the registry hands a channel."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from collector.alerting.model import Message

Address = Literal["phone", "app", "none"]


class Notifier(Protocol):
    """Deliver one message or raise DeliveryRetry / DeliveryRejected.

    Each channel runs on its own delivery worker, so `send` may block (a modem takes
    seconds per part) without delaying any other channel.
    """

    name: str
    address: Address  # what a recipient is for this channel

    def start(self) -> None:
        """Connect / open the device (constructors do no I/O)."""
        ...

    def send(self, msg: Message) -> None: ...

    def send_many(self, msgs: list[Message]) -> list[Exception | None]:
        """Several at once (a channel may pipeline them); one outcome per message."""
        ...

    def close(self) -> None: ...


def one_by_one(notifier: Notifier, msgs: list[Message]) -> list[Exception | None]:
    """`send_many` for channels that cannot pipeline."""
    out: list[Exception | None] = []
    for m in msgs:
        try:
            notifier.send(m)
            out.append(None)
        except Exception as exc:  # the worker sorts retry from reject
            out.append(exc)
    return out


@dataclass(frozen=True)
class Context:
    """What channels may need from the service, passed explicitly."""

    file: str = "<config>"  # the collector's config file
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    broker_username: str | None = None
    broker_password: str | None = None
    prefix: str = "airgrid"
    client_id: str = "airgrid-collector"  # MQTT client ids derive from it: unique per collector
    # The collector's own MQTT connection (manual-ack client) and its connected flag: MQTT
    # channels on the same broker share it, because a broker that pins the client id to
    # the username (use_username_as_clientid) lets an account hold one connection only.
    shared_client: Any = None
    shared_connected: threading.Event | None = None
    # An SMS arrived (channel, sender, text): the service reads acknowledgements from it.
    on_sms: Callable[[str, str, str], None] | None = None
