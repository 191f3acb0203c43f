"""Wire the /incident command and the buttons into a Bolt app.

Handlers ack first (Slack's 3-second rule), then call one use case. Deps arrive through the
closure, never through Bolt's context (it is deep-copied for lazy listeners).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot import incidents
from bot.deps import Deps
from bot.errors import UserError
from commands import slash

log = logging.getLogger("incidentbot.commands")


def _error_reference(event: str, **fields: Any) -> str:
    ref = secrets.token_hex(4)
    log.exception(event, extra={"ref": ref, **fields})
    return f"Something went wrong on our side (reference `{ref}`). The error is logged; try again or ask an admin."


def register(app: AsyncApp, deps: Deps) -> None:
    async def on_incident(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        user = str(command.get("user_id", ""))
        try:
            reply = await slash.dispatch(
                deps, user, str(command.get("channel_id", "")), str(command.get("text", ""))
            )
        except UserError as exc:
            await respond(text=str(exc), response_type="ephemeral")
            return
        except Exception:
            await respond(text=_error_reference("command.failed", user=user), response_type="ephemeral")
            return
        await respond(text=reply.text, response_type="in_channel" if reply.in_channel else "ephemeral")

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

    app.command("/incident")(on_incident)
    app.action("ack_incident")(on_ack_button)
