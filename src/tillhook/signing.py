"""Standard Webhooks signatures (https://www.standardwebhooks.com/). Pure; stdlib only."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Iterable

from tillhook.rules import secret_key

# Every attempt signs: decode each secret once, not once per attempt.
_key = functools.lru_cache(maxsize=1024)(secret_key)


def sign(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """One `v1,<base64>` signature over `{id}.{timestamp}.{body}`."""
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp_s, body)
    digest = hmac.digest(_key(secret), signed, hashlib.sha256)
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: Iterable[str], msg_id: str, timestamp_s: int, body: bytes) -> str:
    """Space-separated signatures, one per valid secret (two while a rotation overlaps)."""
    return " ".join(sign(secret, msg_id, timestamp_s, body) for secret in secrets)


def hex_signature(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the body>`, keyed with the whole secret as written (what a
    receiver built for GitHub-style signatures is configured with)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
