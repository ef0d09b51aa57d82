"""``backbone webhooks``: the outbound endpoint registry, recovery and delivery history."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from agents.webhooks.recovery import attempts as read_attempts
from agents.webhooks.recovery import recover as recover_deliveries
from connectors.webhooks import DestinationPolicy
from connectors.webhooks.registry import Endpoint, EndpointAdmin, EndpointRegistry
from infra.cli._app import emit, fail, json_option, main, run, settings
from infra.config import Settings
from streams.codec import Codec
from streams.events import Event
from streams.producer import Publisher
from streams.registry_client import RegistryClient
from streams.topics import Catalogue

T = TypeVar("T")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> int:
    """``10m``/``2h``/``3d`` ago, or an ISO-8601 time; returns epoch milliseconds."""
    current = time.time() if now is None else now
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip()):
        return int((current - float(m[1]) * _UNITS[m[2]]) * 1000)
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: use 10m, 2h, 3d or an ISO-8601 time") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _duration_s(text: str) -> float:
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip()):
        return float(m[1]) * _UNITS.get(m[2] or "s", 1)
    raise click.BadParameter(f"{text!r}: use 30s, 10m, 24h or 7d")


def _parts() -> tuple[Settings, Catalogue]:
    cfg = settings()
    return cfg, Catalogue(cfg.kafka.topic_prefix)


@asynccontextmanager
async def _codec(cfg: Settings) -> AsyncIterator[Codec]:
    async with RegistryClient(cfg.registry) as client:
        yield Codec(client)


@asynccontextmanager
async def _admin() -> AsyncIterator[tuple[EndpointAdmin, EndpointRegistry]]:
    cfg, catalogue = _parts()
    async with _codec(cfg) as codec, Publisher(cfg.kafka, codec, catalogue) as publisher:
        registry = EndpointRegistry(cfg.kafka, codec, catalogue.name("webhooks.endpoints"))
        await registry.start()
        try:
            policy = DestinationPolicy.allowing(cfg.webhooks.delivery.allow_networks)
            yield EndpointAdmin(publisher, registry.view, policy), registry
        finally:
            await registry.stop()


def _with_admin(work: Callable[[EndpointAdmin, EndpointRegistry], Coroutine[Any, Any, T]]) -> T:
    async def go() -> T:
        async with _admin() as (admin, registry):
            return await work(admin, registry)

    return run(go())


def _show(endpoint: Endpoint) -> None:
    state = "disabled" if endpoint.disabled else "enabled"
    types = ",".join(endpoint.event_types) or "*"
    click.echo(f"{endpoint.endpoint_id:<26} {state:<8} {types:<30} {endpoint.url}")


@main.group()
def webhooks() -> None:
    """Outbound webhooks: endpoints, recovery, delivery history."""


@webhooks.group()
def endpoints() -> None:
    """The endpoint registry (events on the compacted webhooks.endpoints topic)."""


@endpoints.command("add")
@click.argument("url")
@click.option("--event-type", "event_types", multiple=True, help="Deliver only these (repeat).")
@click.option("--header", "headers", multiple=True, help="Custom header NAME=VALUE (repeat).")
@click.option("--rate-limit", type=float, default=None, help="Max deliveries per second.")
@click.option("--timeout-ms", type=int, default=15_000, show_default=True)
@click.option("--max-attempts", type=click.IntRange(1, 8), default=8, show_default=True)
@click.option("--description", default="")
@click.option("--id", "endpoint_id", default=None, help="Choose the endpoint id.")
@json_option
def add(
    url: str,
    event_types: tuple[str, ...],
    headers: tuple[str, ...],
    rate_limit: float | None,
    timeout_ms: int,
    max_attempts: int,
    description: str,
    endpoint_id: str | None,
    as_json: bool,
) -> None:
    """Register an endpoint; prints its signing secret, which is never shown again."""
    pairs = dict(h.split("=", 1) for h in headers if "=" in h)
    if len(pairs) != len(headers):
        fail("--header takes NAME=VALUE")

    async def work(admin: EndpointAdmin, _: EndpointRegistry) -> tuple[Endpoint, str]:
        return await admin.register(
            url,
            event_types=list(event_types),
            headers=pairs,
            rate_limit_per_second=rate_limit,
            timeout_ms=timeout_ms,
            max_attempts=max_attempts,
            description=description,
            endpoint_id=endpoint_id,
        )

    endpoint, secret = _with_admin(work)

    def human() -> None:
        _show(endpoint)
        click.echo(f"secret: {secret}  (shown once: store it now)")

    emit({**endpoint.public(), "secret": secret}, as_json, human)


@endpoints.command("list")
@json_option
def list_(as_json: bool) -> None:
    """Every endpoint and its state."""

    async def work(_: EndpointAdmin, registry: EndpointRegistry) -> list[Endpoint]:
        return list(registry.view)

    found = _with_admin(work)

    def human() -> None:
        for endpoint in found:
            _show(endpoint)

    emit([e.public() for e in found], as_json, human)


@endpoints.command()
@click.argument("endpoint_id")
@click.option(
    "--grace", default="24h", show_default=True, help="How long the old secret signs too."
)
@json_option
def rotate(endpoint_id: str, grace: str, as_json: bool) -> None:
    """New signing secret; deliveries carry both signatures during the grace period."""
    grace_s = _duration_s(grace)

    async def work(admin: EndpointAdmin, _: EndpointRegistry) -> tuple[Endpoint, str]:
        return await admin.rotate(endpoint_id, grace_s)

    endpoint, secret = _with_admin(work)
    emit(
        {**endpoint.public(), "secret": secret},
        as_json,
        lambda: click.echo(f"new secret: {secret}  (old one signs too for {grace})"),
    )


@endpoints.command()
@click.argument("endpoint_id")
@click.option("--reason", default="disabled by an operator", show_default=True)
@json_option
def disable(endpoint_id: str, reason: str, as_json: bool) -> None:
    """Stop delivering to an endpoint."""

    async def work(admin: EndpointAdmin, _: EndpointRegistry) -> Endpoint:
        return await admin.disable(endpoint_id, reason)

    endpoint = _with_admin(work)
    emit(endpoint.public(), as_json, lambda: _show(endpoint))


@webhooks.command()
@click.option("--endpoint", "endpoint_id", required=True)
@click.option("--since", required=True, help="10m, 2h, 3d or an ISO-8601 time.")
@click.option("--until", default=None, help="End of the window (default: now).")
@click.option("--dry-run", is_flag=True, help="Only list what would be re-sent.")
@json_option
def recover(endpoint_id: str, since: str, until: str | None, dry_run: bool, as_json: bool) -> None:
    """Re-send dead-lettered deliveries of a window (same webhook-ids)."""
    cfg, catalogue = _parts()
    since_ms = parse_since(since)
    until_ms = parse_since(until) if until else None

    async def go() -> list[Any]:
        async with _codec(cfg) as codec, Publisher(cfg.kafka, codec, catalogue) as publisher:
            return await recover_deliveries(
                cfg.kafka,
                codec,
                catalogue,
                publisher,
                endpoint_id=endpoint_id,
                since_ms=since_ms,
                until_ms=until_ms,
                dry_run=dry_run,
            )

    done = run(go())

    def human() -> None:
        verb = "would re-send" if dry_run else "re-sent"
        for r in done:
            click.echo(f"{verb} {r.delivery_id}  {r.delivered_event_type}  ({r.reason})")
        click.echo(f"{len(done)} deliveries {verb}")

    emit([vars(r) for r in done], as_json, human)


@webhooks.command("attempts")
@click.option("--endpoint", "endpoint_id", required=True)
@click.option("--since", default=None, help="10m, 2h, 3d or an ISO-8601 time.")
@json_option
def attempts_(endpoint_id: str, since: str | None, as_json: bool) -> None:
    """The delivery history of an endpoint: every attempt and its outcome."""
    cfg, catalogue = _parts()

    async def go() -> list[tuple[Event, int]]:
        async with _codec(cfg) as codec:
            return await read_attempts(
                cfg.kafka,
                codec,
                catalogue,
                endpoint_id=endpoint_id,
                since_ms=parse_since(since) if since else None,
            )

    rows = run(go())
    data = [{"event_type": e.event_type, **e.model_dump(mode="json")} for e, _ in rows]

    def human() -> None:
        for event, ts in rows:
            when = datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
            status = getattr(event, "status", None)
            detail = getattr(event, "message", "") or getattr(event, "url", "")
            click.echo(
                f"{when}  {getattr(event, 'delivery_id', '')}  #{getattr(event, 'attempt', '')}  "
                f"{event.event_type.removeprefix('webhook.'):<18} {status or '':>4}  {detail}"
            )

    emit(data, as_json, human)
