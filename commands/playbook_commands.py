"""`/incident runbook [NAME]`, `/incident graph <promql> [range]` and the "show all steps" button."""

from __future__ import annotations

import re
from datetime import datetime

from bot.core import blockkit as kit
from bot.core.errors import UserError
from bot.core.incident import Incident
from bot.core.policy import Permission
from bot.core.promql import QueryRefused
from bot.flows.enrich import REFUSED
from bot.flows.incidents import INVALID_BUTTON
from bot.render.runbook import playbook_list_message, runbook_messages
from commands.base import Flows, Invocation, Reply, parse_duration, unquote

GRAPH_USAGE = (
    "Usage: `/incident graph <promql> [range]`, e.g. `/incident graph 'rate(http_requests_total[5m])' 2h`"
)
MAX_QUERY = 2000
DEFAULT_RANGE = "1h"
RANGE_WORD = re.compile(r"^\d+[a-z]+$", re.IGNORECASE)  # a duration, or a mistyped one


async def _labels_for(flows: Flows, incident: Incident | None, playbook_name: str) -> dict[str, str]:
    """The labels of the incident's alert this playbook belongs to (or of its first alert)."""
    if incident is None:
        return {}
    view = await flows.incidents.view(incident.id)
    if view is None or not view.alerts:
        return {}
    for playbook, alert in flows.enrich.playbooks_for(view):
        if playbook.name == playbook_name:
            return dict(alert.labels)
    return dict(view.alerts[0].labels)


async def _own_system(flows: Flows, channel_id: str) -> str | None:
    """The system of the incident whose channel this is: its alerts' playbooks (not the generic
    ones), else its team (the catalog names teams after the systems)."""
    incident = await flows.incidents.in_channel(channel_id)
    if incident is None:
        return None
    view = await flows.incidents.view(incident.id)
    if view is not None:
        for playbook, _ in flows.enrich.playbooks_for(view):
            if playbook.system != "generic":
                return playbook.system
    return incident.team


async def runbook(flows: Flows, inv: Invocation) -> Reply:
    if len(inv.args) > 1:
        raise UserError("Usage: `/incident runbook [name]` (without a name: the list)")
    if not inv.args:
        msg = playbook_list_message(flows.playbooks, await _own_system(flows, inv.channel_id))
        return Reply(msg.text, blocks=msg.blocks)
    name = inv.args[0]
    playbook = flows.playbooks.by_name(name)
    if playbook is None:
        raise UserError(f"No playbook `{kit.inline(name, 100)}`. `/incident runbook` lists them.")
    incident = await flows.incidents.in_channel(inv.channel_id)
    if incident is not None:
        # Posted into the incident's channel, with its checks run against Prometheus.
        await flows.authorize.require(Permission.INVESTIGATE, inv.user_id, incident)
    labels = await _labels_for(flows, incident, playbook.name)
    if incident is not None and incident.channel_id:
        await flows.enrich.post_runbook(incident.channel_id, incident.id, playbook, labels)
        return Reply(f"Posted runbook `{kit.inline(playbook.name)}`.")
    first = runbook_messages(playbook, labels, incident_id=0)[0]
    return Reply(first.text, blocks=first.blocks)


async def show_all_steps(flows: Flows, value: str, channel_id: str, user: str) -> str:
    """The "Show all N steps" button: bound to the incident channel it was posted in (the
    click's channel, signed by Slack, decides the incident; the value must name that incident)."""
    incident_id, _, name = value.partition(":")
    playbook = flows.playbooks.by_name(name)
    incident = await flows.incidents.in_channel(channel_id) if channel_id else None
    if playbook is None or incident is None or incident_id != str(incident.id) or not incident.channel_id:
        raise UserError(INVALID_BUTTON)
    await flows.authorize.require(Permission.INVESTIGATE, user, incident)
    labels = await _labels_for(flows, incident, playbook.name)
    await flows.enrich.post_runbook(incident.channel_id, incident.id, playbook, labels)
    return f"Posted all steps of `{kit.inline(playbook.name)}`."


def graph_args(text: str) -> tuple[str, str]:
    """`<promql> [range]` → (the query exactly as typed, the range word). The query keeps its
    quotes, braces and brackets; one pair of quotes around all of it is dropped. A last word
    that looks like a duration is the range, unless it belongs to an `offset`."""
    words = text.strip().rsplit(maxsplit=2)
    if len(words) >= 2 and RANGE_WORD.match(words[-1]) and words[-2].lower() != "offset":
        return unquote(text.strip()[: -len(words[-1])]), words[-1]
    return unquote(text), DEFAULT_RANGE


async def _first_alert(flows: Flows, incident: Incident) -> tuple[datetime | None, dict[str, str] | None]:
    """When the incident's first alert started (None for an incident no alert started: its
    opening time is not an alert's start), and that alert's labels (its cluster's Prometheus
    answers)."""
    view = await flows.incidents.view(incident.id)
    first = min(view.alerts, key=lambda a: a.starts_at, default=None) if view else None
    return (first.starts_at, dict(first.labels)) if first else (None, None)


async def graph(flows: Flows, inv: Invocation) -> Reply:
    query, range_word = graph_args(inv.text)
    if not query or len(query) > MAX_QUERY:
        raise UserError(GRAPH_USAGE)
    lookback = parse_duration(range_word)
    if not flows.enrich.graphs_on:
        raise UserError("Graphs are off: PROMETHEUS_URL is not configured.")
    incident = await flows.incidents.in_channel(inv.channel_id)
    channel = incident.channel_id if incident and incident.channel_id else None
    if incident is None or channel is None:
        raise UserError("Run `/incident graph` in an incident channel (the graph is uploaded there).")
    now = flows.clock()
    # Ad hoc PromQL is untrusted: it is checked (and refused with the reasons) before anything
    # reaches Prometheus, then limited per user and in number at once. The window is the range
    # asked for, ending now.
    try:
        flows.enrich.check_ad_hoc(query, lookback, now)
    except QueryRefused as refused:
        raise UserError(f"Not graphed — {REFUSED}: {refused}") from None
    alert_start, labels = await _first_alert(flows, incident)
    slot = await flows.enrich.admit_ad_hoc(inv.user_id)
    draw = flows.enrich.draw_ad_hoc(
        slot, channel, query, lookback=lookback, alert_start=alert_start, now=now, labels=labels
    )
    task = flows.supervisor.spawn(draw, name=f"graph-{channel}")
    if task is None:
        await flows.enrich.release_ad_hoc(slot)
        raise UserError("The bot is shutting down; try again in a moment.")
    return Reply(f"Drawing `{kit.escape(kit.clip(query, 200))}` over the last {range_word}…")
