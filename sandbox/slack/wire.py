"""Web API plumbing shared by every method: errors, argument parsing, cursors, timestamps, signing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable
from typing import Any, TypeVar

from sandbox.slack.limits import CHANNEL_NAME_RE, MAX_CHANNEL_NAME

T = TypeVar("T")
JSON = dict[str, Any]


class SlackError(Exception):
    """A Web API error: ``{"ok": false, "error": ...}`` plus optional extra fields and messages."""

    def __init__(self, error: str, *, messages: Iterable[str] = (), **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.messages = list(messages)
        self.extra = extra


def invalid_args(*messages: str) -> SlackError:
    return SlackError("invalid_arguments", messages=[f"[ERROR] {m}" for m in messages])


def truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return False


def shorten(value: Any, limit: int = 80) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        text = value if not isinstance(value, str) or len(value) <= limit else value[:limit] + "…"
        return text
    dumped = json.dumps(value, default=str)
    return dumped if len(dumped) <= limit else dumped[:limit] + "…"


def encode_cursor(offset: int) -> str:
    return base64.b64encode(f"next:{offset}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        kind, _, number = base64.b64decode(cursor, validate=True).decode().partition(":")
        offset = int(number)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SlackError("invalid_cursor") from exc
    if kind != "next" or offset < 0:
        raise SlackError("invalid_cursor")
    return offset


def ts_key(ts: str) -> tuple[int, int]:
    sec, _, frac = ts.partition(".")
    try:
        return int(sec), int((frac or "0").ljust(6, "0")[:6])
    except ValueError:
        return (0, 0)


def sign(signing_secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Headers Slack sends with a request: v0 HMAC-SHA256 over ``v0:<ts>:<body>`` (protocols C.1)."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


# -- arguments: query, form and JSON values arrive as strings, numbers or booleans --------


def opt_str(args: JSON, name: str) -> str | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise invalid_args(f"must be a string [json-pointer:/{name}]")


def req_str(args: JSON, name: str) -> str:
    value = opt_str(args, name)
    if not value:
        raise invalid_args(f"missing required field: {name}")
    return value


def bool_arg(args: JSON, name: str, default: bool = False) -> bool:
    value = args.get(name)
    if value is None or value == "":
        return default
    return truthy(value)


def int_arg(args: JSON, name: str, default: int) -> int:
    value = args.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise invalid_args(f"must be an integer [json-pointer:/{name}]")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise invalid_args(f"must be an integer [json-pointer:/{name}]") from exc


def json_arg(args: JSON, name: str, error: str) -> Any:
    value = args.get(name)
    if isinstance(value, str):
        if value.strip() == "":
            return None
        try:
            return json.loads(value)
        except ValueError as exc:
            raise SlackError(error) from exc
    return value


def paginate(items: list[T], args: JSON, default: int, maximum: int) -> tuple[list[T], JSON]:
    limit = int_arg(args, "limit", default)
    if limit <= 0:
        limit = default
    limit = min(limit, maximum)
    cursor = opt_str(args, "cursor")
    offset = decode_cursor(cursor) if cursor else 0
    page = items[offset : offset + limit]
    more = offset + limit < len(items)
    return page, {"next_cursor": encode_cursor(offset + limit) if more else ""}


def channel_name_error(name: str) -> str | None:
    if not name:
        return "invalid_name_required"
    if len(name) > MAX_CHANNEL_NAME:
        return "invalid_name_maxlength"
    if not CHANNEL_NAME_RE.match(name):
        return "invalid_name_specials"
    if not name.strip("-_"):
        return "invalid_name_punctuation"
    return None
