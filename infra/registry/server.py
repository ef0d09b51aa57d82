"""The registry as a long-running service: `backbone registry`, `backbone up` and the test kit."""

from __future__ import annotations

import socket

from aiohttp import web

from infra.config import Settings
from infra.registry.api import make_app
from infra.registry.compatibility import DEFAULT_LEVEL, Level
from infra.registry.log import KafkaLog
from infra.registry.registry import Registry
from streams.settings import KafkaSettings
from streams.topics import Catalogue


class RegistryServer:
    """Confluent-compatible schema registry on ``host:port`` (0: a free port), stored in ``topic``."""

    name = "registry"

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        topic: str,
        host: str = "127.0.0.1",
        port: int = 8081,
        default_level: Level = DEFAULT_LEVEL,
    ) -> None:
        self.topic = topic
        self.host = host
        self.port = port
        self.registry = Registry(KafkaLog(kafka, topic), default_level)
        self._runner: web.AppRunner | None = None
        self._replayed = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._replayed = await self.registry.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            await self.registry.stop()
            raise
        self.port = sock.getsockname()[1]
        runner = web.AppRunner(make_app(self.registry), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.registry.stop()

    def describe(self) -> str:
        state = self.registry.state
        return (
            f"{self.url} (schemas in topic {self.topic}: {len(state.schemas)} schemas, "
            f"{len(state.subject_names())} subjects, {self._replayed} records replayed)"
        )


class ExternalRegistry:
    """Stands in for ours when BACKBONE_SCHEMA_REGISTRY_URL names another registry."""

    name = "registry"

    def __init__(self, url: str) -> None:
        self.url = url

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def describe(self) -> str:
        return f"{self.url} (external, BACKBONE_SCHEMA_REGISTRY_URL)"


def registry_service(settings: Settings) -> RegistryServer | ExternalRegistry:
    """The registry `backbone up` runs: ours on the configured port, unless one is configured."""
    if settings.external_registry:
        return ExternalRegistry(settings.registry.url)
    return RegistryServer(
        settings.kafka,
        topic=Catalogue(settings.kafka.topic_prefix).name("_schemas"),
        port=settings.local.registry_port,
    )
