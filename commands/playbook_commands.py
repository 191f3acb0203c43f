"""`/incident runbook [NAME]`, `/incident graph <promql> [range]` and the "show all steps" button."""

from __future__ import annotations

from datetime import timedelta

from bot.core import blockkit as kit
from bot.core.errors import UserError
from bot.core.incident import Incident
from bot.core.playbooks import Graph
from bot.deps import Deps
from bot.flows import enrich, incidents
from bot.render.runbook import playbook_list_message, runbook_messages
from commands.base import Invocation, Reply

GRAPH_USAGE = (
    "Usage: `/incident graph <promql> [range]`, e.g. `/incident graph 'rate(http_requests_total[5m])' 2h`"
)
MAX_QUERY = 2000


async def _incident_here(deps: Deps, channel_id: str) -> Incident | None:
    return await deps.store.incident_by_channel(channel_id)


async def _labels_for(deps: Deps, incident: Incident | None, playbook_name: str) -> dict[str, str]:
    """The labels of the incident's alert this playbook belongs to (or of its first alert)."""
    if incident is None:
        return {}
    loaded = await deps.store.load_view(incident.id)
    if loaded is None or not loaded[0].alerts:
        return {}
    for playbook, alert in enrich.playbooks_for(deps, loaded[0]):
        if playbook.name == playbook_name:
            return dict(alert.labels)
    return dict(loaded[0].alerts[0].labels)


async def runbook(deps: Deps, inv: Invocation) -> Reply:
    if len(inv.args) > 1:
        raise UserError("Usage: `/incident runbook [name]` (without a name: the list)")
    if not inv.args:
        msg = playbook_list_message(deps.playbooks)
        return Reply(msg.text, blocks=msg.blocks)
    name = inv.args[0]
    playbook = deps.playbooks.by_name(name)
    if playbook is None:
        raise UserError(f"No playbook `{kit.escape(name)}`. `/incident runbook` lists them.")
    incident = await _incident_here(deps, inv.channel_id)
    labels = await _labels_for(deps, incident, playbook.name)
    if incident is not None and incident.channel_id:
        checks = await enrich.evaluate_checks(deps, playbook, labels) if labels else {}
        for msg in runbook_messages(
            playbook, labels, check_results=checks, expanded=True, incident_id=incident.id
        ):
            await deps.chat.post(incident.channel_id, msg)
        return Reply(f"Posted runbook `{kit.escape(playbook.name)}`.")
    first = runbook_messages(playbook, labels, incident_id=0)[0]
    return Reply(first.text, blocks=first.blocks)


async def show_all_steps(deps: Deps, value: str, channel_id: str) -> str:
    incident_id, _, name = value.partition(":")
    playbook = deps.playbooks.by_name(name)
    if not incident_id.isdigit() or playbook is None:
        raise UserError("This button is not valid any more.")
    incident = await incidents.find_incident(deps, channel_id=None, ref=incident_id)
    labels = await _labels_for(deps, incident, playbook.name)
    target = incident.channel_id or channel_id
    checks = await enrich.evaluate_checks(deps, playbook, labels) if labels else {}
    for msg in runbook_messages(
        playbook, labels, check_results=checks, expanded=True, incident_id=incident.id
    ):
        await deps.chat.post(target, msg)
    return f"Posted all steps of `{kit.escape(playbook.name)}`."


async def graph(deps: Deps, inv: Invocation) -> Reply:
    if not inv.args or len(inv.args) > 2:
        raise UserError(GRAPH_USAGE)
    query = inv.args[0].strip()
    if not query or len(query) > MAX_QUERY:
        raise UserError(GRAPH_USAGE)
    lookback = incidents.parse_duration(inv.args[1]) if len(inv.args) == 2 else timedelta(hours=1)
    if deps.metrics_source is None:
        raise UserError("Graphs are off: PROMETHEUS_URL is not configured.")
    incident = await _incident_here(deps, inv.channel_id)
    channel = incident.channel_id if incident and incident.channel_id else None
    if channel is None:
        raise UserError("Run `/incident graph` in an incident channel (the graph is uploaded there).")
    # Ad-hoc PromQL from a responder is used as typed: no alert labels are substituted into it.
    spec = Graph.model_construct(title=kit.clip(query, 140), query=query, unit="", threshold=None, range="1h")
    now = deps.clock()
    alert_start = incident.created_at if incident else None
    deps.supervisor.spawn(
        enrich.draw(
            deps, channel, spec, {}, alert_start=alert_start, now=now, lookback=lookback, templated=False
        ),
        name=f"graph-{channel}",
    )
    return Reply(
        f"Drawing `{kit.escape(kit.clip(query, 200))}` over the last {inv.args[1] if len(inv.args) == 2 else '1h'}…"
    )
