"""Publish: bring an incident's Slack messages up to date from stored state.

Postgres says what to show (version vs published_version); one publisher per incident at a
time holds a Redis lock; the channel is created once, claimed by compare-and-set in Postgres;
every message is re-rendered from the stored view, so a restart or a second replica draws
the same thing. Changes arriving while a publish runs, or within a second of the last one,
coalesce into one update.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from bot.clients.slack import Channel, NameTakenError, SlackChat
from bot.core.blockkit import inline, mention
from bot.core.catalog import Catalog
from bot.core.errors import IntegrationError
from bot.core.incident import IncidentView, channel_name
from bot.core.ports import Clock
from bot.core.promql import TrustedSources
from bot.core.storms import Admission
from bot.flows.failures import dependency_of
from bot.flows.gate import BACKGROUND, IntakeGate
from bot.flows.owned_messages import OwnedMessages
from bot.flows.storms import Storms
from bot.flows.supervisor import Supervisor
from bot.flows.teams import TeamChannels
from bot.obs import logs
from bot.obs.metrics import Metrics
from bot.obs.outages import Outages
from bot.render import cards
from bot.render.notification import notification
from bot.store.coordination import Coordination
from bot.store.incidents import PostgresStore, PublishState

log = logs.logger(logs.Component.PUBLISH)

COALESCE_S = 1.0
# The publish lock is a lease renewed while its holder lives: a publisher that dies (kill -9,
# a lost node) holds up its incidents for seconds, not minutes.
LOCK_TTL_MS = 6_000
# A channel claim older than this belongs to a dead publisher (a live one holds the lease).
CHANNEL_CLAIM_STALE_S = 10.0
# Slack's clock and ours may differ a little when comparing a channel's creation time.
CHANNEL_CLOCK_SKEW = timedelta(seconds=60)
MAX_ROUNDS = 20
UPDATES_PER_ROUND = 2
RELOAD_AFTER_WAIT_S = 0.05
PUBLISH_RETRY_CAP_S = 8.0
# Run once the card is up to date in each publish (enrichment: runbook steps, graphs,
# proposals; the PagerDuty on-call invite). True asks for another publish: the hook changed
# the incident (an announcement to post).
PublishedHook = Callable[[IncidentView], Coroutine[Any, Any, bool]]


class WorstFirst:
    """Turns one at a time, the lowest rank (the worst severity) first, then first come: which
    incident takes the next conversations.create token when channels queue (a P1 before a P4)."""

    def __init__(self) -> None:
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._busy = False
        self._seq = 0

    @contextlib.asynccontextmanager
    async def turn(self, rank: int) -> AsyncIterator[None]:
        if self._busy or self._waiting:
            self._seq += 1
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (rank, self._seq, waiter))
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._next()  # handed the turn while being cancelled: pass it on
                raise
        self._busy = True
        try:
            yield
        finally:
            self._next()

    def _next(self) -> None:
        self._busy = False
        while self._waiting:
            _, _, waiter = heapq.heappop(self._waiting)
            if not waiter.done():
                waiter.set_result(None)
                self._busy = True
                return


def retry_delay(failures: int) -> float:
    """Seconds before a failed publish is tried again: doubling from 1 s, capped low so an
    incident is on Slack within seconds once Slack is healthy again, with jitter so incidents
    that failed together do not retry together."""
    return min(PUBLISH_RETRY_CAP_S, 2.0 ** (failures - 1)) + random.uniform(0.0, 1.0)  # noqa: S311


class Publisher:
    def __init__(
        self,
        store: PostgresStore,
        chat: SlackChat,
        owned: OwnedMessages,
        coord: Coordination,
        metrics: Metrics,
        supervisor: Supervisor,
        clock: Clock,
        *,
        teams: TeamChannels,
        owner: str,
        gate: IntakeGate,
        outages: Outages,
        after_publish: Sequence[PublishedHook],
        grafana_url: str | None = None,
        link_sources: TrustedSources | None = None,
        storms: Storms | None = None,
    ) -> None:
        self.store = store
        self.chat = chat
        self.owned = owned
        self.coord = coord
        self.metrics = metrics
        self.supervisor = supervisor
        self.clock = clock
        self.teams = teams
        self.catalog: Catalog = teams.catalog
        self.owner = owner
        self.grafana_url = grafana_url
        self.link_sources = link_sources
        self.after_publish = tuple(after_publish)
        # Webhook intake goes first during a burst (bot.flows.gate).
        self.gate = gate
        self.outages = outages
        # Storm mode (bot.flows.storms): a digest instead of notifications, channels held back.
        self.storms = storms
        self._dirty: set[int] = set()
        self._running: set[int] = set()
        self._last_run: dict[int, float] = {}
        self._retry_at: dict[int, float] = {}
        self._failures: dict[int, int] = {}
        self._channel_order = WorstFirst()

    def request(self, incident_id: int) -> None:
        """Ask for the incident's messages to be brought up to date (cheap, idempotent)."""
        if incident_id in self._running:
            self._dirty.add(incident_id)
            return
        if time.monotonic() < self._retry_at.get(incident_id, 0.0):
            return
        self._running.add(incident_id)
        self.supervisor.spawn(self._run(incident_id), name=f"publish-{incident_id}")

    async def _run(self, incident_id: int) -> None:
        BACKGROUND.set(True)  # this task's Slack calls (and its hooks') give way to intake
        try:
            with logs.context(incident_id=incident_id):
                await self.publish(incident_id)
            self.outages.up("slack")
            self.outages.up("redis")
            self._failures.pop(incident_id, None)
            self._retry_at.pop(incident_id, None)
        except Exception as exc:
            # Back off; the sweep asks again once the stored versions still differ.
            failures = self._failures.get(incident_id, 0) + 1
            self._failures[incident_id] = failures
            self._retry_at[incident_id] = time.monotonic() + retry_delay(failures)
            dependency = dependency_of(exc)
            if dependency is None:
                log.exception("publish.error", extra={"incident_id": incident_id})
            else:
                # One line per outage (not per incident): see bot.obs.outages.
                self.outages.down(dependency, f"{type(exc).__name__}: {exc}")
                log.debug("publish.failed", extra={"incident_id": incident_id, "error": str(exc)})
        finally:
            self._running.discard(incident_id)
            if incident_id in self._dirty:
                self._dirty.discard(incident_id)
                self.request(incident_id)

    async def publish(self, incident_id: int) -> None:
        async with self.coord.lease(f"publish:{incident_id}", LOCK_TTL_MS) as token:
            if token is None:
                return  # another publisher has it; the sweep re-checks the stored versions
            await self._rounds(incident_id)

    async def _rounds(self, incident_id: int) -> None:
        for _ in range(MAX_ROUNDS):
            since = time.monotonic() - self._last_run.get(incident_id, 0.0)
            if since < COALESCE_S:
                await asyncio.sleep(COALESCE_S - since)
            await self.gate.turn()
            self._dirty.discard(incident_id)
            loaded = await self._load_if_behind(incident_id)
            if loaded is None:
                return
            prepaid = 0
            if incident_id in self._last_run and loaded[1].card_ts is not None:
                # Updating what is already on Slack: wait for the chat.update tokens (card,
                # notification) first and render after, so the update sent is the newest.
                prepaid = UPDATES_PER_ROUND
                if self.storms is not None and await self.storms.quiet(incident_id):
                    prepaid = 1  # no notification of its own (a storm's digest): the card only
                if await self.chat.reserve("chat.update", prepaid) > RELOAD_AFTER_WAIT_S:
                    self._dirty.discard(incident_id)
                    loaded = await self._load_if_behind(incident_id) or loaded
            view, state = loaded
            started = time.monotonic()
            self._last_run[incident_id] = started
            if not await self._sync(self._complete(view), state, prepaid):
                return
            await self.store.mark_published(incident_id, state.version, self.clock())
            self.metrics.publish_latency.observe(time.monotonic() - started)

    def _complete(self, view: IncidentView) -> IncidentView:
        """The view with what the store does not know: Grafana, the catalog's titles."""
        inc = view.incident
        return replace(
            view,
            grafana_url=self.grafana_url,
            team_title=self.catalog.team_title(inc.team),
            service_title=self.catalog.service_title(inc.team, inc.service),
        )

    async def _load_if_behind(self, incident_id: int) -> tuple[IncidentView, PublishState] | None:
        """The stored view when Slack is behind it (or has announcements to post), else None."""
        loaded = await self.store.load_view(incident_id)
        if loaded is None:
            return None
        _, state = loaded
        log.debug(
            "publish.round",
            extra={
                "incident_id": incident_id,
                "version": state.version,
                "published": state.published_version,
            },
        )
        if state.version <= state.published_version and not await self.store.unannounced_events(incident_id):
            return None
        return loaded

    async def _sync(self, view: IncidentView, state: PublishState, prepaid: int = 0) -> bool:
        admission = await self.storms.admit(view.incident) if self.storms is not None else None
        if state.channel_id is None and admission is not None and admission.waiting:
            # Held back during a storm: the digest lists it with an Open channel button.
            await self.storms_changed(admission)
            return True
        done = await self._sync_slack(view, state, prepaid, admission)
        if done:
            await self.storms_changed(admission)
        return done

    async def storms_changed(self, admission: Admission | None) -> None:
        if self.storms is not None:
            await self.storms.member_changed(admission)

    async def _sync_slack(
        self, view: IncidentView, state: PublishState, prepaid: int, admission: Admission | None
    ) -> bool:
        now = self.clock()
        inc = view.incident
        if state.channel_id is None:
            channel = await self._ensure_channel(view, state)
            if channel is None:
                return False  # another replica is creating it
            view = replace(view, incident=replace(inc, channel_id=channel[0], channel_name=channel[1]))
        channel_id = view.incident.channel_id
        assert channel_id is not None
        topic = cards.topic(view)
        if topic != state.channel_topic:
            await self.chat.set_topic(channel_id, topic)
            await self.store.set_topic(inc.id, topic)
        card = cards.incident_card(view, now, self.link_sources)
        if state.card_ts is None:
            ts = await self.owned.post(channel_id, card, f"card:{inc.id}")
            await self.store.set_card_ts(inc.id, ts)
        else:
            await self.chat.update(channel_id, state.card_ts, card, prepaid=prepaid > 0)
            prepaid -= 1
        # The channel and its card exist: enrichment starts now, not after the notification
        # in #incident (which is paced with every other incident's).
        for hook in self.after_publish:
            self.supervisor.spawn(self._run_hook(hook, view), name=f"enrich-{inc.id}")
        if admission is None or not admission.quiet or state.notification_ts is not None:
            await self._notify(view, state, now, prepaid)
        for event_id, event in await self.store.unannounced_events(inc.id):
            ts = await self.owned.post(channel_id, cards.announcement(event), f"event:{event_id}")
            await self.store.mark_announced(event_id, ts)
        return True

    async def _run_hook(self, hook: PublishedHook, view: IncidentView) -> None:
        try:
            again = await hook(view)
        except Exception as exc:
            dependency = dependency_of(exc)
            if dependency is None:
                raise  # a bug: the supervisor logs it with its traceback
            # An outage: one line for it (bot.obs.outages); what the hook claimed lapses and
            # the sweep gives it to the next publish.
            self.outages.down(dependency, f"{type(exc).__name__}: {exc}")
            log.debug("publish.hook_failed", extra={"incident_id": view.incident.id, "error": str(exc)})
            return
        if again:
            self.request(view.incident.id)

    async def _notify(self, view: IncidentView, state: PublishState, now: datetime, prepaid: int) -> None:
        """Post or update the notification in the team's channel. After `/incident team` moved
        the incident, the old notification is updated one last time (it names the new team) and
        a new one is posted in the new team's channel."""
        inc = view.incident
        note = notification(view, now, self._oncall(inc.team, await self.store.paged_oncall(inc.id)))
        target = await self.teams.notification_channel(inc.team)
        if state.notification_ts is not None and state.notification_channel_id is not None:
            await self.chat.update(
                state.notification_channel_id, state.notification_ts, note, prepaid=prepaid > 0
            )
            if state.notification_channel_id == target:
                return
        # The first notification keeps its historical key; a moved one is keyed by its channel.
        key = f"notification:{inc.id}" if state.notification_ts is None else f"notification:{inc.id}:{target}"
        ts = await self.owned.post(target, note, key)
        await self.store.set_notification(inc.id, target, ts)

    def _oncall(self, team: str | None, paged: list[str]) -> list[str]:
        """Who is on call, as mentions: the people PagerDuty has on call now (once they were
        looked up), then the team's first escalation level (the people the notification is for)."""
        now_on_call = [f"PagerDuty: {', '.join(mention(u) for u in paged)}"] if paged else []
        levels = self.catalog.team(team).escalation
        if not levels:
            return now_on_call
        first = levels[0]
        named = [mention(u) for u in first.users]
        named += [f"<!subteam^{g}>" if g.startswith("S") else f"@{inline(g, 80)}" for g in first.usergroups]
        if first.name and named:
            return [*now_on_call, f"{inline(first.name, 60)}: {', '.join(named)}"]
        return now_on_call + named

    async def _ours(self, found: Channel, claimed_at: datetime | None) -> bool:
        """Whether an existing channel with the claimed name is the one an earlier publisher of
        this incident created: by this bot, after that claim, and no other incident's channel.
        Anything else (a channel a person made with the same name) is never taken over."""
        if claimed_at is None or found.creator != await self.chat.own_user_id():
            return False
        if found.created < (claimed_at - CHANNEL_CLOCK_SKEW).timestamp():
            return False
        return await self.store.incident_by_channel(found.id) is None

    async def _ensure_channel(self, view: IncidentView, state: PublishState) -> tuple[str, str] | None:
        inc = view.incident
        prefix = self.catalog.team(inc.team).channel_prefix
        wanted = channel_name(inc.created_at, inc.title, prefix=prefix)
        # Slack's budget first, the claim after: a publisher killed while its channels wait for
        # conversations.create holds claims only on the few it was about to create, not on
        # every incident it had queued (a claim of a dead publisher blocks until it is stale).
        async with self._channel_order.turn(inc.severity.rank):
            await self.chat.reserve("conversations.create", 1)
        name = await self.store.claim_channel_creation(
            inc.id, self.owner, wanted, self.clock(), CHANNEL_CLAIM_STALE_S
        )
        if name is None:
            return None
        # A name claimed before by a publisher that died may already exist: adopt it, but only
        # a channel that publisher can have created (see _ours).
        adopt = state.channel_claimed_at if state.channel_claimed_by is not None else None
        candidates = [
            name,
            channel_name(inc.created_at, inc.title, str(inc.id), prefix=prefix),
            channel_name(inc.created_at, inc.title, f"{inc.id}-{secrets.token_hex(2)}", prefix=prefix),
        ]
        for attempt, candidate in enumerate(candidates):
            try:
                created = await self.chat.create_channel(candidate, prepaid=attempt == 0)
            except NameTakenError:
                found = await self.chat.find_channel(candidate) if adopt and candidate == name else None
                if found is None or not await self._ours(found, adopt):
                    continue
                created = found
            await self.store.set_channel(inc.id, created.id, created.name)
            log.info("channel.created", extra={"incident_id": inc.id, "channel": created.name})
            if inc.commander:
                await self.chat.invite(created.id, [inc.commander])
            return created.id, created.name
        raise IntegrationError("slack", f"could not find a free channel name for incident {inc.ref}")
