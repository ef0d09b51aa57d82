"""The call worker as a stack service (``backbone up``, ``backbone worker``)."""

from __future__ import annotations

from agents.worker import CallWorker, consumer_groups
from infra.config import Settings
from streams.codec import Codec
from streams.registry_client import RegistryClient
from streams.topics import Catalogue


class WorkerService:
    """Owns its registry client, so it can be started from settings alone."""

    name = "worker"

    def __init__(self, cfg: Settings) -> None:
        self._cfg = cfg
        self._client: RegistryClient | None = None
        self._worker: CallWorker | None = None

    async def start(self) -> None:
        self._client = RegistryClient(self._cfg.registry)
        await self._client.__aenter__()
        self._worker = CallWorker(
            self._cfg.kafka,
            Codec(self._client),
            Catalogue(self._cfg.kafka.topic_prefix),
            self._cfg.calls,
        )
        await self._worker.start()

    async def stop(self) -> None:
        if self._worker is not None:
            await self._worker.stop()
        if self._client is not None:
            await self._client.__aexit__(None, None, None)

    def describe(self) -> str:
        services = ", ".join(f"{s.name} ({s.kind})" for s in self._cfg.calls.services) or "none"
        groups = consumer_groups(self._cfg.calls)
        return f"call agents ({self._cfg.calls.runtime} runtime, {groups}); services: {services}"


def worker_service(cfg: Settings) -> WorkerService:
    return WorkerService(cfg)
