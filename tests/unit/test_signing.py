"""Signatures pinned by a known answer, and checked by the independent standardwebhooks package."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
from datetime import UTC, datetime

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

RNG = random.Random(20261122)


def test_known_answer() -> None:
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == EXPECTED


def test_known_answer_through_the_header() -> None:
    assert signature_header([SECRET], MSG_ID, TIMESTAMP, BODY) == EXPECTED


@pytest.mark.parametrize(
    ("msg_id", "timestamp", "body"),
    [
        ("msg_p5jXN8AQM9LWM0D4loKWxJeK", TIMESTAMP, BODY),  # one letter of the id
        (MSG_ID, TIMESTAMP + 1, BODY),  # one second later
        (MSG_ID, TIMESTAMP, b'{"test": 2432232315}'),  # one digit of the body
        (MSG_ID, TIMESTAMP, b'{"test":2432232314}'),  # whitespace: the bytes are signed, not the JSON value
    ],
)
def test_every_signed_part_changes_the_signature(msg_id: str, timestamp: int, body: bytes) -> None:
    assert sign(SECRET, msg_id, timestamp, body) != EXPECTED


def test_signature_shape() -> None:
    scheme, _, digest = sign(new_secret(), "msg_x", TIMESTAMP, b"{}").partition(",")
    assert scheme == "v1"
    assert len(base64.b64decode(digest, validate=True)) == 32  # HMAC-SHA256


def _headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def _verify(secret: str, body: bytes, headers: dict[str, str]) -> object:
    return Webhook(secret).verify(body, headers)


def _random_body(size: int) -> bytes:
    # JSON, because the package parses what it verifies; non-ASCII text and odd spacing, because
    # the exact bytes are what is signed.
    alphabet = 'abcXYZ019 _-"\\/é€😀\u2028'
    text = "".join(RNG.choice(alphabet) for _ in range(size))
    document = {"id": f"msg_{size}", "data": {"text": text, "n": RNG.randrange(-(2**70), 2**70)}}
    return json.dumps(document, ensure_ascii=RNG.random() < 0.5, indent=RNG.choice([None, 1])).encode()


@pytest.mark.parametrize("size", [0, 1, 7, 100, 1000, 20_000])
def test_standardwebhooks_verifies_our_signatures(size: int) -> None:
    secret, now = new_secret(), int(time.time())
    body = _random_body(size)
    msg_id = f"msg_{RNG.getrandbits(64):x}"
    header = signature_header([secret], msg_id, now, body)
    assert _verify(secret, body, _headers(msg_id, now, header)) == json.loads(body)


@pytest.mark.parametrize("seed", range(20))
def test_our_signature_equals_the_package_signature(seed: int) -> None:
    rng = random.Random(seed)
    secret = "whsec_" + base64.b64encode(rng.randbytes(rng.randint(24, 64))).decode()
    body = _random_body(rng.randint(0, 300))
    msg_id, timestamp = f"msg_{rng.getrandbits(80):x}", rng.randint(1_000_000_000, 4_000_000_000)
    theirs = Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body.decode())
    assert sign(secret, msg_id, timestamp, body) == theirs


def test_during_rotation_each_secret_verifies_on_its_own() -> None:
    old, new, now = new_secret(), new_secret(), int(time.time())
    header = signature_header([new, old], "msg_r", now, BODY)
    signatures = header.split(" ")
    assert signatures == [sign(new, "msg_r", now, BODY), sign(old, "msg_r", now, BODY)]
    assert signatures[0] != signatures[1]
    for secret in (old, new):
        _verify(secret, BODY, _headers("msg_r", now, header))
    # Each signature alone is enough for its own secret, and only for it.
    _verify(new, BODY, _headers("msg_r", now, signatures[0]))
    _verify(old, BODY, _headers("msg_r", now, signatures[1]))
    with pytest.raises(WebhookVerificationError):
        _verify(old, BODY, _headers("msg_r", now, signatures[0]))
    with pytest.raises(WebhookVerificationError):
        _verify(new_secret(), BODY, _headers("msg_r", now, header))


def test_signature_header_keeps_the_order_of_secrets() -> None:
    a, b, c = new_secret(), new_secret(), new_secret()
    header = signature_header([a, b, c], MSG_ID, TIMESTAMP, BODY)
    assert header == " ".join(sign(s, MSG_ID, TIMESTAMP, BODY) for s in (a, b, c))


@pytest.mark.parametrize(
    ("body", "msg_id", "shift_s"),
    [
        (BODY + b" ", "msg_a", 0),  # a changed body
        (b'{"test": 2432232315}', "msg_a", 0),
        (BODY, "msg_b", 0),  # a changed id
        (BODY, "msg_a", 1),  # a changed timestamp
    ],
)
def test_tampering_fails_verification(body: bytes, msg_id: str, shift_s: int) -> None:
    secret, now = new_secret(), int(time.time())
    header = signature_header([secret], "msg_a", now, BODY)
    _verify(secret, BODY, _headers("msg_a", now, header))  # untouched, it passes
    with pytest.raises(WebhookVerificationError):
        _verify(secret, body, _headers(msg_id, now + shift_s, header))


def test_a_wrong_secret_fails_verification() -> None:
    secret, now = new_secret(), int(time.time())
    header = signature_header([secret], "msg_w", now, BODY)
    with pytest.raises(WebhookVerificationError):
        _verify(new_secret(), BODY, _headers("msg_w", now, header))
    with pytest.raises(WebhookVerificationError):
        _verify(SECRET, BODY, _headers("msg_w", now, header))


def test_secret_key_is_the_decoded_base64_not_the_text() -> None:
    # A common receiver bug is to HMAC with the "whsec_..." text; ours must not match that.
    wrong = hmac.new(SECRET.encode(), f"{MSG_ID}.{TIMESTAMP}.".encode() + BODY, hashlib.sha256).digest()
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) != "v1," + base64.b64encode(wrong).decode()


def test_malformed_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        sign("whsec_not base64!", MSG_ID, TIMESTAMP, BODY)
