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
        if not reply.text:  # a modal was opened instead: nothing to say
            return
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
        if not reply.text:  # a modal was opened instead: nothing to say
            return
        await respond(text=reply.text, response_type="ephemeral", replace_original=replace_original)

    return listener


def shortcut(name: str, work: Work) -> Listener:
    """A global or message shortcut: ack, then the work (it opens a modal while the trigger id
    is fresh); a refusal goes to the user where Slack gives a way to answer (message shortcuts)."""

    async def listener(
        ack: AsyncAck, body: dict[str, Any], shortcut: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        user = str((body.get("user") or {}).get("id", ""))
        reply = await _guarded("shortcut", name, user, work(user, shortcut, body))
        if reply.text and body.get("response_url"):
            await respond(text=reply.text, response_type="ephemeral")

    return listener


# (user id, the submitted view) -> errors by block id; empty: accepted (the modal closes).
Submission = Callable[[str, dict[str, Any]], Awaitable[dict[str, str]]]


def view_submission(name: str, work: Submission, *, error_block: str) -> Listener:
    """A modal's submission: answered with `response_action: errors` (the modal stays open with
    the messages next to the fields) or a plain ack that closes it; an unexpected failure is
    shown on `error_block` as a reference, never a traceback."""

    async def listener(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = str((body.get("user") or {}).get("id", ""))
        try:
            with logs.context(slack_user=user, command=name):
                errors = await work(user, view)
        except UserError as exc:
            errors = {error_block: str(exc)}
        except Exception:
            errors = {error_block: error_reference("view.failed", user=user, action=name)}
        if errors:
            await ack(response_action="errors", errors=errors)
        else:
            await ack()

    return listener
