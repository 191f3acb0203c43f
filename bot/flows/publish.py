"""Publish: bring an incident's Slack messages up to date from stored state.

Postgres says what to show (version vs published_version); one publisher per incident at a
time holds a Redis lock; the channel is created once, claimed by compare-and-set in Postgres;
every message is re-rendered from the stored view, so a restart or a second replica draws
the same thing. Changes arriving while a publish runs, or within a second of the last one,
coalesce into one update.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any

from bot.clients.slack import NameTakenError, SlackChat
from bot.core.errors import IntegrationError
from bot.core.incident import IncidentView, channel_name
from bot.core.ports import Clock
from bot.core.promql import TrustedSources
from bot.flows.gate import BACKGROUND, IntakeGate
from bot.flows.supervisor import Supervisor
from bot.obs import logs
from bot.obs.metrics import Metrics
from bot.render import cards
from bot.store.coordination import Coordination
from bot.store.incidents import PostgresStore, PublishState

log = logs.logger(logs.Component.PUBLISH)

COALESCE_S = 1.0
LOCK_TTL_MS = 120_000
CHANNEL_CLAIM_STALE_S = 120.0
MAX_ROUNDS = 20
UPDATES_PER_ROUND = 2
RELOAD_AFTER_WAIT_S = 0.05
# Run once the card is up to date in each publish (enrichment: runbook steps, graphs,
# proposals; the PagerDuty on-call invite). True asks for another publish: the hook changed
# the incident (an announcement to post).
PublishedHook = Callable[[IncidentView], Coroutine[Any, Any, bool]]


class Publisher:
    def __init__(
        self,
        store: PostgresStore,
        chat: SlackChat,
        coord: Coordination,
        metrics: Metrics,
        supervisor: Supervisor,
        clock: Clock,
        *,
        incident_channel: str,
        owner: str,
        gate: IntakeGate,
        after_publish: Sequence[PublishedHook],
        grafana_url: str | None = None,
        link_sources: TrustedSources | None = None,
    ) -> None:
        self.store = store
        self.chat = chat
        self.coord = coord
        self.metrics = metrics
        self.supervisor = supervisor
        self.clock = clock
        self.incident_channel = incident_channel
        self.owner = owner
        self.grafana_url = grafana_url
        self.link_sources = link_sources
        self.after_publish = tuple(after_publish)
        # Webhook intake goes first during a burst (bot.flows.gate).
        self.gate = gate
        self._incident_channel_id: str | None = None
        self._channel_lookup = asyncio.Lock()
        self._dirty: set[int] = set()
        self._running: set[int] = set()
        self._last_run: dict[int, float] = {}
        self._retry_at: dict[int, float] = {}
        self._failures: dict[int, int] = {}

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
            self._failures.pop(incident_id, None)
            self._retry_at.pop(incident_id, None)
        except Exception as exc:
            # Back off; the sweep asks again once the stored versions still differ.
            failures = self._failures.get(incident_id, 0) + 1
            self._failures[incident_id] = failures
            self._retry_at[incident_id] = time.monotonic() + min(60.0, 2.0**failures)
            if isinstance(exc, IntegrationError):
                log.warning("publish.failed", extra={"incident_id": incident_id, "error": str(exc)})
            else:
                log.exception("publish.error", extra={"incident_id": incident_id})
        finally:
            self._running.discard(incident_id)
            if incident_id in self._dirty:
                self._dirty.discard(incident_id)
                self.request(incident_id)

    async def publish(self, incident_id: int) -> None:
        token = await self.coord.try_lock(f"publish:{incident_id}", LOCK_TTL_MS)
        if token is None:
            return  # another publisher has it; the sweep re-checks the stored versions
        try:
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
                if incident_id in self._last_run:
                    # Updating what is already on Slack: wait for the chat.update tokens (card,
                    # notification) first and render after, so the update sent is the newest.
                    prepaid = UPDATES_PER_ROUND
                    if await self.chat.reserve("chat.update", prepaid) > RELOAD_AFTER_WAIT_S:
                        self._dirty.discard(incident_id)
                        loaded = await self._load_if_behind(incident_id) or loaded
                view, state = loaded
                started = time.monotonic()
                self._last_run[incident_id] = started
                if not await self._sync(replace(view, grafana_url=self.grafana_url), state, prepaid):
                    return
                await self.store.mark_published(incident_id, state.version, self.clock())
                self.metrics.publish_latency.observe(time.monotonic() - started)
        finally:
            await self.coord.release(f"publish:{incident_id}", token)

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
            ts = await self.chat.post(channel_id, card)
            await self.store.set_card_ts(inc.id, ts)
        else:
            await self.chat.update(channel_id, state.card_ts, card, prepaid=prepaid > 0)
            prepaid -= 1
        # The channel and its card exist: enrichment starts now, not after the notification
        # in #incident (which is paced with every other incident's).
        for hook in self.after_publish:
            self.supervisor.spawn(self._run_hook(hook, view), name=f"enrich-{inc.id}")
        note = cards.notification(view, now)
        if state.notification_ts is None or state.notification_channel_id is None:
            target = await self._notification_channel()
            ts = await self.chat.post(target, note)
            await self.store.set_notification(inc.id, target, ts)
        else:
            await self.chat.update(
                state.notification_channel_id, state.notification_ts, note, prepaid=prepaid > 0
            )
        for event_id, event in await self.store.unannounced_events(inc.id):
            ts = await self.chat.post(channel_id, cards.announcement(event))
            await self.store.mark_announced(event_id, ts)
        return True

    async def _run_hook(self, hook: PublishedHook, view: IncidentView) -> None:
        if await hook(view):
            self.request(view.incident.id)

    async def _notification_channel(self) -> str:
        async with self._channel_lookup:
            if self._incident_channel_id is None:
                self._incident_channel_id = await self.chat.resolve_channel_id(self.incident_channel)
            return self._incident_channel_id

    async def _ensure_channel(self, view: IncidentView, state: PublishState) -> tuple[str, str] | None:
        inc = view.incident
        wanted = channel_name(inc.created_at, inc.title)
        name = await self.store.claim_channel_creation(
            inc.id, self.owner, wanted, self.clock(), CHANNEL_CLAIM_STALE_S
        )
        if name is None:
            return None
        # A name claimed before by a publisher that died may already exist: adopt it.
        adopt = state.channel_claimed_by is not None
        candidates = [
            name,
            channel_name(inc.created_at, inc.title, str(inc.id)),
            channel_name(inc.created_at, inc.title, f"{inc.id}-{secrets.token_hex(2)}"),
        ]
        for candidate in candidates:
            try:
                created = await self.chat.create_channel(candidate)
            except NameTakenError:
                if adopt and candidate == name:
                    found = await self.chat.find_channel(candidate)
                    if found is not None:
                        created = found
                    else:
                        continue
                else:
                    continue
            await self.store.set_channel(inc.id, created.id, created.name)
            log.info("channel.created", extra={"incident_id": inc.id, "channel": created.name})
            if inc.commander:
                await self.chat.invite(created.id, [inc.commander])
            return created.id, created.name
        raise IntegrationError("slack", f"could not find a free channel name for incident {inc.ref}")
