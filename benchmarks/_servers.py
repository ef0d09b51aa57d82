"""Servers the benchmarks run in their own processes, as they would be deployed."""

from __future__ import annotations

import asyncio
import os
import sys

import aiohttp

#: the client token every benchmark's gateway accepts (``Authorization: Bearer bench-token``)
TOKEN = "bench-token"


def gateway_env(bootstrap: str, port: int, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of a benchmark's gateway (``backbone gateway`` or ``up``) on ``port``: this
    process's, plus the cluster, the topic prefix, :data:`TOKEN` and no client rate limit;
    ``extra`` adds or overrides settings (``BACKBONE_SCHEMA_REGISTRY_URL=...``)."""
    return {
        **os.environ,
        "BACKBONE_KAFKA_BOOTSTRAP": bootstrap,
        "BACKBONE_TOPIC_PREFIX": prefix,
        "BACKBONE_GATEWAY_PORT": str(port),
        "BACKBONE_GATEWAY_TOKENS": f"bench={TOKEN}",
        "BACKBONE_GATEWAY_RATE": "1000000",
        "BACKBONE_GATEWAY_BURST": "1000000",
        **extra,
    }


async def serve_process(
    args: list[str], port: int, env: dict[str, str], attempts: int = 300
) -> tuple[asyncio.subprocess.Process, str]:
    """``python -m *args`` in its own process; returns once ``/healthz`` on ``port`` answers 200
    (``attempts`` tries, about 0.1 s apart when nothing listens yet)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(attempts):
            if proc.returncode is not None:
                break
            try:
                async with session.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return proc, url
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    if proc.returncode is None:
        proc.kill()
    raise RuntimeError(f"{args} did not start (exit code {proc.returncode})")
