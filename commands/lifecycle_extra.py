"""`/incident silence` and `/incident postmortem`: the subcommands that talk to Alertmanager
and upload files."""

from __future__ import annotations

import re

from bot.clients.alertmanager import Matcher
from bot.core import blockkit as kit
from bot.core.errors import UserError
from bot.core.policy import Permission
from commands.base import (
    Flows,
    Invocation,
    Reply,
    authorized_incident,
    incident_of,
    parse_duration,
    ref_and_rest,
)

MATCHER = re.compile(r"^([a-zA-Z_][a-zA-Z0-9_]*)(=~|!~|!=|=)(.*)$")
SILENCE_USAGE = (
    "Usage: `/incident silence <duration> [label=value | label=~regex ...]`, e.g. `/incident silence 2h`"
)


def parse_matcher(text: str) -> Matcher:
    match = MATCHER.match(text)
    if not match:
        raise UserError(f"`{kit.inline(text, 200)}` is not a matcher. {SILENCE_USAGE}")
    name, op, value = match.groups()
    return Matcher(name=name, value=value, is_regex=op in ("=~", "!~"), is_equal=op in ("=", "=~"))


async def silence(flows: Flows, inv: Invocation) -> Reply:
    ref, rest = ref_and_rest(inv)
    if not rest:
        raise UserError(SILENCE_USAGE)
    duration = parse_duration(rest[0])
    matchers = [parse_matcher(arg) for arg in rest[1:]]
    incident = await incident_of(flows, inv, ref)
    text = await flows.silences.silence(incident, matchers, duration, inv.user_id)
    # Announced in the incident's channel and the notification channel; the answer is the
    # requester's own.
    return Reply(text)


async def postmortem(flows: Flows, inv: Invocation) -> Reply:
    ref, rest = ref_and_rest(inv)
    if rest:
        raise UserError("Usage: `/incident postmortem [#id]`")
    incident = await authorized_incident(flows, inv, ref, Permission.INVESTIGATE)
    await flows.postmortems.draft(incident, inv.user_id, inv.channel_id)
    return Reply(f"Posted the postmortem draft for {incident.ref}.")
