"""``POST /webhooks/{source}``: verified inbound webhooks become ``webhook.received`` events.

Order of work for one request, each step only if the previous passed:

1. unknown source -> 404; declared ``Content-Length`` over the limit -> 413 before reading;
2. read the body, counting, and stop at the limit (chunked uploads) -> 413;
3. verify on the raw bytes -> 401 and a ``webhook.rejected`` audit event (never the body);
4. claim ``(source, webhook-id)``; already accepted -> 200 without a second event;
5. write ``webhook.received`` to ``webhooks.inbound``, with the seen-set's key in its
   ``webhook-seen`` header; once Kafka acknowledged it -> 202 (and this gateway's seen-set has the
   key at once). Kafka not answering within ``ack_timeout_s`` -> 503 (the sender retries; nothing
   is marked seen), or 504 ``outcome_unknown`` when the record was already sent (it may be in the
   log; if it is, every seen-set learns its key from it, so the retry is answered as a duplicate).

One record per webhook: the event *is* the seen-marker. Every gateway's seen-set follows
``webhooks.inbound`` and reads the key from the header (no decoding), so there is no second
record to write, and no window between the event and its marker in which a crash could let a
retry through twice. (Before, a separate marker went to ``webhooks.seen``; the seen-set still
reads that topic, so ids accepted by an older gateway stay refused.)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from json.encoder import encode_basestring_ascii

from aiohttp import web

from connectors.gateway._body import BODY_TIMEOUT_S
from connectors.gateway._problems import (
    OUTCOME_UNKNOWN,
    RECORD_LIMIT_BYTES,
    problem,
    too_large_message,
    too_large_to_write,
)
from connectors.webhooks._seen import SEEN_HEADER, SeenSet, seen_key
from connectors.webhooks._signing import (
    VerifiedWebhook,
    WebhookSecret,
    verify_github,
    verify_lowered,
)
from connectors.webhooks._writer import EventWriter
from connectors.webhooks.errors import VerificationError
from connectors.webhooks.settings import InboundSource, IngressSettings
from streams.errors import BackboneError, WriteOutcomeUnknownError
from streams.events import Event
from streams.events.webhooks import RejectionReason, WebhookReceived, WebhookRejected

log = logging.getLogger(__name__)

_REASONS = {
    "missing_headers": RejectionReason.MALFORMED,
    "stale_timestamp": RejectionReason.STALE_TIMESTAMP,
    "bad_signature": RejectionReason.BAD_SIGNATURE,
}


#: Room kept for the event envelope around a webhook body (ids, sender, kept headers, Avro framing).
ENVELOPE_RESERVE_BYTES = 32 * 1024


class _TooLargeError(Exception):
    pass


class _Verifier:
    """The secrets of one source, decoded once."""

    def __init__(self, source: InboundSource) -> None:
        self.scheme = source.scheme
        self.tolerance_s = source.tolerance_s
        raw = [s.get_secret_value() for s in source.secrets]
        self.standard = [WebhookSecret.parse(s) for s in raw] if source.scheme == "standard" else []
        self.github = [s.encode() for s in raw] if source.scheme == "github" else []

    def __call__(self, headers: dict[str, str], body: bytes) -> VerifiedWebhook:
        """``headers``: names lower-case."""
        if self.scheme == "github":
            return verify_github(self.github, headers, body)
        return verify_lowered(self.standard, headers, body, tolerance_s=self.tolerance_s)


def _accepted(webhook_id: str, event: WebhookReceived) -> web.Response:
    """The 202: the text ``json_response({"status": "accepted", ...})`` writes, filled in without
    building and encoding a dict (measured: about half the CPU of ``json_response``)."""
    quoted = encode_basestring_ascii(webhook_id)
    text = f'{{"status": "accepted", "webhook_id": {quoted}, "event_id": "{event.event_id}"}}'
    return web.Response(text=text, status=202, content_type="application/json")


class WebhookIngress:
    """Holds the per-source verifiers, the seen-set and the writer; :meth:`install` adds the route."""

    def __init__(
        self,
        settings: IngressSettings,
        writer: EventWriter,
        seen: SeenSet,
    ) -> None:
        self._settings = settings
        self._writer = writer
        self._seen = seen
        self._verifiers = {name: _Verifier(src) for name, src in settings.sources.items()}

    def install(self, app: web.Application) -> None:
        """The gateway extension: ``build_gateway(..., extensions=[ingress.install])``."""
        app.router.add_post("/webhooks/{source}", self.handle)

    @property
    def body_limit(self) -> int:
        """The configured limit, lowered so that a body within it, wrapped as an event with its
        envelope, still fits in one record: the limit is enforced on what is written."""
        return min(self._settings.max_body_bytes, RECORD_LIMIT_BYTES - ENVELOPE_RESERVE_BYTES)

    @staticmethod
    def _dedupe_id(scheme: str, msg_id: str, body: bytes) -> str:
        """What makes two requests the same webhook. GitHub signs the body only (no id, no
        timestamp), so the same body and signature under a new delivery id is a replay: GitHub
        webhooks are deduplicated on the body's SHA-256 for as long as ``webhooks.seen`` keeps
        ids (its retention, 7 days). Standard Webhooks sign id and timestamp: the id is enough."""
        if scheme == "github":
            return "sha256:" + hashlib.sha256(body).hexdigest()
        return msg_id

    async def _read_capped(self, request: web.Request) -> bytes:
        limit = self.body_limit
        if request.content_length is not None and request.content_length > limit:
            raise _TooLargeError
        if request.content.is_eof():  # all of it came with the headers: no timer needed
            whole = request.content.read_nowait()
            if len(whole) > limit:
                raise _TooLargeError
            return whole
        chunks: list[bytes] = []
        size = 0
        async with asyncio.timeout(BODY_TIMEOUT_S):  # a trickled body cannot hold a handler
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    raise _TooLargeError
                chunks.append(chunk)
        return b"".join(chunks)

    async def _publish(self, event: Event, headers: dict[str, bytes] | None = None) -> None:
        # asyncio.timeout, not wait_for: no extra task per write
        # the publisher's bound tells withdrawn (503) from sent-not-acknowledged (504); this one
        # backstops encoding and metadata waits
        timeout = self._settings.ack_timeout_s
        async with asyncio.timeout(timeout + 5.0):
            await self._writer.publish(event, headers=headers, timeout_s=timeout)

    async def _reject(
        self,
        source: str,
        reason: RejectionReason,
        detail: str,
        request: web.Request,
        msg_id: str | None,
    ) -> web.Response:
        event = WebhookRejected(
            sender=source,
            reason=reason,
            detail=detail,
            webhook_id=msg_id,
            remote_addr=request.remote,
        )
        try:
            await self._publish(event)
        except (TimeoutError, BackboneError) as exc:  # the audit trail must not turn 401 into 503
            log.warning("could not write webhook.rejected for %s: %s", source, exc)
        return problem(401, reason.value, detail)

    async def handle(self, request: web.Request) -> web.Response:
        source = request.match_info["source"]
        verifier = self._verifiers.get(source)
        if verifier is None:
            return problem(404, "unknown_source", f"no webhook source {source!r} is configured")
        try:
            body = await self._read_capped(request)
        except TimeoutError:
            return problem(
                408,
                "body_timeout",
                f"the body did not arrive within {BODY_TIMEOUT_S:g} s",
                headers={"Connection": "close"},
            )
        except _TooLargeError:
            limit = self.body_limit
            return problem(413, "body_too_large", f"the body exceeds {limit} bytes", limit=limit)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            verified = verifier(headers, body)
        except VerificationError as exc:
            reason = _REASONS.get(exc.reason, RejectionReason.MALFORMED)
            claimed = headers.get("webhook-id") or headers.get("x-github-delivery")
            return await self._reject(source, reason, str(exc), request, claimed)
        key = seen_key(source, self._dedupe_id(verifier.scheme, verified.msg_id, body))
        async with self._seen.claim(key) as already:
            if already:
                return web.json_response({"status": "duplicate", "webhook_id": verified.msg_id})
            event = WebhookReceived(
                sender=source,
                webhook_id=verified.msg_id,
                body=body,
                headers={k: v for k, v in headers.items() if k in self._settings.kept_headers},
                content_type=request.content_type or None,
                verified_by=verifier.scheme,
                remote_addr=request.remote,
            )
            try:
                await self._publish(event, {SEEN_HEADER: key})
            except (TimeoutError, BackboneError) as exc:
                if too_large_to_write(exc):  # never 5xx: senders would retry it for days
                    return problem(
                        413,
                        "too_large_to_write",
                        too_large_message("the webhook (body and kept headers)"),
                        limit=self.body_limit,
                    )
                if isinstance(exc, BackboneError) and not exc.retriable:
                    raise
                log.warning("webhook %s/%s not acknowledged: %s", source, verified.msg_id, exc)
                if isinstance(exc, WriteOutcomeUnknownError):  # may be in the log: not a 503
                    return problem(504, exc.code, f"the webhook: {OUTCOME_UNKNOWN}")
                return problem(
                    503,
                    "unavailable",
                    "not written: Kafka did not acknowledge",
                    headers={"Retry-After": "5"},
                )
            self._seen.add(key)  # the other gateways learn it from the record's header
        return _accepted(verified.msg_id, event)
