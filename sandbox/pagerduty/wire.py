"""Request bodies and paging as PagerDuty's REST API and Events API read and answer them."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from sandbox.pagerduty.models import ApiError, invalid


async def read_json_object(request: web.Request, *, events: bool = False) -> dict[str, Any]:
    """The JSON object body; anything else is a 400 in the REST API's or the Events API's shape."""

    def refused(event_error: str, rest_error: str) -> ApiError:
        if events:
            return invalid_event(event_error)
        return invalid(rest_error)

    if request.content_type != "application/json":
        raise refused("Content-Type must be JSON", "Content-Type must be application/json")
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise refused("Invalid JSON", "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise refused("Body is not an object", "Request body must be a JSON object")
    return body


def invalid_event(*errors: str) -> ApiError:
    """The Events API's 400: ``{"status": "invalid event", "message": ..., "errors": [...]}``."""
    return ApiError(400, "Event object is invalid", 0, errors, events=True)


def paged_response(request: web.Request, items: list[dict[str, Any]], key: str) -> web.Response:
    """Classic offset pagination: ``limit`` (at most 100), ``offset``, ``more`` and ``total``."""
    try:
        limit = int(request.query.get("limit", "25"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        raise invalid("limit and offset must be integers") from None
    if limit < 1 or offset < 0:
        raise invalid("limit must be positive and offset non-negative")
    limit = min(limit, 100)
    page = items[offset : offset + limit]
    total = len(items) if request.query.get("total") == "true" else None
    return web.json_response(
        {key: page, "limit": limit, "offset": offset, "more": offset + limit < len(items), "total": total}
    )
