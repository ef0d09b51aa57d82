"""Webhooks in and out: Standard Webhooks signing, the SSRF guard, the retry schedule, delivery.

This package is the pure core (no Kafka): signing and verification, the SSRF guard, the retry
schedule and delivery decisions, rate limits and the HTTP sender. The Kafka-backed parts are the
public modules :mod:`connectors.webhooks.registry` (endpoint registry) and
:mod:`connectors.webhooks.gateway` (inbound route and endpoint API for the HTTP gateway).
"""

from typing import TYPE_CHECKING

from streams._lazy import lazy_exports

if TYPE_CHECKING:
    from connectors.webhooks._decide import Action, Decision, decide
    from connectors.webhooks._ratelimit import EndpointLimits, TokenBucket
    from connectors.webhooks._schedule import (
        MAX_RETRY_AFTER_S,
        SVIX_DELAYS_S,
        RetrySchedule,
        Verdict,
        judge,
        parse_retry_after,
    )
    from connectors.webhooks._sender import AttemptResult, SenderSettings, WebhookSender
    from connectors.webhooks._signing import (
        VerifiedWebhook,
        WebhookSecret,
        sign,
        sign_github,
        signature_header,
        signed_headers,
        verify,
        verify_github,
    )
    from connectors.webhooks._ssrf import (
        DestinationPolicy,
        GuardedResolver,
        check_url,
        parse_ip_literal,
        refusal_reason,
    )

__all__ = [
    "MAX_RETRY_AFTER_S",
    "SVIX_DELAYS_S",
    "Action",
    "AttemptResult",
    "Decision",
    "DestinationPolicy",
    "EndpointLimits",
    "GuardedResolver",
    "RetrySchedule",
    "SenderSettings",
    "TokenBucket",
    "Verdict",
    "VerifiedWebhook",
    "WebhookSecret",
    "WebhookSender",
    "check_url",
    "decide",
    "judge",
    "parse_ip_literal",
    "parse_retry_after",
    "refusal_reason",
    "sign",
    "sign_github",
    "signature_header",
    "signed_headers",
    "verify",
    "verify_github",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Action": "connectors.webhooks._decide",
        "Decision": "connectors.webhooks._decide",
        "decide": "connectors.webhooks._decide",
        "EndpointLimits": "connectors.webhooks._ratelimit",
        "TokenBucket": "connectors.webhooks._ratelimit",
        "MAX_RETRY_AFTER_S": "connectors.webhooks._schedule",
        "SVIX_DELAYS_S": "connectors.webhooks._schedule",
        "RetrySchedule": "connectors.webhooks._schedule",
        "Verdict": "connectors.webhooks._schedule",
        "judge": "connectors.webhooks._schedule",
        "parse_retry_after": "connectors.webhooks._schedule",
        "AttemptResult": "connectors.webhooks._sender",
        "SenderSettings": "connectors.webhooks._sender",
        "WebhookSender": "connectors.webhooks._sender",
        "VerifiedWebhook": "connectors.webhooks._signing",
        "WebhookSecret": "connectors.webhooks._signing",
        "sign": "connectors.webhooks._signing",
        "sign_github": "connectors.webhooks._signing",
        "signature_header": "connectors.webhooks._signing",
        "signed_headers": "connectors.webhooks._signing",
        "verify": "connectors.webhooks._signing",
        "verify_github": "connectors.webhooks._signing",
        "DestinationPolicy": "connectors.webhooks._ssrf",
        "GuardedResolver": "connectors.webhooks._ssrf",
        "check_url": "connectors.webhooks._ssrf",
        "parse_ip_literal": "connectors.webhooks._ssrf",
        "refusal_reason": "connectors.webhooks._ssrf",
    },
)
