"""Slack request signatures (``v0``), checked in two steps: the headers alone, before the body
is read, then the HMAC over the body. Pure: the current time is passed in.

Slack signs ``v0:<X-Slack-Request-Timestamp>:<raw body>`` with HMAC-SHA256 under the signing
secret and sends ``X-Slack-Signature: v0=<hex>``; a request more than five minutes from now is
refused (protocols C.1). The same timestamp and signature identify one request, which is how
a replay within those five minutes is recognised.
"""

from __future__ import annotations

import hashlib
import hmac
import re

SIGNATURE_HEADER = "X-Slack-Signature"
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
RETRY_HEADER = "X-Slack-Retry-Num"
MAX_SKEW_S = 300

_SIGNATURE = re.compile(r"v0=[0-9a-fA-F]{64}")
# Seconds since the epoch: digits only (no sign, no fraction, no spaces), at most 12 of them.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def header_problem(signature: str | None, timestamp: str | None, now: float) -> str | None:
    """Why the signature headers cannot belong to a valid request now, or None."""
    if not signature or not _SIGNATURE.fullmatch(signature):
        return f"missing or malformed {SIGNATURE_HEADER}"
    if not timestamp or not _TIMESTAMP.fullmatch(timestamp):
        return f"missing or non-numeric {TIMESTAMP_HEADER}"
    if abs(now - int(timestamp)) > MAX_SKEW_S:
        return f"{TIMESTAMP_HEADER} is more than {MAX_SKEW_S // 60} minutes from now"
    return None


def signature_ok(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Constant-time check of ``X-Slack-Signature`` over the raw body."""
    if not secret:
        return False
    base = b"v0:" + timestamp.encode("utf-8") + b":" + body
    expected = "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("utf-8"), signature.lower().encode("utf-8"))
