"""`/incident merge`, `/incident split`, `/incident links` and the Attach / Keep separate
buttons of a correlation suggestion: thin glue over bot.flows.correlation.corrections. Every
one needs the policy's `correlate` permission on each incident it changes."""

from __future__ import annotations

from typing import Any

from bot.core import blockkit as kit
from bot.core.correlation import Link
from bot.core.errors import UserError
from bot.core.policy import Permission
from commands.base import Flows, Invocation, Reply, authorized_incident, incident_of
from commands.edge import Work

MERGE_USAGE = "Usage: `/incident merge #id` (in the incident that keeps the alerts)"
SPLIT_USAGE = "Usage: `/incident split <alertname>` (in the incident it is in)"
LINKS_USAGE = "Usage: `/incident links` or `/incident links remove <id>`"


async def merge(flows: Flows, inv: Invocation) -> Reply:
    if len(inv.args) != 1:
        raise UserError(MERGE_USAGE)
    target = await flows.incidents.in_channel(inv.channel_id)
    if target is None:
        raise UserError(f"Run this in the channel of the incident that keeps the alerts. {MERGE_USAGE}")
    source = await incident_of(flows, inv, inv.args[0])
    await flows.authorize.require(Permission.CORRELATE, inv.user_id, target)
    await flows.authorize.require(Permission.CORRELATE, inv.user_id, source)
    return Reply(await flows.correlation.merge(source, target, inv.user_id), in_channel=True)


async def split(flows: Flows, inv: Invocation) -> Reply:
    if len(inv.args) != 1 or not inv.args[0].strip():
        raise UserError(SPLIT_USAGE)
    incident = await authorized_incident(flows, inv, None, Permission.CORRELATE)
    return Reply(await flows.correlation.split(incident, inv.args[0].strip(), inv.user_id), in_channel=True)


async def links(flows: Flows, inv: Invocation) -> Reply:
    incident = await flows.incidents.in_channel(inv.channel_id)
    if inv.args:
        if len(inv.args) != 2 or inv.args[0].lower() != "remove" or not inv.args[1].lstrip("#").isdigit():
            raise UserError(LINKS_USAGE)
        await flows.authorize.require(Permission.CORRELATE, inv.user_id, incident)
        removed = await flows.correlation.remove_link(int(inv.args[1].lstrip("#")))
        return Reply(
            f"<@{inv.user_id}> removed the learned link {removed.id}: "
            f"`{kit.inline(removed.name_a, 80)}` ↔ `{kit.inline(removed.name_b, 80)}`.",
            in_channel=True,
        )
    found = await flows.correlation.links()
    if not found:
        return Reply("No learned links: `/incident merge` and `/incident split` teach them.")
    lines = ["*Learned links* (from merges and splits; remove with `/incident links remove <id>`)"]
    for link in found:
        what = "attach" if link.kind is Link.ATTACH else "keep separate"
        lines.append(
            f"• `{link.id}` `{kit.inline(link.name_a, 80)}` ↔ `{kit.inline(link.name_b, 80)}`: {what}"
        )
    return Reply(kit.clip("\n".join(lines), kit.MAX_SECTION_TEXT))


def answer_button(flows: Flows, attach: bool, clicked: Any) -> Work:
    """The Attach / Keep separate buttons: the value is the suggestion's opaque token; the click
    must come from the channel the suggestion was posted in (as Slack signed it)."""

    async def work(user: str, action: dict[str, Any], body: dict[str, Any]) -> Reply:
        channel, _ = clicked(body)
        asked = await flows.correlation.asked(str(action.get("value") or ""), channel)
        await flows.authorize.require(Permission.CORRELATE, user, asked.candidate)
        await flows.authorize.require(Permission.CORRELATE, user, asked.incident)
        return Reply(await flows.correlation.answer(asked, attach, user))

    return work
