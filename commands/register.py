"""Wire the /incident command, the buttons and the events into a Bolt app.

Each listener is built by commands.edge (ack first, one error boundary) around one call into
the flows."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.core.correlation import ATTACH_ACTION, SEPARATE_ACTION
from bot.core.errors import UserError
from bot.core.policy import Permission
from bot.flows.authorize import resolve_permission
from bot.flows.incidents import INVALID_BUTTON
from bot.render.cards import EDIT_ACTION
from bot.render.investigation import POST_SUMMARY_ACTION
from bot.render.notification import JOIN_ACTION, OPEN_LINK_ACTION
from bot.render.proposals import APPROVE_ACTION, REJECT_ACTION
from bot.render.storms import OPEN_CHANNEL_ACTION
from commands import correlation, dialogs, investigate, playbook_commands, slash
from commands.base import Flows, Reply
from commands.edge import button, shortcut, slash_command, view_submission
from commands.remediation import decide_button


def _clicked_message(body: dict[str, Any]) -> tuple[str, str]:
    """The channel and ts of the message whose button was clicked, as Slack signed them."""
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id") or ""
    ts = container.get("message_ts") or (body.get("message") or {}).get("ts") or ""
    return str(channel), str(ts)


def register(app: AsyncApp, flows: Flows) -> None:
    opener = _view_opener(app)

    async def on_incident(user: str, command: dict[str, Any], body: dict[str, Any]) -> Reply:
        channel, text = str(command.get("channel_id", "")), str(command.get("text", ""))
        if text.strip().lower() == "open":  # without arguments: the Declare modal
            return await dialogs.open_declare(
                flows, opener, user, str(command.get("trigger_id", "")), channel
            )
        return await slash.dispatch(flows, user, channel, text)

    async def on_ack(user: str, action: dict[str, Any], body: dict[str, Any]) -> Reply:
        """Bound to its message: the incident is the one whose stored card or notification is
        the clicked message; the value must agree with it."""
        incident = await flows.incidents.by_message(*_clicked_message(body))
        if incident is None or str(action.get("value", "")) != str(incident.id):
            raise UserError(INVALID_BUTTON)
        await flows.authorize.require(Permission.ACK, user, incident)
        return Reply(await flows.incidents.acknowledge(incident, user))

    async def on_confirm_resolve(user: str, action: dict[str, Any], body: dict[str, Any]) -> Reply:
        """The value is an opaque token of a stored question asked of this user."""
        offer = await flows.incidents.resolve_offer(str(action.get("value") or ""), user)
        await flows.authorize.require(resolve_permission(offer.incident), user, offer.incident)
        return Reply(await flows.incidents.resolve_offered(offer, user))

    async def on_open_channel(user: str, action: dict[str, Any], body: dict[str, Any]) -> Reply:
        """Bound to its message: the clicked message must be a storm's digest and the incident
        one of that storm's; the policy's `open_channel` decides who may."""
        storm_id, incident = await flows.storms.waiting_incident(
            *_clicked_message(body), str(action.get("value", ""))
        )
        await flows.authorize.require(Permission.OPEN_CHANNEL, user, incident)
        return Reply(await flows.storms.open_channel(storm_id, incident, user))

    async def on_show_steps(user: str, action: dict[str, Any], body: dict[str, Any]) -> Reply:
        channel, _ = _clicked_message(body)
        value = str(action.get("value", ""))
        return Reply(await playbook_commands.show_all_steps(flows, value, channel, user))

    async def on_reaction(event: dict[str, Any], body: dict[str, Any]) -> None:
        """A 📌 on a message in an incident channel adds it to the timeline."""
        item = event.get("item") or {}
        channel = str(item.get("channel", ""))
        await flows.pins.pinned(
            reaction=str(event.get("reaction", "")),
            channel=channel,
            ts=str(item.get("ts", "")),
            user=str(event.get("user", "")),
            author=item.get("user") or event.get("item_user"),
            event_id=str(body.get("event_id") or f"{channel}:{item.get('ts')}:{event.get('user')}"),
        )

    app.command("/incident")(slash_command(on_incident))
    app.action("ack_incident")(button("ack_incident", on_ack))
    app.action("confirm_resolve")(button("confirm_resolve", on_confirm_resolve, replace_original=True))
    app.action(OPEN_CHANNEL_ACTION)(button(OPEN_CHANNEL_ACTION, on_open_channel))
    app.action("show_runbook_steps")(button("show_runbook_steps", on_show_steps))
    app.action(APPROVE_ACTION)(button(APPROVE_ACTION, decide_button(flows, APPROVE_ACTION)))
    app.action(REJECT_ACTION)(button(REJECT_ACTION, decide_button(flows, REJECT_ACTION)))
    app.action(ATTACH_ACTION)(button(ATTACH_ACTION, correlation.answer_button(flows, True, _clicked_message)))
    app.action(SEPARATE_ACTION)(
        button(SEPARATE_ACTION, correlation.answer_button(flows, False, _clicked_message))
    )
    app.event("reaction_added")(on_reaction)
    _register_notification_buttons(app, flows)
    _register_dialogs(app, flows, opener)


def _register_notification_buttons(app: AsyncApp, flows: Flows) -> None:
    """The team notification's Join and Open buttons, and the investigator's Post summary."""

    async def on_join(user: str, action: dict[str, Any], body: dict[str, Any]) -> Reply:
        """Bound to its message, like Acknowledge; the policy's `join` decides who may."""
        incident = await flows.incidents.by_message(*_clicked_message(body))
        if incident is None or str(action.get("value", "")) != str(incident.id):
            raise UserError(INVALID_BUTTON)
        await flows.authorize.require(Permission.JOIN, user, incident)
        return Reply(await flows.incidents.join(incident, user))

    async def on_open_link(user: str, action: dict[str, Any], body: dict[str, Any]) -> Reply:
        """A link button: Slack opens the channel; the click only needs its acknowledgement."""
        return Reply("")

    async def on_post_summary(user: str, action: dict[str, Any], body: dict[str, Any]) -> Reply:
        return await investigate.post_summary(flows, user, action, _clicked_message(body)[0])

    app.action(JOIN_ACTION)(button(JOIN_ACTION, on_join))
    app.action(OPEN_LINK_ACTION)(button(OPEN_LINK_ACTION, on_open_link))
    app.action(POST_SUMMARY_ACTION)(button(POST_SUMMARY_ACTION, on_post_summary))


