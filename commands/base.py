"""Shared pieces of the /incident commands: invocation, reply, argument parsing."""

from __future__ import annotations

import re
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.core import blockkit as kit
from bot.core.errors import UserError
from bot.core.incident import Incident, Severity
from bot.deps import Deps
from bot.flows import incidents

MENTION = re.compile(r"^<@([UW][A-Z0-9_]+)(?:\|[^>]*)?>$")
USER_ID = re.compile(r"^[UW][A-Z0-9_]{2,}$")
SEVERITY = re.compile(r"^(?:sev=)?(p[1-4])$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Invocation:
    user_id: str
    channel_id: str
    args: list[str]
    raw: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    in_channel: bool = False
    blocks: list[kit.Block] | None = None


Handler = Callable[[Deps, Invocation], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Subcommand:
    name: str
    usage: str
    summary: str
    handler: Handler
    aliases: tuple[str, ...] = field(default_factory=tuple)


def parse(text: str) -> tuple[str, list[str]]:
    """Split `/incident` text into a subcommand and arguments, honouring quotes."""
    try:
        words = shlex.split(text.strip())
    except ValueError as exc:
        raise UserError(f'Could not read that command ({exc}). Quote titles with "double quotes".') from None
    if not words:
        return "help", []
    return words[0].lower(), words[1:]


def parse_user(text: str) -> str:
    """A Slack user from `<@U123|name>` (how Slack escapes mentions) or a raw `U123` id."""
    match = MENTION.match(text.strip())
    if match:
        return match.group(1)
    if USER_ID.match(text.strip()):
        return text.strip()
    raise UserError(f"`{kit.escape(text)}` is not a user: mention them, e.g. `@alice`.")


def parse_severity(text: str) -> Severity:
    match = SEVERITY.match(text.strip())
    if not match:
        raise UserError(f"`{kit.escape(text)}` is not a severity: use P1, P2, P3 or P4.")
    return Severity(match.group(1).upper())


def ref_and_rest(inv: Invocation) -> tuple[str | None, list[str]]:
    """An optional leading incident reference (`#42`, `<#C123>`, `#inc-...`)."""
    if inv.args and (inv.args[0].startswith(("#", "<#")) or inv.args[0].isdigit()):
        return inv.args[0], inv.args[1:]
    return None, inv.args


async def incident_of(deps: Deps, inv: Invocation, ref: str | None) -> Incident:
    return await incidents.find_incident(deps, channel_id=inv.channel_id, ref=ref)
