"""Incident use cases driven by people (commands and buttons). They decide; storage remembers."""

from __future__ import annotations

from bot.deps import Deps
from bot.domain import Incident, IncidentStatus
from bot.errors import UserError


async def find_incident(deps: Deps, *, channel_id: str | None, ref: str | None) -> Incident:
    """The incident a command is about: an explicit `#42`/`42`/`#inc-...` reference, else the
    incident whose channel the command was typed in."""
    if ref:
        text = ref.strip()
        if text.startswith("<#") and text.endswith(">"):
            channel = text[2:-1].split("|", 1)[0]
            found = await deps.store.incident_by_channel(channel)
        elif text.lstrip("#").isdigit():
            found = await deps.store.get_incident(int(text.lstrip("#")))
        else:
            found = None
        if found is None:
            raise UserError(f"No incident {ref}. Use `/incident list` to see open incidents.")
        return found
    if channel_id:
        found = await deps.store.incident_by_channel(channel_id)
        if found is not None:
            return found
    raise UserError("Run this in an incident channel, or name the incident: `/incident ack #42`.")


async def acknowledge(deps: Deps, incident: Incident, user: str) -> str:
    if incident.status is IncidentStatus.RESOLVED:
        raise UserError(f"Incident {incident.ref} is already resolved.")
    if not await deps.store.acknowledge(incident.id, user, deps.clock()):
        who = f" by <@{incident.acknowledged_by}>" if incident.acknowledged_by else ""
        return f"Incident {incident.ref} was already acknowledged{who}."
    deps.publisher.request(incident.id)
    return f"Incident {incident.ref} acknowledged by <@{user}>."