def _register_dialogs(app: AsyncApp, flows: Flows, opener: dialogs.ViewOpener) -> None:
    """The Declare and Edit modals: shortcuts, the card's Edit button, their submissions."""

    async def on_declare_shortcut(user: str, shortcut: dict[str, Any], body: dict[str, Any]) -> Reply:
        if body.get("type") == "message_action":
            return await dialogs.open_from_message(flows, opener, user, body)
        return await dialogs.open_declare(flows, opener, user, str(body.get("trigger_id", "")), "")

    async def on_edit(user: str, action: dict[str, Any], body: dict[str, Any]) -> Reply:
        """Bound to its message, like Acknowledge: the clicked card must be the incident's."""
        incident = await flows.incidents.by_message(*_clicked_message(body))
        if incident is None or str(action.get("value", "")) != str(incident.id):
            raise UserError(INVALID_BUTTON)
        return await dialogs.open_edit(flows, opener, incident, str(body.get("trigger_id", "")))

    async def on_edit_submit(user: str, view: dict[str, Any]) -> dict[str, str]:
        return await dialogs.submit_edit(flows, user, view)

    async def on_declare_submit(user: str, view: dict[str, Any]) -> dict[str, str]:
        return await dialogs.submit_declare(flows, user, view)

    app.shortcut(dialogs.DECLARE_CALLBACK)(shortcut(dialogs.DECLARE_CALLBACK, on_declare_shortcut))
    app.shortcut(dialogs.MESSAGE_SHORTCUT)(shortcut(dialogs.MESSAGE_SHORTCUT, on_declare_shortcut))
    app.action(EDIT_ACTION)(button(EDIT_ACTION, on_edit))
    app.view(dialogs.EDIT_CALLBACK)(
        view_submission(dialogs.EDIT_CALLBACK, on_edit_submit, error_block="severity")
    )
    app.view(dialogs.DECLARE_CALLBACK)(
        view_submission(dialogs.DECLARE_CALLBACK, on_declare_submit, error_block="title")
    )


def _view_opener(app: AsyncApp) -> dialogs.ViewOpener:
    """`views.open` with Bolt's client (no scope needed); a refusal (the trigger id expired or
    was used) becomes a UserError naming the typed alternative."""

    async def open_view(trigger_id: str, view: dict[str, Any]) -> None:
        try:
            await app.client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else "unknown_error"
            raise UserError(
                f'Slack did not open the form ({error}); try again, or type `/incident open "title" sev=P2`.'
            ) from None

    return open_view
