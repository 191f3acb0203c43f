"""Webhook bodies as JSON: strict UTF-8, bounded nesting, and only what PostgreSQL can store.

Every webhook body is stored as ``jsonb`` before it is acknowledged. A body that parses here
but that PostgreSQL refuses (a ``\\u0000`` escape, a lone surrogate) or that Python cannot
parse without exhausting the recursion limit (thousands of nested arrays) would otherwise
surface as a 5xx, which the sender retries forever. Here it becomes a reason for a 400.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Deeper than any Alertmanager or PagerDuty payload nests (about 6 levels), shallow enough that
# no parser or renderer downstream recurses far on it.
MAX_DEPTH = 32
# jsonb cannot hold U+0000, and rejects the escape of a lone UTF-16 surrogate.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class JsonBodyError(ValueError):
    """The body is not a JSON document we can store; the message says why (safe to return)."""


# What replaces a character jsonb cannot store when a body is repaired.
REPLACEMENT = "\ufffd"


def loads(raw: bytes) -> Any:
    """Parse a UTF-8 JSON body (no other encoding: json.loads would guess UTF-16 from bytes)."""
    value = _parse(raw)
    check_storable(value)
    return value


def loads_repaired(raw: bytes) -> tuple[Any, int]:
    """Like `loads`, but characters jsonb cannot store (U+0000, lone surrogates) are replaced
    by U+FFFD instead of refusing the body; returns the value and how many were replaced.
    One bad label must not cost the other alerts of its group."""
    value = _parse(raw)
    check_storable(value, text=False)  # depth first: the repair below recurses
    repaired, count = _repair(value)
    check_storable(repaired)
    return repaired, count


def _repair(value: Any) -> tuple[Any, int]:
    if isinstance(value, str):
        return _UNSTORABLE.subn(REPLACEMENT, value)
    if isinstance(value, list):
        items = [_repair(item) for item in value]
        return [item for item, _ in items], sum(n for _, n in items)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        total = 0
        for key, item in value.items():
            fixed_key, n_key = _UNSTORABLE.subn(REPLACEMENT, key)
            fixed, n = _repair(item)
            out[fixed_key] = fixed
            total += n_key + n
        return out, total
    return value, 0


def _parse(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonBodyError(f"body is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonBodyError(f"body is not JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise JsonBodyError(f"body nests deeper than {MAX_DEPTH} levels") from None
    return value


def check_storable(value: Any, *, text: bool = True) -> None:
    """Refuse nesting deeper than MAX_DEPTH and (with `text`) strings, keys too, that jsonb
    cannot store."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if text:
                _check_text(item)
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise JsonBodyError(f"body nests deeper than {MAX_DEPTH} levels")
            children: list[Any] = list(item.values()) if isinstance(item, dict) else item
            if isinstance(item, dict) and text:
                for key in item:
                    _check_text(key)
            pending.extend((child, depth + 1) for child in children if isinstance(child, str | dict | list))


def _check_text(text: str) -> None:
    found = _UNSTORABLE.search(text)
    if found is not None:
        raise JsonBodyError(f"body holds U+{ord(found.group()):04X}, which cannot be stored")
