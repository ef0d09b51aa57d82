"""Running the gateway application as a service with an explicit lifecycle (``backbone up``)."""

from __future__ import annotations

from aiohttp import web

from connectors.gateway._keys import SETTINGS


class GatewayService:
    name = "gateway"

    def __init__(
        self, app: web.Application, host: str, port: int, *, reuse_port: bool = False
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        #: one of several processes on the same port (``SO_REUSEPORT``, infra.gateway_workers)
        self._reuse_port = reuse_port
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    async def start(self) -> None:
        settings = self._app.get(SETTINGS)
        # aiohttp closes a connection whose first request's headers are not complete when the
        # keep-alive timer fires (and idle keep-alive connections): the slow-header guard
        timeout = settings.header_timeout_s if settings is not None else 15.0
        runner = web.AppRunner(self._app, access_log=None, keepalive_timeout=timeout)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_port=self._reuse_port or None)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        addresses = runner.addresses  # the real port when 0 was asked for
        self.bound_port = int(addresses[0][1]) if addresses else self._port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def describe(self) -> str:
        return f"http://{self._host}:{self.bound_port or self._port} (POST /v1/events/<type>, /openapi.json)"
