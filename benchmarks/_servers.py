"""Servers the benchmarks run in their own processes, as they would be deployed."""

from __future__ import annotations

import asyncio
import sys

import aiohttp


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
