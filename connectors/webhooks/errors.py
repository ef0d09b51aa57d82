"""Errors raised by the webhooks connector.

Hierarchy::

    BackboneError (streams.errors)
    └── WebhookError                   something about a webhook went wrong
        ├── VerificationError          an inbound webhook failed verification (``reason`` says why)
        │   ├── MissingHeadersError    a required signature header is absent or malformed
        │   ├── StaleTimestampError    ``webhook-timestamp`` outside the tolerance window
        │   └── BadSignatureError      no presented signature matches any configured secret
        ├── InvalidSecretError         a ``whsec_`` secret that does not decode to 24-64 bytes
        ├── UnsafeDestinationError     SSRF guard: the URL resolves to an address we refuse
        ├── UnknownEndpointError       no endpoint with that id in the registry
        ├── InvalidHeaderError         a custom header that is not a valid HTTP header (fatal)
        └── DeliveryError              an outbound attempt failed (retriable unless said otherwise)

Verification errors are not retriable: the sender has to sign again. Delivery errors are.
"""

from __future__ import annotations

from streams.errors import BackboneError


class WebhookError(BackboneError):
    """Root of the webhooks connector's errors."""

    code = "webhook_error"


class VerificationError(WebhookError):
    """An inbound webhook failed verification."""

    code = "verification_failed"
    #: Short machine-readable reason, written into the ``webhook.rejected`` audit event.
    reason = "invalid"


class MissingHeadersError(VerificationError):
    reason = "missing_headers"


class StaleTimestampError(VerificationError):
    reason = "stale_timestamp"


class BadSignatureError(VerificationError):
    reason = "bad_signature"


class InvalidSecretError(WebhookError):
    code = "invalid_secret"


class UnsafeDestinationError(WebhookError):
    """The SSRF guard refused a destination; the delivery fails without any connection."""

    code = "unsafe_destination"
    retriable = True  # DNS may legitimately change; the schedule gives up eventually


class UnknownEndpointError(WebhookError):
    code = "unknown_endpoint"


class DeliveryError(WebhookError):
    code = "delivery_failed"
    retriable = True


class InvalidHeaderError(WebhookError):
    """An endpoint's custom header whose name is not an HTTP token or whose value holds CR, LF or
    another control character (header injection): refused at registration."""

    code = "invalid_header"
