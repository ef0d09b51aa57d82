"""``backbone ws``: websocket fan-out helpers (minting development tokens)."""

from __future__ import annotations

import re

import click

from connectors.realtime import mint, parse_channel
from connectors.realtime.errors import ChannelError
from infra.cli._app import fail, main, settings

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _ttl_s(text: str) -> float:
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip()):
        return float(m[1]) * _UNITS.get(m[2] or "s", 1)
    raise click.BadParameter(f"{text!r}: use 30s, 10m, 1h or 7d")


@main.group()
def ws() -> None:
    """The websocket fan-out (GET /ws): tokens for development."""


@ws.command("token")
@click.option(
    "--channels",
    required=True,
    help="Channel patterns the holder may read, comma-separated (e.g. 'integration:*,alerts').",
)
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: 30s, 10m, 1h, 7d.")
@click.option("--subject", default="dev", show_default=True, help="Who the token is for (`sub`).")
def token(channels: str, ttl: str, subject: str) -> None:
    """Print a signed token for GET /ws (key and algorithm from BACKBONE_WS_JWT_*)."""
    cfg = settings().realtime
    key = cfg.jwt_signing_key or cfg.jwt_key
    if key is None:
        fail("set BACKBONE_WS_JWT_KEY (or BACKBONE_WS_JWT_SIGNING_KEY) to mint tokens")
    patterns = [c.strip() for c in channels.split(",") if c.strip()]
    if not patterns:
        raise click.BadParameter("name at least one channel pattern", param_hint="--channels")
    for pattern in patterns:
        if "*" not in pattern and "?" not in pattern and "[" not in pattern:
            try:
                parse_channel(pattern)
            except ChannelError as exc:
                raise click.BadParameter(str(exc), param_hint="--channels") from exc
    click.echo(
        mint(
            key.get_secret_value(),
            patterns,
            ttl_s=_ttl_s(ttl),
            subject=subject,
            algorithm=cfg.jwt_algorithms[0],
        )
    )
