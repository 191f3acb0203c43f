"""Storm mode: one digest per storm in the team's channel instead of one notification per
incident, channels first for the severities that need them, the end said once.

The publisher asks `admit` before an incident's first notification: the role is decided once,
in Postgres under a per-team lock (bot.store.storms), so every replica agrees. The digest is an
owned message keyed by the storm (posted exactly once across replicas), then updated in place
from stored state by one holder of the storm's lease at a time, at most once a second
(`COALESCE_S`, measured from the stored last publish, so replicas share the pace); every call
goes through the Slack client's shared rate limiter. The sweep ends storms that went quiet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

from bot.clients.slack import SlackChat
from bot.core.catalog import Catalog
from bot.core.errors import UserError
from bot.core.incident import Incident
from bot.core.ports import Clock
from bot.core.storms import Admission, StormMember, StormRole, StormView
from bot.flows.failures import dependency_of
from bot.flows.gate import BACKGROUND
from bot.flows.owned_messages import OwnedMessages
from bot.flows.supervisor import Supervisor
from bot.flows.teams import TeamChannels
from bot.obs import logs
from bot.obs.metrics import Metrics
from bot.render import storms as render
from bot.store.coordination import Coordination
from bot.store.incidents import PostgresStore
from bot.store.storms import StormRow, StormStore, TeamRef

log = logs.logger(logs.Component.PUBLISH)

# At most one digest post or update per storm per second (Slack's chat.update tier allows
# ~50 a minute for the whole workspace, shared with every card).
COALESCE_S = 1.0
LOCK_TTL_MS = 6_000
MAX_ROUNDS = 50
INVALID_DIGEST_BUTTON = "This button is not valid any more: the incident is not waiting for a channel."


class Storms:
    def __init__(
        self,
        store: StormStore,
        incidents: PostgresStore,
        chat: SlackChat,
        owned: OwnedMessages,
        coord: Coordination,
        teams: TeamChannels,
        supervisor: Supervisor,
        metrics: Metrics,
        clock: Clock,
        publish: Callable[[int], None],
    ) -> None:
        self.store = store
        self.incidents = incidents
        self.chat = chat
        self.owned = owned
        self.coord = coord
        self.teams = teams
        self.catalog: Catalog = teams.catalog
        self.supervisor = supervisor
        self.metrics = metrics
        self.clock = clock
        # Publisher.request: an incident released from waiting gets its channel.
        self.publish = publish
        self._running: set[int] = set()
        self._dirty: set[int] = set()

    def _team(self, team: str | None) -> TeamRef:
        return TeamRef(self.catalog.team_name(team), self.catalog.default_team)

    async def admit(self, incident: Incident) -> Admission:
        """The incident's storm role (decided on its first publish, kept after)."""
        known = await self.store.admission(incident.id)
        policy = self.catalog.storm_policy(incident.team)
        if known is not None and not (known.waiting and incident.severity in policy.channels_for):
            return known
        admission = await self.store.admit(incident.id, self._team(incident.team), policy, self.clock())
        if known is None and admission.storm_id is not None:
            if admission.started:
                self.metrics.storms.labels(self._team(incident.team).name, "started").inc()
                log.info("storm.started", extra={"storm_id": admission.storm_id, "team": incident.team})
            if admission.quiet:
                self.metrics.storm_incidents.labels(admission.role.value).inc()
        return admission

    async def quiet(self, incident_id: int) -> bool:
        """Whether the digest announces this incident instead of a notification of its own."""
        known = await self.store.admission(incident_id)
        return known is not None and known.quiet

    async def member_changed(self, admission: Admission | None) -> None:
        """A storm member was published (a channel, a status): its digest line is redrawn."""
        if admission is not None and admission.storm_id is not None:
            await self.store.bump(admission.storm_id)
            self.request(admission.storm_id)

    # --- the digest -----------------------------------------------------------------------

    def request(self, storm_id: int) -> None:
        """Bring the storm's digest up to date (cheap, idempotent, coalesced)."""
        if storm_id in self._running:
            self._dirty.add(storm_id)
            return
        self._running.add(storm_id)
        self.supervisor.spawn(self._run(storm_id), name=f"storm-{storm_id}")

    async def _run(self, storm_id: int) -> None:
        BACKGROUND.set(True)
        try:
            async with self.coord.lease(f"storm:{storm_id}", LOCK_TTL_MS) as token:
                if token is not None:
                    await self._rounds(storm_id)
        except Exception as exc:
            # The sweep asks again while the stored version is ahead of the published one.
            if dependency_of(exc) is None:
                log.exception("storm.publish_error", extra={"storm_id": storm_id})
            else:
                log.debug("storm.publish_failed", extra={"storm_id": storm_id, "error": str(exc)})
        finally:
            self._running.discard(storm_id)
            if storm_id in self._dirty:
                self._dirty.discard(storm_id)
                self.request(storm_id)

    async def _rounds(self, storm_id: int) -> None:
        for _ in range(MAX_ROUNDS):
            self._dirty.discard(storm_id)
            loaded = await self.store.load(storm_id)
            if loaded is None or loaded[0].version <= loaded[0].published_version:
                return
            row = loaded[0]
            if row.published_at is not None:
                wait = COALESCE_S - (self.clock() - row.published_at).total_seconds()
                if wait > 0:
                    await asyncio.sleep(wait)
                    loaded = await self.store.load(storm_id) or loaded
            await self._draw(*loaded)

    async def _draw(self, row: StormRow, members: list[StormMember]) -> None:
        view = self._view(row, members)
        now = self.clock()
        msg = render.digest(view, now)
        if row.digest_ts is None or row.digest_channel_id is None:
            channel = row.digest_channel_id or await self.teams.notification_channel(row.team)
            ts = await self.owned.post(channel, msg, f"storm:{row.id}")
            await self.store.set_digest(row.id, channel, ts)
            self.metrics.storm_digest_writes.labels("post").inc()
            channel_id = channel
        else:
            channel_id = row.digest_channel_id
            await self.chat.update(channel_id, row.digest_ts, msg)
            self.metrics.storm_digest_writes.labels("update").inc()
        if view.ended_at is not None and row.end_ts is None:
            ts = await self.owned.post(channel_id, render.ended(view), f"storm-end:{row.id}")
            await self.store.set_end_ts(row.id, ts)
        await self.store.mark_published(row.id, row.version, self.clock())

    def _view(self, row: StormRow, members: list[StormMember]) -> StormView:
        return StormView(
            id=row.id,
            team=row.team,
            team_title=self.catalog.team_title(row.team),
            started_at=row.started_at,
            last_opened_at=row.last_opened_at,
            window_seconds=row.window_seconds,
            ended_at=row.ended_at,
            members=tuple(
                replace(m, service=self.catalog.service_title(row.team, m.service)) for m in members
            ),
        )

    # --- the end --------------------------------------------------------------------------

    async def sweep(self) -> None:
        """End storms that went quiet (the end said once, waiting incidents get their channels,
        worst first); redraw digests a failure left behind."""
        for storm_id, team in await self.store.running():
            released = await self.store.end_if_quiet(storm_id, self._team(team), self.clock())
            if released is None:
                continue
            self.metrics.storms.labels(team, "ended").inc()
            log.info("storm.ended", extra={"storm_id": storm_id, "team": team, "released": len(released)})
            for incident_id in released:
                self.publish(incident_id)
        for storm_id in await self.store.unpublished():
            self.request(storm_id)

    # --- the Open channel button ----------------------------------------------------------

    async def waiting_incident(self, channel_id: str, ts: str, value: str) -> tuple[int, Incident]:
        """The storm whose digest is the clicked message and the incident the button names,
        which must be one of its members; a UserError otherwise. Changes nothing."""
        storm_id = await self.store.by_digest(channel_id, ts) if channel_id and ts else None
        incident_id = int(value) if value.isdigit() and len(value) < 18 else None
        if storm_id is None or incident_id is None or not await self.store.member(storm_id, incident_id):
            raise UserError(INVALID_DIGEST_BUTTON)
        incident = await self.incidents.get_incident(incident_id)
        if incident is None:
            raise UserError(INVALID_DIGEST_BUTTON)
        return storm_id, incident

    async def open_channel(self, storm_id: int, incident: Incident, user: str) -> str:
        """Open a waiting incident's channel now (authorized by the caller)."""
        admission = await self.store.admission(incident.id)
        if admission is None or admission.role is not StormRole.WAITING:
            raise UserError(INVALID_DIGEST_BUTTON)
        if not await self.store.open_waiting(storm_id, incident.id, user, self.clock()):
            raise UserError(INVALID_DIGEST_BUTTON)
        self.publish(incident.id)
        self.request(storm_id)
        return f"Opening the channel of incident {incident.ref}…"
