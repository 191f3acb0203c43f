"""A 📌 reaction on a message in an incident channel adds the message to the timeline."""

from __future__ import annotations

from bot.clients.slack import SlackChat
from bot.core import blockkit as kit
from bot.core.ports import Clock
from bot.store.coordination import Coordination
from bot.store.incidents import PostgresStore
from bot.store.lifecycle import LifecycleStore

PIN_REACTIONS = frozenset({"pushpin", "round_pushpin"})
EVENT_DEDUP_TTL_S = 86400
MAX_PINNED_TEXT = 1500


class Pins:
    def __init__(
        self,
        store: PostgresStore,
        lifecycle: LifecycleStore,
        chat: SlackChat,
        coord: Coordination,
        clock: Clock,
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.chat = chat
        self.coord = coord
        self.clock = clock

    async def pinned(
        self, *, reaction: str, channel: str, ts: str, user: str, author: str | None, event_id: str
    ) -> None:
        if reaction not in PIN_REACTIONS:
            return
        incident = await self.store.incident_by_channel(channel)
        if incident is None:
            return
        if not await self.coord.first_time(f"slack-event:{event_id}", EVENT_DEDUP_TTL_S):
            return  # a Slack retry of an event we already handled
        text = await self.chat.message_text(channel, ts)
        await self.lifecycle.add_event(
            incident.id,
            "pinned",
            f"📌 <@{user}> pinned: {kit.clip(text or '(message not found)', MAX_PINNED_TEXT)}",
            now=self.clock(),
            actor=user,
            data={"ts": ts, "author": author},
        )
