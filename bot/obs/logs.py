"""Structured logging: JSON lines (default) or a console format for humans.

Stable event names are the log message (`incident.opened`); context goes in fields.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


class Component(StrEnum):
    """Every logger name of the bot, in one place (dashboards and alerts filter on them)."""

    APP = "incidentbot.app"
    COMMANDS = "incidentbot.commands"
    DOCKER = "incidentbot.docker"
    ENRICH = "incidentbot.enrich"
    HTTP = "incidentbot.http"
    INBOX = "incidentbot.inbox"
    INCIDENTS = "incidentbot.incidents"
    HOSTS = "incidentbot.hosts"
    KUBERNETES = "incidentbot.kubernetes"
    MIGRATE = "incidentbot.migrate"
    PAGERDUTY = "incidentbot.pagerduty"
    PAGERDUTY_API = "incidentbot.pagerduty.api"
    INTAKE = "incidentbot.pipeline"
    PUBLISH = "incidentbot.publish"
    REMEDIATION = "incidentbot.remediation"
    SLACK = "incidentbot.slack"
    TASKS = "incidentbot.tasks"
    TIMERS = "incidentbot.timers"
    INVESTIGATE = "incidentbot.investigate"


def logger(component: Component) -> logging.Logger:
    return logging.getLogger(component.value)


# Request id, incident id and Slack user of the work in progress; asyncio tasks inherit it, so
# every line logged while handling a request or an incident carries them.
_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("incidentbot_log_context", default=None)


@contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Add fields to every log line written inside the block (and in tasks it starts)."""
    merged = {**(_CONTEXT.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    found = dict(_CONTEXT.get() or {})
    found.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{datetime.fromtimestamp(record.created, UTC):%H:%M:%S} {record.levelname[:4]} {record.getMessage()}"
        if extra:
            line += f"  {extra}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(fmt: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access", "slack_bolt", "slack_sdk", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
