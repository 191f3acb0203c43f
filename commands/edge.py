"""The one error boundary of the Slack edge.

Every listener acks first (Slack's 3-second rule), then runs its work; a `UserError` becomes
the answer the user sees, anything else is logged with a reference that the user sees
instead of a traceback. The flows arrive through the closure, never through Bolt's context
(it is deep-copied for lazy listeners and silently drops what won't copy).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncRespond

from bot.core.errors import UserError
from bot.obs import logs
from commands.base import Reply

log = logs.logger(logs.Component.COMMANDS)

Listener = Callable[..., Awaitable[None]]
# (user id, the command or the button's action payload, the whole request body) -> reply
Work = Callable[[str, dict[str, Any], dict[str, Any]], Awaitable[Reply]]


def error_reference(event: str, **fields: Any) -> str:
    ref = secrets.token_hex(4)
    log.exception(event, extra={"ref": ref, **fields})
    return f"Something went wrong on our side (reference `{ref}`). The error is logged; try again or ask an admin."


async def _guarded(kind: str, name: str, user: str, work: Awaitable[Reply]) -> Reply:
    try:
        with logs.context(slack_user=user, command=name):
            return await work
    except UserError as exc:
        return Reply(str(exc))
    except Exception:
        return Reply(error_reference(f"{kind}.failed", user=user, action=name))


def slash_command(work: Work) -> Listener:
    """A slash command: the reply goes to the channel when the work says so, else only to the
    user who typed it."""

    async def listener(
        ack: AsyncAck, command: dict[str, Any], body: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        user = str(command.get("user_id", ""))
        name = str(command.get("text", "")).split(" ", 1)[0]
        reply = await _guarded("command", name, user, work(user, command, body))
        await respond(
            text=reply.text,
            blocks=reply.blocks,
            response_type="in_channel" if reply.in_channel else "ephemeral",
        )

    return listener


def button(name: str, work: Work, *, replace_original: bool = False) -> Listener:
    """A button click: the answer is ephemeral, to the user who clicked."""

    async def listener(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        user = str((body.get("user") or {}).get("id", ""))
        reply = await _guarded("button", name, user, work(user, action, body))
        await respond(text=reply.text, response_type="ephemeral", replace_original=replace_original)

    return listener
