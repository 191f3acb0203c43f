"""The /incident subcommand table: parsing and dispatch. Thin glue over the use cases."""

from __future__ import annotations

from bot.core import blockkit as kit
from bot.core.errors import UserError
from bot.core.incident import AlertStatus, Role, Severity
from bot.core.policy import Permission
from bot.flows.authorize import resolve_permission, severity_permission
from bot.render.cards import title_line
from bot.render.times import ago, when
from commands import correlation, dialogs, investigate, lifecycle_extra, playbook_commands, remediation
from commands.base import (
    Flows,
    Invocation,
    Reply,
    Subcommand,
    authorized_incident,
    incident_of,
    parse,
    parse_severity,
    parse_user,
    ref_and_rest,
    ref_and_text,
    rest_of,
    unquote,
)

MAX_TITLE = 150
MAX_STATUS = 2000
TIMELINE_LIMIT = 60


# --- handlers ------------------------------------------------------------------------------


async def _help(flows: Flows, inv: Invocation) -> Reply:
    status = investigate.status_line(flows)
    return Reply(help_text() + (f"\n_{status}_" if status else ""))


def _team_arg(arg: str) -> str | None:
    """The value of a `team=<name>` argument, None for any other argument."""
    key, sep, value = arg.partition("=")
    return value if sep and key.lower() == "team" else None


async def _open(flows: Flows, inv: Invocation) -> Reply:
    usage = (
        'Usage: `/incident open "title" [sev=P1..P4] [team=<name>]`, or `/incident open` alone for the form'
    )
    severity = Severity.P3
    team: str | None = None
    words: list[str] = []
    # The title is free text: the words as typed, apostrophes and quotes included.
    for arg in inv.text.split():
        if arg.lower().startswith("sev="):
            severity = parse_severity(arg)
        elif _team_arg(arg) is not None:
            team = _team_arg(arg)
        else:
            words.append(arg)
    title = unquote(" ".join(words))
    if not title:
        raise UserError(usage)
    if len(title) > MAX_TITLE:
        raise UserError(f"The title is too long ({len(title)} characters, at most {MAX_TITLE}).")
    return await dialogs.declare(flows, inv.user_id, inv.channel_id, title, severity, team)


async def _ack(flows: Flows, inv: Invocation) -> Reply:
    ref, rest = ref_and_rest(inv)
    if rest:
        raise UserError("Usage: `/incident ack [#id]`")
    incident = await authorized_incident(flows, inv, ref, Permission.ACK)
    return Reply(await flows.incidents.acknowledge(incident, inv.user_id), in_channel=True)


async def _status(flows: Flows, inv: Invocation) -> Reply:
    ref, text = ref_and_text(inv)
    if not text:
        raise UserError("Usage: `/incident status <what is happening now>`")
    if len(text) > MAX_STATUS:
        raise UserError(f"Status updates are limited to {MAX_STATUS} characters.")
    incident = await authorized_incident(flows, inv, ref, Permission.STATUS)
    return Reply(await flows.incidents.post_status(incident, text, inv.user_id), in_channel=True)


async def _sev(flows: Flows, inv: Invocation) -> Reply:
    ref, rest = ref_and_rest(inv)
    if len(rest) != 1:
        raise UserError("Usage: `/incident sev P1|P2|P3|P4`")
    severity = parse_severity(rest[0])
    incident = await incident_of(flows, inv, ref)
    await flows.authorize.require(severity_permission(incident, severity), inv.user_id, incident)
    # The change is announced in the incident's channel (whoever made it, from wherever): the
    # answer to the command is the requester's own, so the channel reads it once.
    return Reply(await flows.incidents.set_severity(incident, severity, inv.user_id))


async def _assign(flows: Flows, inv: Invocation) -> Reply:
    usage = "Usage: `/incident assign @user [commander|scribe|comms|deputy]`"
    ref, rest = ref_and_rest(inv)
    if not 1 <= len(rest) <= 2:
        raise UserError(usage)
    user = parse_user(rest[0])
    role = Role.COMMANDER
    if len(rest) == 2:
        try:
            role = Role(rest[1].lower())
        except ValueError:
            raise UserError(usage) from None
    incident = await authorized_incident(flows, inv, ref, Permission.ASSIGN)
    return Reply(await flows.incidents.assign(incident, role, user, inv.user_id), in_channel=True)


