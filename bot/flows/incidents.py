"""Incident use cases driven by people (commands, buttons) and by PagerDuty.

They decide; storage remembers; the publisher redraws Slack from the stored state.
Outbound PagerDuty calls happen only for changes that did not come from PagerDuty, and an
inbound PagerDuty change that matches the stored state is a no-op: no echo loop.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

import asyncpg

from bot.core.blockkit import escape
from bot.core.errors import IntegrationError, UserError
from bot.core.incident import Incident, IncidentSource, IncidentStatus, Role, Severity
from bot.deps import Deps
from bot.flows import timers

log = logging.getLogger("incidentbot.incidents")


async def find_incident(deps: Deps, *, channel_id: str | None, ref: str | None) -> Incident:
    """The incident a command is about: an explicit `#42`/`42`/`#inc-...` reference, else the
    incident whose channel the command was typed in."""
    if ref:
        text = ref.strip()
        found: Incident | None = None
        if text.startswith("<#") and text.endswith(">"):
            found = await deps.store.incident_by_channel(text[2:-1].split("|", 1)[0])
        elif text.lstrip("#").isdigit() and len(text) < 18:
            found = await deps.store.get_incident(int(text.lstrip("#")))
        elif text.startswith("#inc-") or text.startswith("inc-"):
            found = await deps.store.incident_by_channel_name(text.lstrip("#"))
        if found is None:
            raise UserError(f"No incident {escape(ref)}. Use `/incident list` to see open incidents.")
        return found
    if channel_id:
        found = await deps.store.incident_by_channel(channel_id)
        if found is not None:
            return found
    raise UserError("Run this in an incident channel, or name the incident: `/incident ack #42`.")


def _require_open(incident: Incident) -> None:
    if incident.status is IncidentStatus.RESOLVED:
        raise UserError(f"Incident {incident.ref} is resolved. `/incident reopen` first.")


async def open_incident(deps: Deps, title: str, severity: Severity, user: str) -> Incident:
    """A human-declared incident: same channel, cards and timeline as an alert-born one."""
    now = deps.clock()
    async with deps.store.transaction() as tx:
        incident, _ = await tx.create_incident(
            group_key=f"human:{secrets.token_hex(8)}",
            title=title,
            severity=severity,
            source=IncidentSource.HUMAN,
            now=now,
            commander=user,
        )
        await tx.add_event(incident.id, "opened", f"Declared by <@{user}>", at=now, actor=user)
        await tx.conn.execute(
            "INSERT INTO incident_roles (incident_id, role, user_id, assigned_at, assigned_by)"
            " VALUES ($1, 'commander', $2, $3, $2)",
            incident.id,
            user,
            now,
        )
    deps.metrics.incidents_opened.labels("human", severity.value).inc()
    await timers.schedule_open(deps, incident)
    deps.publisher.request(incident.id)
    log.info("incident.opened", extra={"incident_id": incident.id, "source": "human", "user": user})
    return incident


async def acknowledge(deps: Deps, incident: Incident, user: str, *, from_pagerduty: bool = False) -> str:
    _require_open(incident)
    if not await deps.store.acknowledge(incident.id, user, deps.clock()):
        who = f" by <@{incident.acknowledged_by}>" if incident.acknowledged_by else ""
        return f"Incident {incident.ref} was already acknowledged{who}."
    deps.publisher.request(incident.id)
    if not from_pagerduty:
        await _pagerduty(deps, incident, "acknowledge")
    return f"Incident {incident.ref} acknowledged by <@{user}>."


async def set_severity(deps: Deps, incident: Incident, severity: Severity, user: str) -> str:
    _require_open(incident)
    changed = await deps.lifecycle.set_severity(incident.id, severity, user, deps.clock())
    if changed is None:
        return f"Incident {incident.ref} is already {severity}."
    await timers.reschedule_for_severity(deps, changed)
    deps.publisher.request(incident.id)
    return f"Severity of {incident.ref} is now {severity}."


async def post_status(deps: Deps, incident: Incident, text: str, user: str) -> str:
    _require_open(incident)
    await deps.lifecycle.post_status(incident.id, text, user, deps.clock())
    await timers.schedule_update_reminder(deps, incident.id, incident.severity)
    deps.publisher.request(incident.id)
    await _pagerduty(deps, incident, "note", f"Status update from Slack: {text}")
    return f"📣 *Status update* from <@{user}>: {escape(text)}"


async def assign(deps: Deps, incident: Incident, role: Role, user: str, actor: str) -> str:
    _require_open(incident)
    await deps.lifecycle.assign(incident.id, role, user, actor, deps.clock())
    if incident.channel_id:
        await deps.chat.invite(incident.channel_id, [user])
    deps.publisher.request(incident.id)
    return f"<@{user}> is now {role.value} of {incident.ref}."


async def resolve(
    deps: Deps, incident: Incident, user: str, summary: str | None, *, from_pagerduty: bool = False
) -> str:
    now = deps.clock()
    resolved = await deps.lifecycle.resolve(incident.id, user, summary, now)
    if resolved is None:
        return f"Incident {incident.ref} is already resolved."
    await deps.lifecycle.cancel_timers(incident.id)
    await timers.schedule_after_resolve(deps, resolved)
    deps.publisher.request(incident.id)
    await expire_silences(deps, incident, user)
    if not from_pagerduty:
        await _pagerduty(deps, incident, "resolve", summary)
    deps.supervisor.spawn(post_resolution_summary(deps, incident.id), name=f"resolve-summary-{incident.id}")
    return f"✅ Incident {incident.ref} resolved by <@{user}>."


async def reopen(deps: Deps, incident: Incident, user: str) -> str:
    if incident.status is not IncidentStatus.RESOLVED:
        return f"Incident {incident.ref} is not resolved."
    try:
        reopened = await deps.lifecycle.reopen(incident.id, user, deps.clock())
    except asyncpg.UniqueViolationError:
        raise UserError(
            f"Incident {incident.ref} cannot be reopened: its alert group already has a newer open incident."
        ) from None
    if reopened is None:
        return f"Incident {incident.ref} is not resolved."
    await deps.lifecycle.cancel_timers(incident.id)
    await timers.schedule_open(deps, reopened)
    deps.publisher.request(incident.id)
    return f"Incident {incident.ref} reopened by <@{user}>."


async def expire_silences(deps: Deps, incident: Incident, user: str) -> None:
    if deps.silences is None:
        return
    now = deps.clock()
    for record in await deps.lifecycle.active_silences(incident.id, now):
        try:
            await deps.silences.expire_silence(record.silence_id)
        except IntegrationError as exc:
            await deps.lifecycle.add_event(
                incident.id,
                "silence_expire_failed",
                f"Could not expire silence {record.silence_id}: {exc.message}",
                now=now,
                announce=True,
            )
            continue
        await deps.lifecycle.mark_silence_expired(record.id, now)
        await deps.lifecycle.add_event(
            incident.id,
            "silence_expired",
            f"Silence {record.silence_id} expired on resolve",
            now=now,
            actor=user,
        )


async def post_resolution_summary(deps: Deps, incident_id: int) -> None:
    from bot.core.postmortem import resolution_summary

    loaded = await deps.store.load_view(incident_id)
    if loaded is None:
        return
    view, _ = loaded
    events = await deps.store.timeline(incident_id)
    await deps.lifecycle.add_event(
        incident_id,
        "resolution_summary",
        resolution_summary(view, events, deps.clock()),
        now=deps.clock(),
        announce=True,
    )
    deps.publisher.request(incident_id)


async def _pagerduty(deps: Deps, incident: Incident, what: str, text: str | None = None) -> None:
    """Mirror a Slack-side change to the linked PagerDuty incident; failures are reported in
    the channel, never lost silently, and never undo the Slack-side change."""
    if deps.pager is None or not incident.pagerduty_incident_id:
        return
    pd_id = incident.pagerduty_incident_id
    try:
        if what == "acknowledge":
            await deps.pager.acknowledge(pd_id)
        elif what == "resolve":
            await deps.pager.resolve(pd_id, text)
        elif what == "note" and text:
            await deps.pager.add_note(pd_id, text)
    except IntegrationError as exc:
        await deps.lifecycle.add_event(
            incident.id,
            "pagerduty_failed",
            f"⚠️ PagerDuty {what} failed: {escape(exc.message)}",
            now=deps.clock(),
            announce=True,
        )
        deps.publisher.request(incident.id)
        return
    await deps.lifecycle.add_event(
        incident.id, "pagerduty_synced", f"PagerDuty {what} sent for {pd_id}", now=deps.clock()
    )


def parse_duration(text: str) -> timedelta:
    """`30m`, `2h`, `1d`, `90s` → timedelta (bounded to 7 days)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    if len(value) < 2 or value[-1] not in units or not value[:-1].isdigit():
        raise UserError(f"`{escape(text)}` is not a duration; use e.g. 30m, 2h or 1d.")
    seconds = int(value[:-1]) * units[value[-1]]
    if not 60 <= seconds <= 7 * 86400:
        raise UserError("Durations must be between 1m and 7d.")
    return timedelta(seconds=seconds)
