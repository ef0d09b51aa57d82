"""Websocket tokens: JWTs (PyJWT) that name the channels their holder may read.

Claims: ``sub`` (who), ``channels`` (patterns such as ``integration:*``, matched with
:func:`fnmatch.fnmatchcase`), ``exp`` (required), ``iat`` and ``jti`` (the token's id; connection
caps count per ``jti``).
"""

from __future__ import annotations

import fnmatch
import time
import uuid
from dataclasses import dataclass

import jwt

from connectors.realtime.errors import TokenExpiredError, TokenRejectedError


@dataclass(frozen=True)
class Grant:
    """What a verified token allows."""

    subject: str
    patterns: tuple[str, ...]
    expires_at: float
    token_id: str

    def allows(self, channel: str) -> bool:
        return any(fnmatch.fnmatchcase(channel, pattern) for pattern in self.patterns)


def mint(
    key: str,
    channels: list[str],
    *,
    ttl_s: float,
    subject: str = "dev",
    algorithm: str = "HS256",
    now: float | None = None,
) -> str:
    issued = time.time() if now is None else now
    claims = {
        "sub": subject,
        "channels": list(channels),
        "iat": int(issued),
        "exp": int(issued + ttl_s),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm=algorithm)


def verify(token: object, key: str, algorithms: tuple[str, ...]) -> Grant:
    if not isinstance(token, str) or not token:
        raise TokenRejectedError("missing token")
    try:
        claims = jwt.decode(
            token, key, algorithms=list(algorithms), options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpiredError("token expired") from exc
    except jwt.PyJWTError as exc:
        raise TokenRejectedError(f"invalid token: {exc}") from exc
    channels = claims.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise TokenRejectedError("invalid token: `channels` must be a list of strings")
    return Grant(
        subject=str(claims["sub"]),
        patterns=tuple(channels),
        expires_at=float(claims["exp"]),
        token_id=str(claims.get("jti") or token[-16:]),
    )
