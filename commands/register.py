"""Wire the /incident command, the buttons and the events into a Bolt app.

Handlers ack first (Slack's 3-second rule), then call one use case. Deps arrive through the
closure, never through Bolt's context (it is deep-copied for lazy listeners).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.core import blockkit as kit
from bot.core.errors import UserError
from bot.deps import Deps
from bot.flows import incidents
from bot.obs import logs
from commands import playbook_commands, slash
from commands.remediation import register_remediation

log = logging.getLogger("incidentbot.commands")
PIN_REACTIONS = {"pushpin", "round_pushpin"}


def _error_reference(event: str, **fields: Any) -> str:
    ref = secrets.token_hex(4)
    log.exception(event, extra={"ref": ref, **fields})
    return f"Something went wrong on our side (reference `{ref}`). The error is logged; try again or ask an admin."


def register(app: AsyncApp, deps: Deps) -> None:
    async def on_incident(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        user = str(command.get("user_id", ""))
        try:
            with logs.context(slack_user=user, command=str(command.get("text", "")).split(" ", 1)[0]):
                reply = await slash.dispatch(
                    deps, user, str(command.get("channel_id", "")), str(command.get("text", ""))
                )
        except UserError as exc:
            await respond(text=str(exc), response_type="ephemeral")
            return
        except Exception:
            await respond(text=_error_reference("command.failed", user=user), response_type="ephemeral")
            return
        await respond(
            text=reply.text,
            blocks=reply.blocks,
            response_type="in_channel" if reply.in_channel else "ephemeral",
        )

    async def on_ack_button(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        user = str(body.get("user", {}).get("id", ""))
        try:
            value = str(action.get("value", ""))
            if not value.isdigit():
                raise UserError("This button is not valid any more.")
            incident = await incidents.find_incident(deps, channel_id=None, ref=value)
            text = await incidents.acknowledge(deps, incident, user)
        except UserError as exc:
            text = str(exc)
        except Exception:
            text = _error_reference("button.failed", user=user, action="ack_incident")
        await respond(text=text, response_type="ephemeral", replace_original=False)

    async def on_confirm_resolve(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        user = str(body.get("user", {}).get("id", ""))
        try:
            incident_id, _, summary = str(action.get("value", "")).partition(":")
            if not incident_id.isdigit():
                raise UserError("This button is not valid any more.")
            incident = await incidents.find_incident(deps, channel_id=None, ref=incident_id)
            text = await incidents.resolve(deps, incident, user, summary or None)
        except UserError as exc:
            text = str(exc)
        except Exception:
            text = _error_reference("button.failed", user=user, action="confirm_resolve")
        await respond(text=text, response_type="ephemeral", replace_original=True)

    async def on_show_steps(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        user = str(body.get("user", {}).get("id", ""))
        channel = str((body.get("channel") or {}).get("id", ""))
        try:
            text = await playbook_commands.show_all_steps(deps, str(action.get("value", "")), channel)
        except UserError as exc:
            text = str(exc)
        except Exception:
            text = _error_reference("button.failed", user=user, action="show_runbook_steps")
        await respond(text=text, response_type="ephemeral", replace_original=False)

    async def on_reaction(event: dict[str, Any], body: dict[str, Any]) -> None:
        """A 📌 on a message in an incident channel adds it to the timeline."""
        if event.get("reaction") not in PIN_REACTIONS:
            return
        item = event.get("item") or {}
        channel = str(item.get("channel", ""))
        incident = await deps.store.incident_by_channel(channel)
        if incident is None:
            return
        event_id = str(body.get("event_id") or f"{channel}:{item.get('ts')}:{event.get('user')}")
        if not await deps.coord.first_time(f"slack-event:{event_id}", 86400):
            return  # a Slack retry of an event we already handled
        text = await deps.chat.message_text(channel, str(item.get("ts", "")))
        user = str(event.get("user", ""))
        await deps.lifecycle.add_event(
            incident.id,
            "pinned",
            f"📌 <@{user}> pinned: {kit.clip(text or '(message not found)', 1500)}",
            now=deps.clock(),
            actor=user,
            data={"ts": item.get("ts"), "author": item.get("user") or event.get("item_user")},
        )

    register_remediation(app, deps)
    app.command("/incident")(on_incident)
    app.action("ack_incident")(on_ack_button)
    app.action("confirm_resolve")(on_confirm_resolve)
    app.action("show_runbook_steps")(on_show_steps)
    app.event("reaction_added")(on_reaction)
