"""`/incident silence` and `/incident postmortem`: the subcommands that talk to Alertmanager
and upload files."""

from __future__ import annotations

import re

from bot.clients.alertmanager import Matcher
from bot.core import blockkit as kit
from bot.core.errors import IntegrationError, UserError
from bot.core.postmortem import AuditEntry, postmortem_markdown
from bot.deps import Deps
from bot.flows import incidents
from bot.store.remediation import RemediationStore
from commands.base import Invocation, Reply, incident_of, ref_and_rest

MATCHER = re.compile(r"^([a-zA-Z_][a-zA-Z0-9_]*)(=~|!~|!=|=)(.*)$")
SILENCE_USAGE = (
    "Usage: `/incident silence <duration> [label=value | label=~regex ...]`, e.g. `/incident silence 2h`"
)


def parse_matcher(text: str) -> Matcher:
    match = MATCHER.match(text)
    if not match:
        raise UserError(f"`{kit.escape(text)}` is not a matcher. {SILENCE_USAGE}")
    name, op, value = match.groups()
    return Matcher(name=name, value=value, is_regex=op in ("=~", "!~"), is_equal=op in ("=", "=~"))


async def silence(deps: Deps, inv: Invocation) -> Reply:
    ref, rest = ref_and_rest(inv)
    if not rest:
        raise UserError(SILENCE_USAGE)
    duration = incidents.parse_duration(rest[0])
    incident = await incident_of(deps, inv, ref)
    if deps.silences is None:
        raise UserError("Silences are off: ALERTMANAGER_URL is not configured.")
    matchers = [parse_matcher(arg) for arg in rest[1:]]
    if not matchers:
        loaded = await deps.store.load_view(incident.id)
        alerts = loaded[0].alerts if loaded else ()
        if not alerts:
            raise UserError("This incident has no alerts; give the matchers: " + SILENCE_USAGE)
        common = {
            k: v
            for k, v in alerts[0].labels.items()
            if k != "severity" and all(a.labels.get(k) == v for a in alerts)
        }
        if "alertname" not in common:
            names = sorted({a.name for a in alerts})
            matchers.append(Matcher("alertname", "|".join(re.escape(n) for n in names), is_regex=True))
        matchers += [Matcher(k, v) for k, v in sorted(common.items())]
    now = deps.clock()
    ends = now + duration
    try:
        silence_id = await deps.silences.create_silence(
            matchers,
            now,
            ends,
            created_by=f"slack:{inv.user_id}",
            comment=f"incidentbot incident {incident.ref}",
        )
    except IntegrationError as exc:
        raise UserError(f"Alertmanager refused the silence: {kit.escape(exc.message)}") from None
    described = ", ".join(f"`{kit.escape(m.to_filter())}`" for m in matchers)
    await deps.lifecycle.add_silence(
        incident.id,
        silence_id,
        [
            {"name": m.name, "value": m.value, "is_regex": m.is_regex, "is_equal": m.is_equal}
            for m in matchers
        ],
        inv.user_id,
        now,
        ends,
    )
    text = f"🔕 <@{inv.user_id}> silenced {described} until {ends:%Y-%m-%d %H:%M} UTC (silence {silence_id})"
    await deps.lifecycle.add_event(
        incident.id, "silenced", text, now=now, actor=inv.user_id, data={"silence_id": silence_id}, bump=True
    )
    deps.publisher.request(incident.id)
    return Reply(text, in_channel=True)


async def remediation_audit(deps: Deps, incident_id: int) -> list[AuditEntry]:
    """The incident's remediation runs, as the postmortem's Resolution section lists them."""
    runs = await RemediationStore(deps.store.pool).for_incident(incident_id)
    return [
        AuditEntry(
            requested_by=run.requested_by or f"playbook {run.playbook or ''}".strip(),
            approved_by=[a.user_id for a in run.approvals],
            action=run.action.value,
            target=run.target,
            params=dict(run.params),
            result=run.status.value + (f" — {run.verification}" if run.verification else ""),
            started_at=run.started_at or run.created_at,
            finished_at=run.finished_at,
            error=run.error,
        )
        for run in runs
    ]


async def postmortem(deps: Deps, inv: Invocation) -> Reply:
    ref, rest = ref_and_rest(inv)
    if rest:
        raise UserError("Usage: `/incident postmortem [#id]`")
    incident = await incident_of(deps, inv, ref)
    loaded = await deps.store.load_view(incident.id)
    if loaded is None:
        raise UserError(f"No incident {incident.ref}.")
    view, _ = loaded
    events = await deps.store.timeline(incident.id)
    audit = await remediation_audit(deps, incident.id)
    now = deps.clock()
    markdown = postmortem_markdown(view, events, audit, now)
    channel = incident.channel_id or inv.channel_id
    await deps.chat.upload_file(
        channel,
        markdown.encode("utf-8"),
        filename=f"postmortem-incident-{incident.id}.md",
        title=f"Postmortem draft — incident {incident.ref}",
        comment=f"📄 Postmortem draft for {incident.ref}, built from the timeline. Edit it and fill the gaps.",
    )
    await deps.lifecycle.add_event(
        incident.id,
        "postmortem_draft",
        f"Postmortem draft generated by <@{inv.user_id}>",
        now=now,
        actor=inv.user_id,
    )
    return Reply(f"Posted the postmortem draft for {incident.ref}.")
