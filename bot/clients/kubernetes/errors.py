"""SDK and transport failures as `IntegrationError(system="kubernetes")`.

The message carries the apiserver's own words (e.g. the missing RBAC permission on a 403), so
whoever reads it in Slack knows what to fix.
"""

from __future__ import annotations

import json

from kubernetes_asyncio.client.exceptions import ApiException

from bot.clients.kubernetes.objects import JSON, dig_dicts
from bot.core.errors import IntegrationError

SYSTEM = "kubernetes"


class ConflictError(IntegrationError):
    """A 409 Conflict (stale object) as opposed to AlreadyExists; retried once by `execute`."""


def status_body(exc: ApiException) -> JSON:
    """The apiserver's Status object of a failed request (or its raw text as the message)."""
    raw: bytes | str | None = exc.body  # bytes from the REST client; already text on some paths
    body = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    try:
        parsed: object = json.loads(body) if body else {}
    except ValueError:
        return {"message": str(body)}
    return parsed if isinstance(parsed, dict) else {"message": str(parsed)}


def api_error(what: str, exc: ApiException) -> IntegrationError:
    status = status_body(exc)
    message = status.get("message") or exc.reason or "no message"
    code = int(exc.status) if exc.status else None
    reason = status.get("reason") or exc.reason or ""
    text = f"{what} failed ({code} {reason}): {message}"
    if code == 409 and reason == "Conflict":
        return ConflictError(SYSTEM, text, status=code)
    return IntegrationError(SYSTEM, text, status=code)


def transport_error(what: str, exc: Exception) -> IntegrationError:
    """No answer from the apiserver (connection refused, reset, timed out, ...)."""
    return IntegrationError(SYSTEM, f"{what} failed: {type(exc).__name__}: {exc}")


def http_error(what: str, status: int, body: str) -> IntegrationError:
    """A failed raw (not SDK-decoded) response, worded like `api_error`."""
    try:
        parsed: object = json.loads(body)
    except ValueError:
        parsed = {}
    fields = parsed if isinstance(parsed, dict) else {}
    message = fields.get("message") or body.strip() or "no message"
    return IntegrationError(
        SYSTEM, f"{what} failed ({status} {fields.get('reason', '')}): {message}", status=status
    )


def cause(exc: ApiException) -> str:
    """Why a request was refused, with the Status's causes (e.g. the PodDisruptionBudget's)."""
    status = status_body(exc)
    texts = [str(c.get("message")) for c in dig_dicts(status, "details", "causes") if c.get("message")]
    message = str(status.get("message") or exc.reason or "")
    return f"{message} {'; '.join(texts)}".strip()
