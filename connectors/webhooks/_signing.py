"""Standard Webhooks signatures (https://www.standardwebhooks.com) and GitHub's ``X-Hub-Signature-256``.

Signed content is ``{webhook-id}.{webhook-timestamp}.{raw body}``; the signature header is a
space-separated list of ``v1,<base64 HMAC-SHA256>`` so a sender can sign with the old and the new
secret while a key rotates. Verification always works on the raw body bytes and compares in
constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from connectors.webhooks.errors import (
    BadSignatureError,
    InvalidSecretError,
    MissingHeadersError,
    StaleTimestampError,
)

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 5 * 60
_MIN_KEY, _MAX_KEY = 24, 64


@dataclass(frozen=True, repr=False)
class WebhookSecret:
    """A signing key; ``str()`` never shows it (use :meth:`reveal` deliberately)."""

    key: bytes

    def __post_init__(self) -> None:
        if not _MIN_KEY <= len(self.key) <= _MAX_KEY:
            raise InvalidSecretError(f"a webhook secret must be {_MIN_KEY}-{_MAX_KEY} bytes")

    @classmethod
    def parse(cls, text: str) -> WebhookSecret:
        body = text.removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidSecretError("a webhook secret must be whsec_ + base64") from exc
        return cls(key)

    @classmethod
    def generate(cls, size: int = 32) -> WebhookSecret:
        return cls(secrets.token_bytes(size))

    def reveal(self) -> str:
        return SECRET_PREFIX + base64.b64encode(self.key).decode()

    def __repr__(self) -> str:
        return "WebhookSecret(**********)"


def _digest(secret: WebhookSecret, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    return hmac.new(secret.key, signed, hashlib.sha256).digest()


def sign(secret: WebhookSecret, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    return "v1," + base64.b64encode(_digest(secret, msg_id, timestamp, body)).decode()


def signature_header(
    secrets_: Iterable[WebhookSecret], msg_id: str, timestamp: int, body: bytes
) -> str:
    """The ``webhook-signature`` value: one signature per active secret (two during rotation)."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


def signed_headers(
    secrets_: Iterable[WebhookSecret], msg_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header(secrets_, msg_id, ts, body),
    }


@dataclass(frozen=True)
class VerifiedWebhook:
    msg_id: str
    timestamp: int


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def verify(
    secrets_: Iterable[WebhookSecret],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> VerifiedWebhook:
    """Verify a Standard Webhooks request; any configured secret may match any presented signature."""
    return verify_lowered(secrets_, _lower(headers), body, now=now, tolerance_s=tolerance_s)


def verify_lowered(
    secrets_: Iterable[WebhookSecret],
    h: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> VerifiedWebhook:
    """:func:`verify` for headers whose names are already lower-case (the ingress lowers them
    once for everything it reads)."""
    msg_id, ts_text, presented = (
        h.get("webhook-id"),
        h.get("webhook-timestamp"),
        h.get("webhook-signature"),
    )
    if not (msg_id and ts_text and presented):
        raise MissingHeadersError(
            "webhook-id, webhook-timestamp and webhook-signature are required"
        )
    try:
        timestamp = int(ts_text)
    except ValueError as exc:
        raise MissingHeadersError("webhook-timestamp is not an integer") from exc
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise StaleTimestampError(f"timestamp {timestamp} is outside +-{tolerance_s} s")
    candidates = []
    for item in presented.split():
        version, _, value = item.partition(",")
        if version != "v1":
            continue  # unknown schemes (e.g. v1a asymmetric) are skipped, as the spec says
        try:
            candidates.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    for secret in secrets_:
        expected = _digest(secret, msg_id, timestamp, body)
        # compare against every candidate, never stopping early on a length or prefix mismatch
        if any(hmac.compare_digest(expected, c) for c in candidates):
            return VerifiedWebhook(msg_id, timestamp)
    raise BadSignatureError("no signature matches")


# --- GitHub -------------------------------------------------------------------------------------

GITHUB_HEADER = "x-hub-signature-256"
GITHUB_DELIVERY_HEADER = "x-github-delivery"


def sign_github(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_github(
    secrets_: Iterable[bytes], headers: Mapping[str, str], body: bytes
) -> VerifiedWebhook:
    """GitHub signs only the body, so replay protection rests on ``X-GitHub-Delivery``."""
    h = _lower(headers)
    presented = h.get(GITHUB_HEADER, "")
    delivery = h.get(GITHUB_DELIVERY_HEADER, "")
    if not presented.startswith("sha256=") or not delivery:
        raise MissingHeadersError("X-Hub-Signature-256 and X-GitHub-Delivery are required")
    for secret in secrets_:
        if hmac.compare_digest(sign_github(secret, body).encode(), presented.encode()):
            return VerifiedWebhook(delivery, int(time.time()))
    raise BadSignatureError("no signature matches")
