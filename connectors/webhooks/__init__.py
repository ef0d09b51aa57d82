"""Webhooks in and out: Standard Webhooks signing, the SSRF guard, the retry schedule, delivery.

Public surface; everything else lives in private modules.
"""

from connectors.webhooks._schedule import (
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
    "SVIX_DELAYS_S",
    "AttemptResult",
    "DestinationPolicy",
    "GuardedResolver",
    "RetrySchedule",
    "SenderSettings",
    "Verdict",
    "VerifiedWebhook",
    "WebhookSecret",
    "WebhookSender",
    "check_url",
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
