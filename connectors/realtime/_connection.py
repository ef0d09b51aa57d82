"""One websocket client: authentication, its requests, its subscriptions and its send queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from connectors.realtime import _frames
from connectors.realtime._fanout import TP, FanOut, PositionGoneError, Subscription
from connectors.realtime._outbox import Outbox
from connectors.realtime.channels import Channel, parse_channel
from connectors.realtime.errors import (
    ChannelError,
    ProtocolError,
    RealtimeUnavailableError,
    TokenExpiredError,
    TokenRejectedError,
)
from connectors.realtime.protocol import CloseCode, Request, SincePosition, parse_request
from connectors.realtime.settings import RealtimeSettings
from connectors.realtime.tokens import Grant, verify

log = logging.getLogger(__name__)


class Connection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.WriteTransport,
        drain: Callable[[], Awaitable[None]],
        fanout: FanOut,
        settings: RealtimeSettings,
        tokens_in_use: Counter[str],
        closes: Counter[int],
    ) -> None:
        self._ws = ws
        self._transport = transport
        self._fanout = fanout
        self._settings = settings
        self._tokens_in_use = tokens_in_use
        self._closes = closes  # close codes this gateway sent, for /metrics and tests
        # the fan-out writes wire frames to ``transport`` itself (see _outbox); aiohttp's own
        # writer only sends pings, pongs and the close frame, each a whole frame
        self._outbox = Outbox(
            transport,
            drain,
            settings.send_queue_frames,
            settings.send_queue_bytes,
            lambda: self.close_soon(CloseCode.SLOW_CONSUMER, "slow consumer"),
        )
        self._subs: dict[str, Subscription] = {}
        self._resumes: dict[str, asyncio.Task[None]] = {}
        self._checkpoints: dict[str, dict[TP, int]] = {}
        self._closing: asyncio.Task[None] | None = None
        self._grant: Grant | None = None
        self._heard = False  # the client sent a frame (a pong, a request) since last looked

    # --- lifecycle -----------------------------------------------------------------------------

    async def serve(self) -> None:
        grant = await self._authenticate()
        if grant is None:
            return
        if self._tokens_in_use[grant.token_id] >= self._settings.max_connections_per_token:
            await self._close(CloseCode.TOO_MANY_CONNECTIONS, "too many connections for this token")
            return
        self._tokens_in_use[grant.token_id] += 1
        self._grant = grant
        loop = asyncio.get_running_loop()
        expiry = loop.call_later(
            max(0.0, grant.expires_at - time.time()),
            self.close_soon,
            CloseCode.TOKEN_EXPIRED,
            "token expired",
        )
        writer = asyncio.create_task(self._write(), name="ws-writer")
        ticker = asyncio.create_task(self._checkpoint_loop(), name="ws-checkpoints")
        pulse = asyncio.create_task(self._liveness_loop(), name="ws-liveness")
        try:
            self._send(
                _frames.encode(
                    {
                        "type": "authenticated",
                        "subject": grant.subject,
                        "channels": list(grant.patterns),
                        "expires_at": grant.expires_at,
                    }
                )
            )
            async for message in self._ws:
                self._heard = True
                if message.type is WSMsgType.TEXT:
                    self._handle(message.data)
                elif message.type is WSMsgType.BINARY:
                    self._send(_frames.error("bad_request", "binary frames are not accepted"))
                elif message.type is WSMsgType.PING:
                    await self._pong(message.data)
                elif message.type is not WSMsgType.PONG:
                    break  # ERROR (e.g. a frame above the cap: aiohttp closes with 1009)
        finally:
            expiry.cancel()
            for name in list(self._subs):
                self._drop(name)
            self._outbox.close()
            for task in (writer, ticker, pulse):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._tokens_in_use[grant.token_id] -= 1
            if self._tokens_in_use[grant.token_id] <= 0:
                del self._tokens_in_use[grant.token_id]
            if self._closing is not None:
                await self._closing

    @property
    def queued_bytes(self) -> int:
        return self._outbox.queued_bytes

    def close_soon(self, code: int, reason: str) -> None:
        """Close from synchronous code (the fan-out, timers); drops what is queued at once."""
        if self._closing is None:
            self._outbox.close()
            self._closing = asyncio.create_task(self._close(code, reason))

    async def wait_closed(self) -> None:
        if self._closing is not None:
            await self._closing

    async def _close(self, code: int, reason: str) -> None:
        self._closes[code] += 1
        # drain=False and a deadline: a client that reads nothing must not hold the close.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self._ws.close(code=code, message=reason.encode()[:120], drain=False), 5.0
            )
        # The transport, closed, still holds what the client has not read, the close frame last;
        # a client that reads again gets them, one that never does must not keep them forever.
        asyncio.get_running_loop().call_later(
            self._settings.close_grace_s, _drop_if_unread, self._transport
        )

    async def _pong(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):  # the connection is ending
            await self._ws.pong(data)

    async def _authenticate(self) -> Grant | None:
        try:
            async with asyncio.timeout(self._settings.auth_timeout_s):
                message = await self._ws.receive()
                while message.type in (WSMsgType.PING, WSMsgType.PONG):
                    if message.type is WSMsgType.PING:
                        await self._pong(message.data)
                    message = await self._ws.receive()
        except TimeoutError:
            await self._close(CloseCode.AUTH_TIMEOUT, "authentication timeout")
            return None
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return None
        code, reason = CloseCode.UNAUTHORIZED, "the first frame must be {op: auth, token}"
        try:
            if message.type is not WSMsgType.TEXT:
                raise TokenRejectedError(reason)
            request = parse_request(message.data)
            if request.op != "auth":
                raise TokenRejectedError(reason)
            key = self._settings.jwt_key
            if key is None:
                raise TokenRejectedError("websocket tokens are not configured on this gateway")
            return verify(request.token, key.get_secret_value(), self._settings.jwt_algorithms)
        except TokenExpiredError as exc:
            code, reason = CloseCode.TOKEN_EXPIRED, str(exc)
        except (TokenRejectedError, ProtocolError) as exc:
            reason = str(exc)
        await self._close(code, reason)
        return None

    async def _write(self) -> None:
        try:
            await self._outbox.run()
        except Exception as exc:  # the peer went away; the reader loop ends too
            log.debug("websocket send failed: %s", exc)
            self.close_soon(CloseCode.GOING_AWAY, "send failed")

    def _send(self, frame: bytes) -> None:
        """Send one JSON frame of this connection's own (answers, errors, checkpoints)."""
        self._outbox.offer(_frames.wire(frame))

    # --- requests ------------------------------------------------------------------------------

    def _handle(self, text: str) -> None:
        request_id: Any = None
        try:
            request = parse_request(text)
            request_id = request.id
            if request.op == "ping":
                self._send(_frames.encode({"type": "pong", "id": request_id}))
            elif request.op == "auth":
                raise ProtocolError("already authenticated", "already_authenticated")
            elif request.op == "subscribe":
                self._subscribe(request)
            else:
                self._unsubscribe(request)
        except (ProtocolError, ChannelError) as exc:
            self._send(_frames.error(exc.code, str(exc), request_id))

    def _subscribe(self, request: Request) -> None:
        assert self._grant is not None
        channel = parse_channel(request.channel)
        if not self._grant.allows(channel.name):
            raise ProtocolError(f"this token may not read {channel.name!r}", "forbidden")
        if channel.name in self._subs:
            raise ProtocolError(f"already subscribed to {channel.name!r}", "already_subscribed")
        if len(self._subs) >= self._settings.max_subscriptions:
            raise ProtocolError(
                f"at most {self._settings.max_subscriptions} subscriptions per connection",
                "too_many_subscriptions",
            )
        sub = Subscription(
            channel,
            self._outbox,
            live=request.since is None,
            max_pending=self._settings.send_queue_frames,
        )
        snapshot = self._fanout.register(sub)  # no await between this and the live delivery
        self._subs[channel.name] = sub
        if request.since is None:
            self._checkpoints[channel.name] = snapshot
            self._send(self._subscribed(channel, request.id, snapshot, replayed=0))
            return
        self._resumes[channel.name] = asyncio.create_task(
            self._resume(sub, request, snapshot), name=f"ws-resume-{channel.name}"
        )

    def _unsubscribe(self, request: Request) -> None:
        name = parse_channel(request.channel).name
        if name not in self._subs:
            raise ProtocolError(f"not subscribed to {name!r}", "not_subscribed")
        self._drop(name)
        self._send(_frames.encode({"type": "unsubscribed", "id": request.id, "channel": name}))

    def _drop(self, name: str) -> None:
        sub = self._subs.pop(name)
        self._fanout.unregister(sub)
        self._checkpoints.pop(name, None)
        task = self._resumes.pop(name, None)
        if task is not None:
            task.cancel()

    def _subscribed(
        self, channel: Channel, request_id: Any, next_offsets: dict[TP, int], replayed: int
    ) -> bytes:
        return _frames.encode(
            {
                "type": "subscribed",
                "id": request_id,
                "channel": channel.name,
                "positions": self._positions(next_offsets),
                "replayed": replayed,
            }
        )

    def _positions(self, next_offsets: dict[TP, int]) -> list[dict[str, Any]]:
        return self._fanout.positions_json(next_offsets)

    # --- resume --------------------------------------------------------------------------------

    async def _resume(self, sub: Subscription, request: Request, snapshot: dict[TP, int]) -> None:
        name = sub.channel.name
        assert request.since is not None
        try:
            starts, reason = await self._replay_starts(request.since, snapshot)
            if reason is None:
                replayed = await self._fanout.replay(
                    sub.channel, starts, snapshot, self._outbox.put
                )
                # `subscribed` carries the snapshot, so it goes before the live records held back
                # during the replay (all at or after it); nothing awaits in between.
                self._send(self._subscribed(sub.channel, request.id, snapshot, replayed))
                self._checkpoints[name] = snapshot
                sub.go_live()
        except PositionGoneError:
            reason = "out_of_retention"
        except RealtimeUnavailableError as exc:
            self._forget(name)
            self._send(_frames.error(exc.code, f"{name}: {exc}", request.id))
            return
        finally:
            self._resumes.pop(name, None)
        if reason is not None:
            self._forget(name)
            self._send(
                _frames.encode(
                    {"type": "resync_required", "id": request.id, "channel": name, "reason": reason}
                )
            )

    def _forget(self, name: str) -> None:
        sub = self._subs.pop(name, None)
        if sub is not None:
            self._fanout.unregister(sub)

    async def _replay_starts(
        self, since: tuple[SincePosition, ...], snapshot: dict[TP, int]
    ) -> tuple[dict[TP, int], str | None]:
        """Where to replay from per partition, or why the client must resync instead."""
        starts: dict[TP, int] = {}
        for position in since:
            tp = (position.topic, position.partition)
            if tp not in snapshot:
                return {}, "unknown_position"
            if position.epoch != self._fanout.epochs[position.topic]:
                return {}, "epoch_changed"
            starts[tp] = position.offset + 1
        if set(starts) != set(snapshot):
            return {}, "position_missing"
        log_starts = await self._fanout.log_starts(list(snapshot))
        for tp, start in starts.items():
            if start < log_starts[tp]:
                return {}, "out_of_retention"
            if start > snapshot[tp]:
                return {}, "position_ahead"
        if sum(snapshot[tp] - start for tp, start in starts.items()) > (
            self._settings.max_replay_records
        ):
            return {}, "too_far_behind"
        return starts, None

    # --- liveness ------------------------------------------------------------------------------

    async def _liveness_loop(self) -> None:
        """Ping a client that was silent for ``heartbeat_s``. It is alive if within half of that
        it answers, sends anything, or takes bytes off the kernel's send buffer: a pong queued
        behind a backlog comes late, but a client working through the backlog is reading (too
        slowly is the send budget's call: 4008). Otherwise the connection is dropped without a
        close frame (a dead peer would not read it; the client sees 1006)."""
        beat = self._settings.heartbeat_s
        while True:
            await asyncio.sleep(beat)
            if self._heard:
                self._heard = False
                continue
            taken = self._outbox.taken
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._ws.ping()
            await asyncio.sleep(beat / 2)
            if self._heard or self._outbox.taken > taken:
                continue
            self._closes[_NO_PONG] += 1
            self._outbox.close()
            self._transport.abort()
            return

    # --- checkpoints ---------------------------------------------------------------------------

    async def _checkpoint_loop(self) -> None:
        """Tell each live subscription how far the log has been read, so a channel that matched
        nothing for a while resumes from near the end instead of replaying what it never wanted."""
        while True:
            await asyncio.sleep(self._settings.checkpoint_s)
            for name, sub in self._subs.items():
                if not sub.live:
                    continue
                now, frame = self._fanout.checkpoint(sub.channel)
                if now != self._checkpoints.get(name):
                    self._checkpoints[name] = now
                    self._outbox.offer(frame)


#: Counted in the close codes when a silent client is dropped: no close frame is sent, so 1006
#: ("abnormal closure") is what the client reports.
_NO_PONG = 1006


def _drop_if_unread(transport: asyncio.WriteTransport) -> None:
    """Reset a closed connection whose client never read the rest: a linger of 0 makes the close
    a TCP reset, which frees the kernel's send buffer too (a plain close would queue a FIN behind
    the unread bytes and leave them to the kernel)."""
    if not transport.get_write_buffer_size():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