async def _resolve(flows: Flows, inv: Invocation) -> Reply:
    ref, text = ref_and_text(inv)
    summary = text or None
    incident = await incident_of(flows, inv, ref)
    await flows.authorize.require(resolve_permission(incident), inv.user_id, incident)
    view = await flows.incidents.view(incident.id)
    firing = [a for a in view.alerts if a.status is AlertStatus.FIRING] if view else []
    if firing and incident.status.value != "resolved":
        text = (
            f"{len(firing)} alert(s) of {incident.ref} are still firing. Resolve anyway?"
            " (Alertmanager will open a new incident if they keep firing.)"
        )
        value = await flows.incidents.offer_resolve(incident, inv.user_id, summary)
        blocks = [
            kit.section(text),
            kit.actions(
                kit.button("Resolve anyway", "confirm_resolve", value, style="danger"),
                block_id=f"confirm-resolve-{incident.id}",
            ),
        ]
        return Reply(text, blocks=blocks)
    return Reply(await flows.incidents.resolve(incident, inv.user_id, summary), in_channel=True)


async def _reopen(flows: Flows, inv: Invocation) -> Reply:
    ref, rest = ref_and_rest(inv)
    if rest:
        raise UserError("Usage: `/incident reopen [#id]`")
    incident = await authorized_incident(flows, inv, ref, Permission.REOPEN)
    return Reply(await flows.incidents.reopen(incident, inv.user_id), in_channel=True)


async def _list(flows: Flows, inv: Invocation) -> Reply:
    team = _team_arg(inv.args[0]) if len(inv.args) == 1 else None
    if inv.args and not team:
        raise UserError("Usage: `/incident list [team=<name>]`")
    open_incidents = await flows.incidents.list_open(team)
    if not open_incidents:
        return Reply(
            f"No open incidents of team `{kit.inline(team, 40)}`. 🎉" if team else "No open incidents. 🎉"
        )
    lines = []
    for inc in open_incidents:
        where = f"<#{inc.channel_id}>" if inc.channel_id else "(channel pending)"
        commander = f"<@{inc.commander}>" if inc.commander else "no commander"
        team_title = kit.inline(flows.incidents.catalog.team_title(inc.team), 60)
        lines.append(
            f"• {inc.ref} {kit.inline(title_line(inc))} — {inc.status.value}, "
            f"opened {ago(inc.created_at)}, {commander}, {team_title}, {where}"
        )
    return Reply(kit.clip("*Open incidents*\n" + "\n".join(lines), kit.MAX_SECTION_TEXT))


async def _team(flows: Flows, inv: Invocation) -> Reply:
    ref, rest = ref_and_rest(inv)
    if len(rest) != 1:
        raise UserError("Usage: `/incident team <name>` (the teams of the service catalog)")
    incident = await authorized_incident(flows, inv, ref, Permission.TEAM)
    return Reply(await flows.incidents.set_team(incident, rest[0], inv.user_id), in_channel=True)


async def _timeline(flows: Flows, inv: Invocation) -> Reply:
    ref, rest = ref_and_rest(inv)
    if rest:
        raise UserError("Usage: `/incident timeline [#id]`")
    incident = await authorized_incident(flows, inv, ref, Permission.INVESTIGATE)
    events = await flows.incidents.timeline(incident.id)
    shown = events[-TIMELINE_LIMIT:]
    lines = [f"*Timeline of {incident.ref}* ({len(events)} events)"]
    if len(events) > len(shown):
        lines.append(f"_… {len(events) - len(shown)} earlier events omitted_")
    for event in shown:
        # Event texts are Slack-safe mrkdwn already (mentions kept); one line each here.
        lines.append(f"{when(event.at)} {kit.clip(kit.single_line(event.text), 300)}")
    return Reply(kit.clip("\n".join(lines), kit.MAX_SECTION_TEXT))


async def _silence(flows: Flows, inv: Invocation) -> Reply:
    return await lifecycle_extra.silence(flows, inv)


async def _runbook(flows: Flows, inv: Invocation) -> Reply:
    return await playbook_commands.runbook(flows, inv)


async def _graph(flows: Flows, inv: Invocation) -> Reply:
    incident = await flows.incidents.in_channel(inv.channel_id)
    await flows.authorize.require(Permission.GRAPH, inv.user_id, incident)
    return await playbook_commands.graph(flows, inv)


