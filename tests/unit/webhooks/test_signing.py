from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks

from connectors.webhooks import (
    WebhookSecret,
    sign,
    sign_github,
    signature_header,
    signed_headers,
    verify,
    verify_github,
)
from connectors.webhooks.errors import (
    BadSignatureError,
    InvalidSecretError,
    MissingHeadersError,
    StaleTimestampError,
)

# The spec's published vector (standard-webhooks reference library tests).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_published_vector_signs() -> None:
    assert sign(WebhookSecret.parse(VECTOR_SECRET), VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG


def test_published_vector_verifies() -> None:
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TS),
        "webhook-signature": VECTOR_SIG,
    }
    got = verify([WebhookSecret.parse(VECTOR_SECRET)], headers, VECTOR_BODY, now=VECTOR_TS + 10)
    assert got.msg_id == VECTOR_ID
    assert got.timestamp == VECTOR_TS


def test_secret_round_trip_and_hidden() -> None:
    secret = WebhookSecret.generate()
    assert WebhookSecret.parse(secret.reveal()) == secret
    assert secret.reveal().startswith("whsec_")
    assert secret.reveal() not in repr(secret)


@pytest.mark.parametrize("text", ["whsec_", "whsec_!!!notbase64", "whsec_" + "QUFB" * 2])
def test_bad_secrets(text: str) -> None:
    with pytest.raises(InvalidSecretError):
        WebhookSecret.parse(text)


def _headers(secret: WebhookSecret, body: bytes, ts: int) -> dict[str, str]:
    return signed_headers([secret], "msg_1", body, timestamp=ts)


def test_tampered_body_rejected() -> None:
    secret = WebhookSecret.generate()
    headers = _headers(secret, b"{}", int(time.time()))
    with pytest.raises(BadSignatureError):
        verify([secret], headers, b'{"x":1}')


def test_wrong_secret_rejected() -> None:
    headers = _headers(WebhookSecret.generate(), b"{}", int(time.time()))
    with pytest.raises(BadSignatureError):
        verify([WebhookSecret.generate()], headers, b"{}")


@pytest.mark.parametrize("skew", [-301, 301, -10_000])
def test_stale_timestamp_rejected(skew: int) -> None:
    secret = WebhookSecret.generate()
    now = 1_700_000_000
    headers = _headers(secret, b"{}", now + skew)
    with pytest.raises(StaleTimestampError):
        verify([secret], headers, b"{}", now=now)


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_within_tolerance_accepted(skew: int) -> None:
    secret = WebhookSecret.generate()
    now = 1_700_000_000
    verify([secret], _headers(secret, b"{}", now + skew), b"{}", now=now)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_rejected(missing: str) -> None:
    secret = WebhookSecret.generate()
    headers = _headers(secret, b"{}", int(time.time()))
    del headers[missing]
    with pytest.raises(MissingHeadersError):
        verify([secret], headers, b"{}")


def test_non_numeric_timestamp_rejected() -> None:
    secret = WebhookSecret.generate()
    headers = _headers(secret, b"{}", int(time.time()))
    headers["webhook-timestamp"] = "soon"
    with pytest.raises(MissingHeadersError):
        verify([secret], headers, b"{}")


def test_rotation_several_signatures_and_secrets() -> None:
    old, new = WebhookSecret.generate(), WebhookSecret.generate()
    ts = int(time.time())
    both = signature_header([old, new], "msg_r", ts, b"x")
    assert len(both.split()) == 2
    headers = {"webhook-id": "msg_r", "webhook-timestamp": str(ts), "webhook-signature": both}
    # a receiver that knows only one of the two secrets accepts
    verify([old], headers, b"x")
    verify([new], headers, b"x")
    # a receiver that holds both secrets accepts a message signed with either alone
    headers["webhook-signature"] = sign(new, "msg_r", ts, b"x")
    verify([old, new], headers, b"x")


def test_unknown_versions_and_garbage_are_skipped() -> None:
    secret = WebhookSecret.generate()
    ts = int(time.time())
    good = sign(secret, "m", ts, b"b")
    headers = {
        "webhook-id": "m",
        "webhook-timestamp": str(ts),
        "webhook-signature": f"v1a,abc v1,@@@ {good}",
    }
    verify([secret], headers, b"b")
    headers["webhook-signature"] = "v2," + good.split(",")[1]
    with pytest.raises(BadSignatureError):
        verify([secret], headers, b"b")


def test_header_names_are_case_insensitive() -> None:
    secret = WebhookSecret.generate()
    headers = {k.title(): v for k, v in _headers(secret, b"b", int(time.time())).items()}
    verify([secret], headers, b"b")


# --- interop with the reference library -------------------------------------------------------


def test_reference_library_signature_accepted() -> None:
    secret = WebhookSecret.generate()
    reference = standardwebhooks.Webhook(secret.reveal())
    now = datetime.now(tz=UTC)
    body = '{"type": "invoice.paid", "n": 1}'
    headers = {
        "webhook-id": "msg_ref",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": reference.sign("msg_ref", now, body),
    }
    assert verify([secret], headers, body.encode()).msg_id == "msg_ref"


def test_our_signature_verifies_with_reference_library() -> None:
    old, new = WebhookSecret.generate(), WebhookSecret.generate()
    body = b'{"type": "call.succeeded"}'
    headers = signed_headers([old, new], "msg_ours", body)
    for secret in (old, new):
        assert standardwebhooks.Webhook(secret.reveal()).verify(body, headers) == {
            "type": "call.succeeded"
        }


def test_reference_library_rejects_our_signature_with_other_secret() -> None:
    headers = signed_headers([WebhookSecret.generate()], "m", b"{}")
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(WebhookSecret.generate().reveal()).verify(b"{}", headers)


# --- GitHub ------------------------------------------------------------------------------------


def test_github_known_answer() -> None:
    # GitHub's documented example: secret "It's a Secret to Everybody", payload "Hello, World!"
    assert (
        sign_github(b"It's a Secret to Everybody", b"Hello, World!")
        == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_github_verify() -> None:
    body = b'{"action": "opened"}'
    headers = {"X-Hub-Signature-256": sign_github(b"s3cret", body), "X-GitHub-Delivery": "d-1"}
    assert verify_github([b"other", b"s3cret"], headers, body).msg_id == "d-1"
    with pytest.raises(BadSignatureError):
        verify_github([b"other"], headers, body)
    with pytest.raises(MissingHeadersError):
        verify_github([b"s3cret"], {"X-GitHub-Delivery": "d-1"}, body)


def test_signature_is_base64_sha256() -> None:
    value = sign(WebhookSecret.generate(), "m", 1, b"")
    assert len(base64.b64decode(value.split(",")[1])) == 32
