"""Dialogs: the Declare-incident modal, opened by `/incident open` without arguments, the global
shortcut and the message shortcut (pre-filled from the message), and its submission, which
declares the incident through the same path as `/incident open "title"`.

Slack's rules for `views.open`: the trigger id of the request is valid for 3 seconds and once,
so the modal is opened right after the ack, before anything slow. The modal carries only the
channel it was opened from (private metadata); the submission re-checks everything.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from bot.core import blockkit as kit
from bot.core.errors import UserError
from bot.core.incident import Incident, IncidentStatus, Role, Severity
from bot.core.policy import Permission
from bot.flows.authorize import severity_permission
from commands.base import Flows, Reply

EDIT_CALLBACK = "edit_incident"  # the card's Edit button and its modal
DECLARE_CALLBACK = "declare_incident"  # the modal, and the global shortcut of the manifest
MESSAGE_SHORTCUT = "declare_incident_from_message"
MAX_TITLE = 150
MAX_DESCRIPTION = 2000
MAX_MODAL_TITLE = 24

# (trigger id, view) -> None; raises UserError when Slack refuses (an expired trigger id).
ViewOpener = Callable[[str, dict[str, Any]], Awaitable[None]]


def _option(text: str, value: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": kit.clip(text, 75)}, "value": value}


def _text_input(
    block_id: str, label: str, *, max_length: int, initial: str, multiline: bool
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "value",
        "max_length": max_length,
        "multiline": multiline,
    }
    if initial:
        element["initial_value"] = initial[:max_length]
    return {
        "type": "input",
        "block_id": block_id,
        "label": {"type": "plain_text", "text": label},
        "element": element,
        "optional": block_id != "title",
    }


def declare_view(flows: Flows, channel_id: str, *, title: str = "", description: str = "") -> dict[str, Any]:
    """The Declare-incident modal: title, severity (P3 chosen), team (the catalog's; unset: the
    channel's team), description."""
    severities = [_option(s.value, s.value) for s in Severity]
    catalog = flows.incidents.catalog
    teams = [_option(catalog.team_title(name), name) for name in catalog.names()][:100]
    severity_block = {
        "type": "input",
        "block_id": "severity",
        "label": {"type": "plain_text", "text": "Severity"},
        "element": {
            "type": "static_select",
            "action_id": "value",
            "options": severities,
            "initial_option": severities[2],
        },
    }
    team_block = {
        "type": "input",
        "block_id": "team",
        "optional": True,
        "label": {"type": "plain_text", "text": "Team"},
        "hint": {
            "type": "plain_text",
            "text": "Unset: the team whose channel this is, else the default team.",
        },
        "element": {"type": "static_select", "action_id": "value", "options": teams},
    }
    return {
        "type": "modal",
        "callback_id": DECLARE_CALLBACK,
        "title": {"type": "plain_text", "text": "Declare an incident"[:MAX_MODAL_TITLE]},
        "submit": {"type": "plain_text", "text": "Declare"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": json.dumps({"channel": channel_id}),
        "blocks": [
            _text_input("title", "Title", max_length=MAX_TITLE, initial=title, multiline=False),
            severity_block,
            team_block,
            _text_input(
                "description",
                "What is happening",
                max_length=MAX_DESCRIPTION,
                initial=description,
                multiline=True,
            ),
        ],
    }


async def open_declare(
    flows: Flows, opener: ViewOpener, user: str, trigger_id: str, channel_id: str
) -> Reply:
    """`/incident open` without arguments and the global shortcut: the empty modal."""
    await opener(trigger_id, declare_view(flows, channel_id))
    return Reply("")


async def open_from_message(flows: Flows, opener: ViewOpener, user: str, body: dict[str, Any]) -> Reply:
    """The message shortcut: the modal pre-filled from the message (its first line the title)."""
    text = str((body.get("message") or {}).get("text") or "").strip()
    first = kit.single_line(text.split("\n", 1)[0]) if text else ""
    channel = str((body.get("channel") or {}).get("id") or "")
    view = declare_view(
        flows, channel, title=kit.clip(first, MAX_TITLE), description=kit.clip(text, MAX_DESCRIPTION)
    )
    await opener(str(body.get("trigger_id") or ""), view)
    return Reply("")


def _value(values: dict[str, Any], block: str) -> str:
    entry = (values.get(block) or {}).get("value") or {}
    if entry.get("selected_option"):
        return str(entry["selected_option"].get("value") or "")
    return str(entry.get("value") or "").strip()


def submitted(
    flows: Flows, view: dict[str, Any]
) -> tuple[dict[str, str], tuple[str, Severity, str | None, str, str]]:
    """(errors by block id, (title, severity, team, description, channel)) of a submission."""
    values = (view.get("state") or {}).get("values") or {}
    errors: dict[str, str] = {}
    title = " ".join(_value(values, "title").split())
    if not title:
        errors["title"] = "Give the incident a title."
    elif len(title) > MAX_TITLE:
        errors["title"] = f"At most {MAX_TITLE} characters."
    severity_text = _value(values, "severity")
    severity = Severity.P3
    if severity_text in {s.value for s in Severity}:
        severity = Severity(severity_text)
    else:
        errors["severity"] = "Choose P1, P2, P3 or P4."
    team = _value(values, "team") or None
    if team is not None and not flows.incidents.catalog.knows(team):
        errors["team"] = "Not a team of the service catalog."
    description = _value(values, "description")
    if len(description) > MAX_DESCRIPTION:
        errors["description"] = f"At most {MAX_DESCRIPTION} characters."
    try:
        channel = str(json.loads(view.get("private_metadata") or "{}").get("channel") or "")
    except (ValueError, AttributeError):
        channel = ""
    return errors, (title, severity, team, description, channel)


async def declare(
    flows: Flows,
    user: str,
    channel: str,
    title: str,
    severity: Severity,
    team: str | None,
    description: str = "",
) -> Reply:
    """Declare an incident (the command and the modal): authorized, routed, opened; the
    description becomes its first status update."""
    await flows.authorize.require(Permission.DECLARE, user)
    route = await flows.incidents.declared_route(team, channel)
    incident = await flows.incidents.open(title, severity, user, route)
    if description:
        await flows.incidents.post_status(incident, description, user)
    return Reply(
        f"🚨 <@{user}> declared incident {incident.ref} [{severity}] {kit.inline(title)} —"
        " the channel is being created and you are its commander.",
        in_channel=True,
    )


async def submit_declare(flows: Flows, user: str, view: dict[str, Any]) -> dict[str, str]:
    """The modal's submission: errors by block id (the modal stays open with them), or none
    once the incident is declared."""
    errors, (title, severity, team, description, channel) = submitted(flows, view)
    if errors:
        return errors
    try:
        await declare(flows, user, channel, title, severity, team, description)
    except UserError as err:
        return {"title": kit.clip(str(err), 150)}
    return {}


# --------------------------------------------------------------------------- the card's Edit


def edit_view(incident: Incident) -> dict[str, Any]:
    """Severity, commander and a status update of one incident; only what changes is applied."""
    severities = [_option(s.value, s.value) for s in Severity]
    commander: dict[str, Any] = {"type": "users_select", "action_id": "value"}
    if incident.commander:
        commander["initial_user"] = incident.commander
    return {
        "type": "modal",
        "callback_id": EDIT_CALLBACK,
        "title": {"type": "plain_text", "text": kit.clip(f"Edit {incident.ref}", MAX_MODAL_TITLE)},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": json.dumps({"incident": incident.id}),
        "blocks": [
            {
                "type": "input",
                "block_id": "severity",
                "label": {"type": "plain_text", "text": "Severity"},
                "element": {
                    "type": "static_select",
                    "action_id": "value",
                    "options": severities,
                    "initial_option": _option(incident.severity.value, incident.severity.value),
                },
            },
            {
                "type": "input",
                "block_id": "commander",
                "optional": True,
                "label": {"type": "plain_text", "text": "Commander"},
                "element": commander,
            },
            _text_input("status", "Status update", max_length=MAX_DESCRIPTION, initial="", multiline=True),
        ],
    }


async def open_edit(flows: Flows, opener: ViewOpener, incident: Incident, trigger_id: str) -> Reply:
    if incident.status is IncidentStatus.RESOLVED:
        raise UserError(f"Incident {incident.ref} is resolved; reopen it to edit it.")
    await opener(trigger_id, edit_view(incident))
    return Reply("")


async def submit_edit(flows: Flows, user: str, view: dict[str, Any]) -> dict[str, str]:
    """Every change is authorized before any is applied (a refusal changes nothing)."""
    values = (view.get("state") or {}).get("values") or {}
    try:
        incident_id = int(json.loads(view.get("private_metadata") or "{}").get("incident"))
    except (ValueError, TypeError, AttributeError):
        raise UserError("This form is not valid any more; click Edit on the incident's card again.") from None
    incident = await flows.incidents.find(channel_id=None, ref=str(incident_id))
    severity_text = _value(values, "severity")
    if severity_text not in {s.value for s in Severity}:
        return {"severity": "Choose P1, P2, P3 or P4."}
    severity = Severity(severity_text)
    entry = (values.get("commander") or {}).get("value") or {}
    commander = str(entry.get("selected_user") or "") or None
    status = _value(values, "status")
    if len(status) > MAX_DESCRIPTION:
        return {"status": f"At most {MAX_DESCRIPTION} characters."}
    checks = [
        ("severity", severity != incident.severity, severity_permission(incident, severity)),
        ("commander", commander is not None and commander != incident.commander, Permission.ASSIGN),
        ("status", bool(status), Permission.STATUS),
    ]
    for block, changed, permission in checks:
        if changed:
            try:
                await flows.authorize.require(permission, user, incident)
            except UserError as err:
                return {block: kit.clip(str(err), 150)}
    if severity != incident.severity:
        await flows.incidents.set_severity(incident, severity, user)
    if commander is not None and commander != incident.commander:
        await flows.incidents.assign(incident, Role.COMMANDER, commander, user)
    if status:
        await flows.incidents.post_status(incident, status, user)
    return {}
