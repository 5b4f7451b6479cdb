"""Signatures pinned by a known answer, and checked by the independent standardwebhooks package."""

from __future__ import annotations

import os

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tillhook.rules import new_secret
from tillhook.signing import sign, signature_header

# The Standard Webhooks reference test vector.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_known_answer() -> None:
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == EXPECTED


def _headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def _verify(secret: str, body: bytes, headers: dict[str, str]) -> None:
    Webhook(secret).verify(body, headers)


@pytest.mark.parametrize("size", [0, 1, 100, 10_000])
def test_standardwebhooks_verifies_our_signatures(size: int) -> None:
    import time

    secret, now = new_secret(), int(time.time())
    body = b'{"data": "%s"}' % os.urandom(size).hex().encode()  # the package decodes the body as JSON
    header = signature_header([secret], "msg_x", now, body)
    _verify(secret, body, _headers("msg_x", now, header))


def test_during_rotation_each_secret_verifies_on_its_own() -> None:
    import time

    old, new, now = new_secret(), new_secret(), int(time.time())
    header = signature_header([new, old], "msg_r", now, BODY)
    assert len(header.split(" ")) == 2
    for secret in (old, new):
        _verify(secret, BODY, _headers("msg_r", now, header))
    with pytest.raises(WebhookVerificationError):
        _verify(new_secret(), BODY, _headers("msg_r", now, header))


def test_a_changed_body_or_id_fails_verification() -> None:
    import time

    secret, now = new_secret(), int(time.time())
    header = signature_header([secret], "msg_a", now, BODY)
    with pytest.raises(WebhookVerificationError):
        _verify(secret, BODY + b" ", _headers("msg_a", now, header))
    with pytest.raises(WebhookVerificationError):
        _verify(secret, BODY, _headers("msg_b", now, header))
