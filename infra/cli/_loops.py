"""Which event loop a long-running command runs on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

EventLoop = Literal["uvloop", "asyncio"]


def loop_factory(choice: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when asked for and installed; None (asyncio's own) otherwise."""
    if choice != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
