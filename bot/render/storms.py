"""Storm digest and storm end messages: (view, now) -> Message, pure."""

from __future__ import annotations

from datetime import datetime

from bot.core.blockkit import Block, Message, actions, button, context, header, inline, message, section
from bot.core.incident import IncidentStatus
from bot.core.storms import StormMember, StormRole, StormView
from bot.render.cards import SEVERITY_EMOJI, STATUS_LABEL
from bot.render.times import ago, lasted

OPEN_CHANNEL_ACTION = "storm_open_channel"
# The digest lists this many incidents (worst first); the counts cover them all.
TOP_INCIDENTS = 15
# Open channel buttons shown at most (Slack allows 25 elements in one actions block).
MAX_OPEN_BUTTONS = 10


def _member_line(member: StormMember, now: datetime) -> str:
    if member.channel_id:
        where = f"<#{member.channel_id}>"
    elif member.role is StormRole.WAITING:
        where = "_channel waits_"
    else:
        where = "_channel being created_"
    service = f" · {inline(member.service, 40)}" if member.service else ""
    return (
        f"{SEVERITY_EMOJI[member.severity]} *{member.ref}* [{member.severity}] {inline(member.title, 80)}"
        f"{service} · {STATUS_LABEL[member.status]} · {where} · opened {ago(member.created_at)}"
    )


def _counts(view: StormView) -> str:
    severities = " · ".join(f"{SEVERITY_EMOJI[s]} {s}: {n}" for s, n in view.by_severity().items())
    services = ", ".join(f"{inline(name, 40)} {n}" for name, n in view.by_service()[:8])
    return f"*By severity:* {severities}\n*By service:* {services}"


def digest(view: StormView, now: datetime) -> Message:
    """The one message a storm has in the team's channel, updated in place."""
    total = len(view.members)
    open_count = sum(m.status is not IncidentStatus.RESOLVED for m in view.members)
    if view.ended_at is None:
        title = f"⛈️ Incident storm: {total} incidents for {view.team_title}"
        state = (
            f"Started {ago(view.started_at)} · last incident {ago(view.last_opened_at)} ·"
            f" ends after {view.window_seconds // 60 or 1} min with no new incident"
        )
    else:
        title = f"🌤️ Incident storm ended: {total} incidents for {view.team_title}"
        state = f"Ended {ago(view.ended_at)} after {lasted(view.started_at, view.ended_at)}"
    ranked = view.ranked()
    lines = [_member_line(m, now) for m in ranked[:TOP_INCIDENTS]]
    if total > TOP_INCIDENTS:
        lines.append(f"_… and {total - TOP_INCIDENTS} more (`/incident list team={view.team}`)_")
    blocks: list[Block] = [
        header(title),
        section(f"{open_count} open · {_counts(view)}"),
        context(state),
        section("\n".join(lines) or "_no incidents_"),
    ]
    waiting = [m for m in ranked if m.role is StormRole.WAITING and m.status is not IncidentStatus.RESOLVED]
    if waiting:
        blocks.append(
            context(
                f"{len(waiting)} lower-severity incident(s) wait for a channel while the storm lasts;"
                " open one now with its button."
            )
        )
        # One actions block per button: Slack wants an action_id once per block.
        blocks.extend(
            actions(
                button(f"Open channel {m.ref}", OPEN_CHANNEL_ACTION, str(m.id)),
                block_id=f"storm-{view.id}-{m.id}",
            )
            for m in waiting[:MAX_OPEN_BUTTONS]
        )
    return message(f"{title} ({open_count} open)", blocks)


def ended(view: StormView) -> Message:
    """Said once when the storm is over."""
    assert view.ended_at is not None
    minutes = view.window_seconds // 60 or 1
    text = (
        f"🌤️ The incident storm of {view.team_title} is over: no new incident for {minutes} min."
        f" {len(view.members)} incidents in {lasted(view.started_at, view.ended_at)}; incidents are"
        " announced one by one again, and waiting ones get their channels."
    )
    return message(text, [section(text)])
