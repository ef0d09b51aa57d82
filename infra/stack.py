"""The local stack that ``backbone up`` (and ``make run``) runs in the foreground.

A stack is the broker (unless BACKBONE_KAFKA_BOOTSTRAP names a cluster) plus a list of services
with an explicit lifecycle. Services are started in order and stopped in reverse; Ctrl-C or
SIGTERM stops everything, and the broker dies with this process even on SIGKILL. If the stack's
own broker dies, or a supervised loop dies for good, the stack says so in one line, stops every
service (each within ``STOP_TIMEOUT_S``) and exits non-zero.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from infra import shutdown
from infra.config import Settings
from infra.errors import InfraError
from infra.kafka.broker import BrokerOptions, LocalBroker, kafka_version
from infra.kafka.state import forget_broker, record_broker
from infra.registry import registry_service
from infra.tracing import configure_tracing
from streams.admin import apply_catalogue
from streams.supervise import FATAL
from streams.topics import Catalogue

log = logging.getLogger(__name__)


class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def describe(self) -> str: ...


ServiceFactory = Callable[[Settings], Service]


def webhook_delivery(settings: Settings) -> Service:
    """Outbound webhooks: endpoint registry view, fan-out from fact topics, delivery worker."""
    from agents.webhooks import WebhookDeliveryService
    from streams.codec import Codec
    from streams.registry_client import RegistryClient

    return WebhookDeliveryService(
        settings.kafka,
        Codec(RegistryClient(settings.registry)),
        Catalogue(settings.kafka.topic_prefix),
        settings.webhooks.delivery,
        owns_registry_client=True,
    )


def webhooks_gateway_extension(settings: Settings) -> Callable[[web.Application], None]:
    """``POST /webhooks/{source}`` and ``/v1/webhook-endpoints`` for the HTTP gateway.

    ``/webhooks/`` needs no bearer token (the signature is the authentication);
    ``/v1/webhook-endpoints`` does (the gateway's auth covers every ``/v1/`` path)."""
    from connectors.webhooks.gateway import webhooks_extension

    return webhooks_extension(
        settings.gateway.producer(settings.kafka),
        settings.registry,
        Catalogue(settings.kafka.topic_prefix),
        settings.webhooks,
    )


def gateway_service(settings: Settings, *, reuse_port: bool = False) -> Service:
    """The HTTP gateway on ``BACKBONE_GATEWAY_HOST:PORT`` (127.0.0.1:8080 by default): in this
    process, or in ``BACKBONE_GATEWAY_WORKERS`` processes sharing the port (infra.gateway_workers)."""
    from connectors.gateway import GatewayService, build_gateway

    if settings.gateway.workers > 1:
        from infra.gateway_workers import GatewayWorkers

        return GatewayWorkers(settings.gateway)

    app = build_gateway(
        settings.gateway,
        settings.kafka,
        settings.registry,
        Catalogue(settings.kafka.topic_prefix),
        extensions=gateway_extensions(settings),
    )
    return GatewayService(app, settings.gateway.host, settings.gateway.port, reuse_port=reuse_port)


def gateway_extensions(settings: Settings) -> list[Callable[[web.Application], None]]:
    """Routes other connectors add to the gateway (``/v1/calls``, ``/webhooks/...``): append here."""
    from agents.research import research_extension
    from connectors.calls_api import calls_extension
    from connectors.metrics_api import metrics_extension
    from connectors.realtime import realtime_extension

    catalogue = Catalogue(settings.kafka.topic_prefix)
    return [
        calls_extension(
            settings.gateway.producer(settings.kafka),  # the gateway's linger: 0 by default
            settings.registry,
            catalogue,
            services=[service.name for service in settings.calls.services],
        ),
        webhooks_gateway_extension(settings),
        realtime_extension(settings.realtime),
        research_extension(settings.kafka, catalogue, settings.projections.store_dir),
        metrics_extension(settings.kafka, catalogue),
    ]


def alerts_service(settings: Settings) -> Service:
    """The alert evaluator: ``monitoring.metrics`` and circuit changes into ``monitoring.alerts``."""
    from agents.alerts import AlertService
    from streams.codec import Codec
    from streams.registry_client import RegistryClient

    return AlertService(
        settings.kafka,
        Codec(RegistryClient(settings.registry)),
        Catalogue(settings.kafka.topic_prefix),
        settings.alerts,
        owns_registry_client=True,
    )


def worker_service(settings: Settings) -> Service:
    """The call agents (``backbone worker``); imported here lazily because it pulls in Faust."""
    from infra.worker import WorkerService

    return WorkerService(settings)


def projection_service(settings: Settings) -> Service:
    """The projections (integration metrics...), each supervised, stores in [projections]."""
    from agents.projections import ProjectionService

    return ProjectionService(
        settings.kafka,
        settings.registry,
        Catalogue(settings.kafka.topic_prefix),
        settings.projections,
    )


#: What `backbone up` runs besides the broker; later layers append their factories here.
SERVICES: list[ServiceFactory] = [
    registry_service,
    gateway_service,
    worker_service,
    webhook_delivery,
    projection_service,
    alerts_service,
]


#: how long one service may take to stop before the stack moves on to the next
STOP_TIMEOUT_S = 60.0
#: what the process may take after its services stopped (leftover tasks, executor threads)
SHUTDOWN_GRACE_S = 20.0


class StackFailedError(InfraError):
    """A part of the stack died for good (its own broker, a supervised loop): it was stopped."""

    code = "stack_failed"


def stop_on_fatal(loop: asyncio.AbstractEventLoop, fatal: Callable[[str], None]) -> None:
    """Route the event loop's error reports: a supervised loop that died for good (``FATAL``)
    calls ``fatal``; anything else goes through logging (rate-limited), never a raw traceback."""

    def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get(FATAL):
            fatal(str(context["message"]))
        else:
            log.warning("%s", context.get("message"), exc_info=context.get("exception"))

    loop.set_exception_handler(on_loop_error)


async def _watch_broker(broker: LocalBroker, fatal: Callable[[str], None]) -> None:
    """The stack's own broker must outlive it: if it exits, say so once and stop everything."""
    process = broker.process
    assert process is not None
    while (code := process.poll()) is None:  # noqa: ASYNC110 - a child process, no event
        await asyncio.sleep(0.5)
    fatal(
        f"the Kafka broker (pid {process.pid}) exited with code {code}; stopping the stack. "
        f"Its log: {broker.log_file}"
    )


async def _stop(service: Service, say: Callable[[str], None]) -> bool:
    """Stop one service; a failure or a hang is reported and never skips the others. False when
    it did not stop cleanly (a hang also logs the pending tasks' stacks, to find where)."""
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await service.stop()
        return True
    except TimeoutError:
        say(f"{service.name:<9} did not stop within {STOP_TIMEOUT_S:.0f} s; abandoned")
        log.warning("%s did not stop; pending tasks:\n%s", service.name, _task_stacks())
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        say(f"{service.name:<9} stopped with a cancelled client task")  # aiokafka, broker gone
        return True
    except Exception as exc:
        say(f"{service.name:<9} did not stop cleanly: {type(exc).__name__}: {exc}")
    return False


def _task_stacks() -> str:
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"--- task {task.get_name()}: {task.get_coro()!r}\n")
        task.print_stack(limit=12, file=out)
    return out.getvalue()


