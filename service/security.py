"""Credentials: callback tokens and API keys, always compared in constant time."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case


def callback_token(secret: str, job_id: str) -> str:
    """The token in a job's callback URL: an HMAC-SHA256 of the job id under the secret."""
    return _token(secret, job_id).decode().rstrip("=")


@functools.lru_cache(maxsize=8)
def _keyed(secret: str) -> hmac.HMAC:
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def _token(secret: str, job_id: str) -> bytes:
    # A copy of an HMAC already keyed skips the key set-up (4.1 -> 2.4 us per token)
    mac = _keyed(secret).copy()
    mac.update(b"callback:" + job_id.encode())
    return base64.urlsafe_b64encode(mac.digest())


def token_ok(secret: str, job_id: str, token: str) -> bool:
    expected = _token(secret, job_id).rstrip(b"=")
    return hmac.compare_digest(expected, token.encode())


def api_key_ok(keys: list[str], presented: str) -> bool:
    """True when ``presented`` equals one of ``keys``; every key is compared, in constant time."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(key.encode(), presented.encode())
    return found


def bearer(header: str | None) -> str:
    if not header:
        return ""
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of the Standard Webhooks spec (``v1,<base64>``)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature_problem(
    secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance: float = 300.0
) -> str | None:
    """Why a Standard Webhooks signature is not acceptable, or None when it is."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        return "missing webhook-id, webhook-timestamp or webhook-signature header"
    if not (timestamp.isdigit() and len(timestamp) <= 12):
        return "webhook-timestamp is not a Unix time in seconds"
    sent = int(timestamp)
    if abs(now - sent) > tolerance:
        return "webhook-timestamp is outside the 5-minute tolerance"
    expected = sign(secret, msg_id, sent, body).encode()
    if not any(hmac.compare_digest(expected, s.encode()) for s in signatures.split()):
        return "webhook-signature does not match"
    return None


def _base32(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_job_id(now: float | None = None) -> str:
    """``job_`` + 10 characters of milliseconds + 16 random: sorts by creation time."""
    millis = int((time.time() if now is None else now) * 1000)
    return "job_" + _base32(millis, 10) + _base32(secrets.randbits(80), 16)