async def _run(flows: Flows, inv: Invocation) -> Reply:
    incident = await flows.incidents.in_channel(inv.channel_id)
    await flows.authorize.require(Permission.RUN, inv.user_id, incident)
    return Reply(await remediation.run_subcommand(flows, inv.user_id, inv.channel_id, inv.args))


async def _postmortem(flows: Flows, inv: Invocation) -> Reply:
    return await lifecycle_extra.postmortem(flows, inv)


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand(
        "open",
        '/incident open "title" [sev=P1..P4] [team=<name>]',
        "declare an incident; you become commander (team: named, else the channel's team); alone: a form",
        _open,
    ),
    Subcommand("ack", "/incident ack [#id]", "acknowledge the incident", _ack),
    Subcommand("status", "/incident status <text>", "post a status update (also in #incident)", _status),
    Subcommand("sev", "/incident sev P1..P4", "change the severity", _sev),
    Subcommand(
        "assign", "/incident assign @user [commander|scribe|comms|deputy]", "give someone a role", _assign
    ),
    Subcommand("resolve", "/incident resolve [summary]", "resolve (asks first while alerts fire)", _resolve),
    Subcommand("reopen", "/incident reopen [#id]", "reopen a resolved incident", _reopen),
    Subcommand(
        "list", "/incident list [team=<name>]", "open incidents with age, severity and commander", _list
    ),
    Subcommand("team", "/incident team <name>", "give the incident to another team of the catalog", _team),
    Subcommand("timeline", "/incident timeline [#id]", "the incident's timeline", _timeline),
    Subcommand(
        "silence",
        "/incident silence <duration> [label=value ...]",
        "silence the incident's alerts in Alertmanager",
        _silence,
    ),
    Subcommand(
        "postmortem", "/incident postmortem [#id]", "draft the incident report from the timeline", _postmortem
    ),
    Subcommand("runbook", "/incident runbook [name]", "show a playbook (without a name: the list)", _runbook),
    Subcommand("graph", "/incident graph <promql> [range]", "graph any query into the channel", _graph),
    Subcommand(
        "run",
        "/incident run <action> <namespace>/<name> [key=value ...]",
        "propose a remediation (preview, then approval buttons)",
        _run,
    ),
    Subcommand(
        "killswitch",
        "/incident killswitch [on|off] [reason]",
        "stop every remediation on every replica (or allow them again)",
        remediation.killswitch,
    ),
    Subcommand(
        "merge",
        "/incident merge #id",
        "merge that incident into this one (its alerts move here)",
        correlation.merge,
    ),
    Subcommand(
        "split",
        "/incident split <alertname>",
        "move that alert's group out into a new incident",
        correlation.split,
    ),
    Subcommand(
        "links", "/incident links [remove <id>]", "links learned from merges and splits", correlation.links
    ),
    Subcommand(
        "investigate",
        "/incident investigate [question]",
        "a read-only investigation by the model, with cited findings and proposals (if configured)",
        investigate.investigate,
    ),
    Subcommand(
        "investigator",
        "/incident investigator stop|allow [reason]",
        "stop investigations on every replica (or allow them again)",
        investigate.switch,
    ),
    Subcommand(
        "summary",
        "/incident summary",
        "draft a stakeholder update (posted when you click Post)",
        investigate.summary,
    ),
    Subcommand("help", "/incident help", "this list", _help),
)


def help_text(table: tuple[Subcommand, ...] = SUBCOMMANDS) -> str:
    lines = ["*`/incident` commands*"]
    lines += [f"• `{s.usage}` — {s.summary}" for s in table]
    lines.append("Commands about one incident work inside its channel; elsewhere add `#id` or `#inc-…`.")
    return "\n".join(lines)


def lookup(name: str, table: tuple[Subcommand, ...] = SUBCOMMANDS) -> Subcommand:
    for sub in table:
        if name == sub.name or name in sub.aliases:
            return sub
    raise UserError(f"Unknown subcommand `{kit.inline(name, 100)}`.\n{help_text(table)}")


async def dispatch(flows: Flows, user_id: str, channel_id: str, text: str) -> Reply:
    name, args = parse(text)
    sub = lookup(name)
    invocation = Invocation(user_id=user_id, channel_id=channel_id, args=args, raw=text, text=rest_of(text))
    return await sub.handler(flows, invocation)