async def serve_service(
    service: Service,
    say: Callable[[str], None],
    *,
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
    started: Callable[[], None] | None = None,
) -> None:
    """Run one service (``backbone gateway``, ``worker``, ``registry``) until a signal, or until a
    part of it dies for good: then it is stopped (within ``STOP_TIMEOUT_S``) and
    :class:`StackFailedError` says why. ``started`` runs once it is up."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    failures: list[str] = []

    def fatal(message: str) -> None:
        if not failures:
            say(f"error     {message}; stopping")
        failures.append(message)
        stop.set()

    stop_on_fatal(loop, fatal)
    await service.start()
    if started is not None:
        started()
    try:
        await stop.wait()
    finally:
        shutdown.arm(STOP_TIMEOUT_S + SHUTDOWN_GRACE_S, f"the {service.name}")
        clean = await _stop(service, say)
    if failures:  # said above, when it happened
        raise StackFailedError(
            f"the {service.name} stopped because a part of it failed (see above)"
        )
    if not clean:
        raise StackFailedError(f"the {service.name} did not stop cleanly (see above)")


async def serve(settings: Settings, say: Callable[[str], None]) -> None:
    """Run the stack until Ctrl-C / SIGTERM, or until a part of it dies for good: then every
    service is still stopped in reverse order, and :class:`StackFailedError` says which part."""
    broker: LocalBroker | None = None
    started: list[Service] = []
    stop = asyncio.Event()
    failures: list[str] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def fatal(message: str) -> None:
        if not failures:
            say(f"error     {message}")
        failures.append(message)
        stop.set()

    stop_on_fatal(loop, fatal)
    watch: asyncio.Task[None] | None = None
    tracing = configure_tracing()  # OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set
    if tracing is not None:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "(traces endpoint)")
        say(f"tracing   OTLP/HTTP to {endpoint}")
    try:
        if not settings.external_kafka:
            broker = LocalBroker(
                BrokerOptions(
                    port=settings.local.kafka_port,
                    heap=settings.local.kafka_heap,
                    data_dir=(settings.local.state_dir / "kafka").resolve(),
                )
            )
            seconds = await asyncio.to_thread(broker.start)
            record_broker(settings, broker, "backbone up")
            say(
                f"kafka     {broker.bootstrap} (Apache Kafka {kafka_version()}, up in {seconds:.1f} s)"
            )
            watch = asyncio.create_task(_watch_broker(broker, fatal), name="watch-broker")
        report = await apply_catalogue(
            settings.kafka, Catalogue(settings.kafka.topic_prefix), serving=True
        )
        say(f"topics    {len(report.created)} created, {len(report.unchanged)} unchanged")
        for factory in SERVICES:
            if stop.is_set():
                break
            service = factory(settings)
            await service.start()
            started.append(service)
            say(f"{service.name:<9} {service.describe()}")
        if not stop.is_set():
            say("ready; Ctrl-C stops everything")
        await stop.wait()
    finally:
        shutdown.arm(STOP_TIMEOUT_S * len(started) + SHUTDOWN_GRACE_S, "the stack")
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        for service in reversed(started):
            if not await _stop(service, say):
                failures.append(f"{service.name} did not stop cleanly")
        if broker is not None:
            await asyncio.to_thread(broker.stop)
            forget_broker(settings, broker)
        if tracing is not None:
            tracing.shutdown()  # flushes the spans still batched
        say("stopped")
    if failures:  # the reason was said above, when it happened
        raise StackFailedError("the stack stopped because a part of it failed (see above)")
