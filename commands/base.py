"""Shared pieces of the /incident commands: the flows they call, invocation, reply, argument
parsing."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from bot.core import blockkit as kit
from bot.core.errors import UserError
from bot.core.incident import Incident, Severity
from bot.core.playbooks import PlaybookSet
from bot.core.policy import Permission
from bot.core.ports import Clock
from bot.flows.authorize import Authorizer
from bot.flows.correlation.corrections import Corrections
from bot.flows.enrich import Enricher
from bot.flows.incidents import IncidentFlows
from bot.flows.investigate.service import Investigator
from bot.flows.pins import Pins
from bot.flows.postmortems import Postmortems
from bot.flows.remediation.decide import Decisions
from bot.flows.remediation.propose import Proposer
from bot.flows.silences import SilenceFlow
from bot.flows.storms import Storms
from bot.flows.supervisor import Supervisor

MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
SEVERITY = re.compile(r"^(?:sev=)?(p[1-4])$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Flows:
    """The use cases the Slack edge calls, built by the composition root (bot/app.py). Handlers
    reach nothing else: no store, no client."""

    incidents: IncidentFlows
    silences: SilenceFlow
    postmortems: Postmortems
    enrich: Enricher
    proposer: Proposer
    decisions: Decisions
    pins: Pins
    playbooks: PlaybookSet
    supervisor: Supervisor
    clock: Clock
    authorize: Authorizer
    correlation: Corrections
    storms: Storms
    investigator: Investigator | None = None


@dataclass(frozen=True, slots=True)
class Invocation:
    user_id: str
    channel_id: str
    args: list[str]
    raw: str = ""
    #: What follows the subcommand, exactly as typed (free text keeps its quotes).
    text: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    in_channel: bool = False
    blocks: list[kit.Block] | None = None


Handler = Callable[[Flows, Invocation], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Subcommand:
    name: str
    usage: str
    summary: str
    handler: Handler
    aliases: tuple[str, ...] = field(default_factory=tuple)


QUOTES = "\"'“”‘’"
CLOSING = {"“": "”", "‘": "’"}


def _quoted_end(text: str, start: int) -> int | None:
    """Where the quote opened at `start` closes, when it closes at the end of a word."""
    closing = CLOSING.get(text[start], text[start])
    end = text.find(closing, start + 1)
    while end != -1:
        if end + 1 == len(text) or text[end + 1].isspace():
            return end
        end = text.find(closing, end + 1)
    return None


def split_words(text: str) -> list[str]:
    """Words of a command, forgiving as a person types at 3 a.m.: a word that starts with a
    quote (or a `key=` followed by one) runs to the matching quote at the end of a word, and
    loses that pair; any other quote is an ordinary character (`We're`, `"5.."` inside PromQL).
    Unlike a shell, nothing here can fail."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        word: list[str] = []
        at_value = True  # a quote may open here: the word's start, or just after its first "="
        while i < n and not text[i].isspace():
            char = text[i]
            end = _quoted_end(text, i) if at_value and char in QUOTES else None
            if end is not None:
                word.append(text[i + 1 : end])
                i = end + 1
                break
            at_value = char == "=" and "=" not in word
            word.append(char)
            i += 1
        words.append("".join(word))
    return words


def unquote(text: str) -> str:
    """`text` without one pair of quotes around all of it (the way titles used to be typed)."""
    value = text.strip()
    if len(value) >= 2 and value[0] in QUOTES and _quoted_end(value, 0) == len(value) - 1:
        return value[1:-1].strip()
    return value


def parse(text: str) -> tuple[str, list[str]]:
    """Split `/incident` text into a subcommand and its words (see `split_words`)."""
    words = split_words(text.strip())
    if not words:
        return "help", []
    return words[0].lower(), words[1:]


def rest_of(text: str) -> str:
    """What follows the first word of `text`, verbatim (the free text of a subcommand)."""
    parts = text.strip().split(maxsplit=1)
    return parts[1] if len(parts) == 2 else ""


def parse_user(text: str) -> str:
    """A Slack user from `<@U123|name>` (how Slack escapes mentions) or a raw `U123` id."""
    match = MENTION.match(text.strip())
    if match:
        return match.group(1)
    if USER_ID.match(text.strip()):
        return text.strip()
    raise UserError(f"`{kit.inline(text, 100)}` is not a user: mention them, e.g. `@alice`.")


def parse_severity(text: str) -> Severity:
    match = SEVERITY.match(text.strip())
    if not match:
        raise UserError(f"`{kit.inline(text, 100)}` is not a severity: use P1, P2, P3 or P4.")
    return Severity(match.group(1).upper())


def _is_ref(word: str) -> bool:
    return word.startswith(("#", "<#")) or word.isdigit()


def ref_and_rest(inv: Invocation) -> tuple[str | None, list[str]]:
    """An optional leading incident reference (`#42`, `<#C123>`, `#inc-...`)."""
    if inv.args and _is_ref(inv.args[0]):
        return inv.args[0], inv.args[1:]
    return None, inv.args


def ref_and_text(inv: Invocation) -> tuple[str | None, str]:
    """An optional leading incident reference, and the free text after it exactly as typed
    (apostrophes, quotes and brackets kept; one pair of quotes around all of it dropped)."""
    # Only `#42` or a channel counts here: free text may well start with a number.
    first = inv.text.split(maxsplit=1)
    if first and first[0].startswith(("#", "<#")):
        return first[0], unquote(rest_of(inv.text))
    return None, unquote(inv.text)


async def incident_of(flows: Flows, inv: Invocation, ref: str | None) -> Incident:
    return await flows.incidents.find(channel_id=inv.channel_id, ref=ref)


async def authorized_incident(
    flows: Flows, inv: Invocation, ref: str | None, permission: Permission
) -> Incident:
    """The incident a command is about (its channel, or named), once the user may do it."""
    incident = await incident_of(flows, inv, ref)
    await flows.authorize.require(permission, inv.user_id, incident)
    return incident


def parse_duration(text: str) -> timedelta:
    """`30m`, `2h`, `1d`, `90s` → timedelta (bounded to 7 days)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    if len(value) < 2 or value[-1] not in units or not value[:-1].isdigit():
        raise UserError(f"`{kit.inline(text, 100)}` is not a duration; use e.g. 30m, 2h or 1d.")
    seconds = int(value[:-1]) * units[value[-1]]
    if not 60 <= seconds <= 7 * 86400:
        raise UserError("Durations must be between 1m and 7d.")
    return timedelta(seconds=seconds)
