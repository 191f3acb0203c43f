"""Teams' Slack channels: where a team's incidents are announced, and which team a channel
belongs to (declaring an incident in a team's channel gives it to that team).

A team without a channel announces in INCIDENT_CHANNEL. A team whose channel Slack does not
know (a typo, a renamed channel) announces there too, with a warning in the log: an incident is
never left unannounced for a configuration mistake.
"""

from __future__ import annotations

import asyncio

from bot.clients.slack import SlackChat
from bot.core.catalog import Catalog
from bot.obs import logs

log = logs.logger(logs.Component.PUBLISH)


class TeamChannels:
    def __init__(self, catalog: Catalog, chat: SlackChat, *, incident_channel: str) -> None:
        self.catalog = catalog
        self.chat = chat
        self.incident_channel = incident_channel
        self._ids: dict[str, str] = {}
        self._lookup = asyncio.Lock()

    async def _default_id(self) -> str:
        async with self._lookup:
            found = self._ids.get(self.incident_channel)
            if found is None:
                found = await self.chat.resolve_channel_id(self.incident_channel)
                self._ids[self.incident_channel] = found
            return found

    async def _team_channel_id(self, name: str) -> str | None:
        """The id of a team's channel, None when Slack has no such channel (asked again next
        time: it may be created meanwhile)."""
        async with self._lookup:
            found = self._ids.get(name)
            if found is None:
                channel = await self.chat.find_channel(name)
                if channel is None:
                    return None
                found = self._ids[name] = channel.id
            return found

    async def notification_channel(self, team: str | None) -> str:
        """The channel id a team's incidents are announced in."""
        name = self.catalog.team(team).channel
        if name is None:
            return await self._default_id()
        found = await self._team_channel_id(name)
        if found is None:
            log.warning(
                "team.channel_missing",
                extra={"team": self.catalog.team_name(team), "channel": name, "using": self.incident_channel},
            )
            return await self._default_id()
        return found

    async def team_of_channel(self, channel_id: str) -> str | None:
        """The team whose notification channel this is, if any."""
        for name, team in self.catalog.teams.items():
            if team.channel is not None and await self._team_channel_id(team.channel) == channel_id:
                return name
        return None
