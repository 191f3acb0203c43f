"""`/incident investigate [question]`, `/incident summary` and the summary draft's Post button.

Investigating reads Prometheus and the cluster on the requester's behalf: it needs the same
role as an ad hoc graph (`graph` in the policy's lifecycle section). A summary is a draft shown
only to its requester until they click Post (a status update, `status` permission)."""

from __future__ import annotations

from typing import Any

from bot.clients.llm import Capability
from bot.core.errors import UserError
from bot.core.policy import Permission
from bot.flows.investigate.service import Investigator
from commands.base import Flows, Invocation, Reply, authorized_incident, ref_and_text, rest_of, unquote

MAX_QUESTION = 500


def _investigator(flows: Flows) -> Investigator:
    if flows.investigator is None:
        raise UserError("The investigator is not configured.")
    return flows.investigator


def status_line(flows: Flows) -> str | None:
    """For /incident help: whether the investigator is on, degraded or off, and why (nothing
    while no model is configured)."""
    investigator = flows.investigator
    if investigator is None or investigator.status.capability is Capability.OFF:
        return None
    return investigator.status.describe()


async def investigate(flows: Flows, inv: Invocation) -> Reply:
    ref, question = ref_and_text(inv)
    if len(question) > MAX_QUESTION:
        raise UserError(f"Questions are limited to {MAX_QUESTION} characters.")
    investigator = _investigator(flows)
    investigator.require_investigations()
    incident = await authorized_incident(flows, inv, ref, Permission.GRAPH)
    if incident.channel_id is None:
        raise UserError(f"Incident {incident.ref} has no channel yet; try again in a moment.")
    await investigator.check_switch()
    await investigator.admit()
    task = flows.supervisor.spawn(
        investigator.investigate_requested(incident, inv.user_id, question), name=f"investigate-{incident.id}"
    )
    if task is None:
        raise UserError("The bot is shutting down; try again in a moment.")
    return Reply(f"Investigating {incident.ref}… progress and the result appear in <#{incident.channel_id}>.")


async def switch(flows: Flows, inv: Invocation) -> Reply:
    """`/incident investigator stop|allow [reason]`: the investigator's runtime kill switch."""
    if not inv.args or inv.args[0].lower() not in ("stop", "allow"):
        raise UserError("Usage: `/incident investigator stop|allow [reason]`")
    reason = unquote(rest_of(inv.text))
    text = await _investigator(flows).set_switch(inv.user_id, inv.args[0].lower() == "stop", reason)
    return Reply(text, in_channel=True)


async def summary(flows: Flows, inv: Invocation) -> Reply:
    ref, rest = ref_and_text(inv)
    if rest:
        raise UserError("Usage: `/incident summary [#id]`")
    incident = await authorized_incident(flows, inv, ref, Permission.STATUS)
    draft = await _investigator(flows).draft_summary(incident, inv.user_id)
    return Reply(draft.text, blocks=draft.blocks)


async def post_summary(flows: Flows, user: str, action: dict[str, Any], channel: str) -> Reply:
    """The Post button: bound to the incident channel it was clicked in; the draft is posted
    as a status update once, by whoever may post status updates."""
    incident = await flows.incidents.in_channel(channel) if channel else None
    if incident is None:
        raise UserError("Post the draft from the incident's channel.")
    await flows.authorize.require(Permission.STATUS, user, incident)
    text = await _investigator(flows).claim_draft(str(action.get("value") or ""), incident)
    return Reply(await flows.incidents.post_status(incident, text, user), in_channel=True)
