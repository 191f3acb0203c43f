"""Diagnostics for the incident channel: a screenful of what matters, the rest in a thread.

A log tail of 200 lines is mostly `200 OK`; the responder needs its warnings and errors. The
channel shows at most MAX_SHOWN_DIAGNOSTIC_LINES lines (the warnings and errors when the output
is longer than that and has any, else its first lines, or a log's last ones); the whole output
goes in one reply in the message's thread. Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from bot.core.blockkit import Message, context, message
from bot.render.runbook import diagnostics_message

__all__ = ["MAX_SHOWN_DIAGNOSTIC_LINES", "DiagnosticOutput", "diagnostic_messages", "is_severe"]

#: Diagnostic lines shown in the channel (a screenful); the whole output goes in a thread reply.
MAX_SHOWN_DIAGNOSTIC_LINES = 15

# A level word as logs and Kubernetes write it (`level=error`, `WARN`, an event's `Warning`, a
# pod's `CrashLoopBackOff`); `errors_total` or `0 errors` are not one.
_SEVERE_WORD = re.compile(
    r"\b(?:warn|warning|err|error|fatal|panic|crit|critical|exception|traceback|failed|"
    r"crashloopbackoff|imagepullbackoff|errimagepull|oomkilled|evicted|backoff|unhealthy)\b",
    re.IGNORECASE,
)
_SEVERE_LEVELS = frozenset(
    {"warn", "warning", "error", "err", "fatal", "panic", "critical", "crit", "alert", "emerg"}
)
_LEVEL_KEYS = ("level", "severity", "lvl", "loglevel", "log.level")


@dataclass(frozen=True, slots=True)
class DiagnosticOutput:
    """One diagnostic's output: `tail` for a log (its last lines matter most)."""

    title: str
    lines: tuple[str, ...]
    tail: bool = False


def _json_level(line: str) -> str | None:
    """The level of a structured (JSON) log line, if it is one and names its level."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        record = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    for key in _LEVEL_KEYS:
        value = record.get(key)
        if isinstance(value, str):
            return value.lower()
    return None


def is_severe(line: str) -> bool:
    """Whether a line is a warning or an error: a structured log's level when it has one (its
    message may say "error" at level info), else a level word anywhere in the line."""
    level = _json_level(line)
    if level is not None:
        return level in _SEVERE_LEVELS
    return _SEVERE_WORD.search(line) is not None


def _chosen(output: DiagnosticOutput) -> tuple[list[str], str]:
    """(the lines shown in the channel, what they are) for an output longer than a screenful."""
    lines = list(output.lines)
    severe = [line for line in lines if is_severe(line)]
    limit = MAX_SHOWN_DIAGNOSTIC_LINES
    if severe:
        shown = severe[-limit:] if output.tail else severe[:limit]
        kind = "warnings and errors"
        if len(shown) < len(severe):
            kind = f"{'last' if output.tail else 'first'} {len(shown)} of {len(severe)} warnings and errors"
        return shown, f"the {kind}"
    shown = lines[-limit:] if output.tail else lines[:limit]
    return shown, f"the {'last' if output.tail else 'first'} {len(shown)} lines (no warnings or errors)"


def diagnostic_messages(output: DiagnosticOutput) -> tuple[Message, Message | None]:
    """(the message for the channel, the whole output for its thread or None when the channel
    message shows it all)."""
    lines = [piece for line in output.lines for piece in (line.splitlines() or [""])]
    if len(lines) <= MAX_SHOWN_DIAGNOSTIC_LINES:
        return diagnostics_message(output.title, lines, tail=output.tail), None
    full = DiagnosticOutput(output.title, tuple(lines), output.tail)
    shown, what = _chosen(full)
    brief = diagnostics_message(output.title, shown, tail=output.tail)
    note = f"Showing {what} of {len(lines)} lines; all {len(lines)} lines are in the thread."
    # The fallback text says how long the whole output is, not the part shown.
    brief = message(brief.text.rsplit(" (", 1)[0] + f" ({len(lines)} lines)", [*brief.blocks, context(note)])
    return brief, diagnostics_message(output.title, lines, tail=output.tail)
