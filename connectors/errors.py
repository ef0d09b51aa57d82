"""Errors raised by connectors (the edges to external services).

Hierarchy::

    BackboneError (streams.errors)
    └── ConnectorError                 a connector could not be set up or used
        ├── ConnectorNotFoundError          no connector kind of that name is installed
        ├── CredentialsError           no usable credential for a service (fatal)
        └── CallError                  one call to an external service failed
            ├── ProviderThrottledError      429: slow down (retriable; honours Retry-After)
            ├── ProviderUnavailableError    5xx or a refused connection (retriable)
            ├── ProviderTimeoutError        no complete answer in time (retriable)
            ├── CircuitOpenError            the service's breaker refused the call (retriable)
            ├── MalformedResponseError      the body was not the JSON promised (retriable: usually a proxy page)
            ├── ResponseTooLargeError       the body exceeded the cap (fatal)
            └── RequestRejectedError        any other 4xx: the request itself is wrong (fatal)
                └── UnsendableRequestError  the request could not even be built (not sent)

Whether to retry is data on the class (``retriable``); ``retry_after_s`` carries the provider's
``Retry-After`` so the retry tiers can honour it. Messages never contain credentials.
"""

from __future__ import annotations

from streams.errors import BackboneError


class ConnectorError(BackboneError):
    code = "connector_error"


class ConnectorNotFoundError(ConnectorError):
    code = "connector_not_found"


class CredentialsError(ConnectorError):
    code = "credentials_error"


class CallError(ConnectorError):
    """One failed call; ``status`` is the HTTP status when there was one."""

    code = "call_error"

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class ProviderThrottledError(CallError):
    retriable = True
    code = "provider_throttled"


class ProviderUnavailableError(CallError):
    retriable = True
    code = "provider_unavailable"


class ProviderTimeoutError(CallError):
    retriable = True
    code = "provider_timeout"


class CircuitOpenError(CallError):
    retriable = True
    code = "circuit_open"


class MalformedResponseError(CallError):
    retriable = True
    code = "malformed_response"


class ResponseTooLargeError(CallError):
    code = "response_too_large"


class RequestRejectedError(CallError):
    code = "request_rejected"


class UnsendableRequestError(RequestRejectedError):
    """The request could not be built (a header value with CR/LF, a payload that is not JSON,
    JSON nested too deep, a bad URL...): nothing was sent, and sending it again cannot help."""

    code = "unsendable_request"
