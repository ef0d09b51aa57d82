"""Checks ``backbone up`` (and the single-service commands) make before anything starts.

Every port the stack will listen on is checked first, so a taken port is one line naming the
setting that moves it, not a traceback after the broker already started. A healthy Kafka broker
already on the broker's port (``backbone kafka up``, another ``make run``) is reused.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from infra.config import Settings
from infra.errors import PortInUseError
from infra.kafka.broker import metadata_ok, port_in_use


@dataclass(frozen=True)
class Listener:
    what: str
    host: str
    port: int
    setting: str


def port_taken(host: str, port: int) -> bool:
    if host in ("127.0.0.1", "localhost"):
        return port_in_use(port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def require_free(listeners: list[Listener]) -> None:
    """Raise :class:`PortInUseError` for the first taken port, naming its setting."""
    for item in listeners:
        if item.port and port_taken(item.host, item.port):
            raise PortInUseError(
                f"port {item.port} on {item.host} ({item.what}) is already in use: stop what "
                f"holds it (`ss -ltnp | grep :{item.port}`) or set {item.setting} to another port"
            )


def stack_listeners(settings: Settings) -> list[Listener]:
    """The ports ``backbone up`` serves on besides the broker's."""
    found = [
        Listener(
            "HTTP gateway",
            settings.gateway.host,
            settings.gateway.port,
            "BACKBONE_GATEWAY_PORT",
        )
    ]
    if not settings.external_registry:
        found.append(
            Listener(
                "schema registry",
                "127.0.0.1",
                settings.local.registry_port,
                "BACKBONE_REGISTRY_PORT",
            )
        )
    return found


def prepare_stack(settings: Settings) -> tuple[Settings, str | None]:
    """Check every port before anything starts. A healthy broker already on the broker's port is
    reused (the settings then point at it, as BACKBONE_KAFKA_BOOTSTRAP would); returns the
    settings to run with and, when reusing, the line that says so."""
    note = None
    if not settings.external_kafka and port_in_use(settings.local.kafka_port):
        bootstrap = f"127.0.0.1:{settings.local.kafka_port}"
        if not metadata_ok(bootstrap, timeout=5.0):
            raise PortInUseError(
                f"port {settings.local.kafka_port} on 127.0.0.1 (Kafka broker) is in use by "
                "something that is not a working Kafka broker: stop it, set BACKBONE_KAFKA_PORT "
                "to another port, or set BACKBONE_KAFKA_BOOTSTRAP to use an existing cluster"
            )
        settings = settings.model_copy(update={"external_kafka": True})
        note = (
            f"kafka     reusing the broker already answering on {bootstrap} "
            "(not stopped on exit; `backbone kafka down` stops a detached one)"
        )
    require_free(stack_listeners(settings))
    return settings, note
