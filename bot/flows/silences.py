"""Alertmanager silences for an incident: created from Slack, recorded on the incident,
expired when it resolves."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from bot.clients.alertmanager import AlertmanagerSilences, Matcher
from bot.core.blockkit import escape
from bot.core.errors import IntegrationError, UserError
from bot.core.incident import Incident
from bot.core.ports import Clock
from bot.store.incidents import PostgresStore
from bot.store.lifecycle import LifecycleStore


class SilenceFlow:
    def __init__(
        self,
        store: PostgresStore,
        lifecycle: LifecycleStore,
        silences: AlertmanagerSilences | None,
        clock: Clock,
        publish: Callable[[int], None],
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.silences = silences
        self.clock = clock
        self.publish = publish

    @property
    def enabled(self) -> bool:
        return self.silences is not None

    async def default_matchers(self, incident: Incident) -> list[Matcher]:
        """The labels all of the incident's alerts share (without severity), and the alert
        names when those differ. Empty when the incident has no alerts."""
        loaded = await self.store.load_view(incident.id)
        alerts = loaded[0].alerts if loaded else ()
        if not alerts:
            return []
        common = {
            k: v
            for k, v in alerts[0].labels.items()
            if k != "severity" and all(a.labels.get(k) == v for a in alerts)
        }
        matchers: list[Matcher] = []
        if "alertname" not in common:
            names = sorted({a.name for a in alerts})
            matchers.append(Matcher("alertname", "|".join(re.escape(n) for n in names), is_regex=True))
        matchers += [Matcher(k, v) for k, v in sorted(common.items())]
        return matchers

    async def create(
        self, incident: Incident, matchers: list[Matcher], duration: timedelta, user: str
    ) -> str:
        """Silence in Alertmanager, record it on the incident; returns the announcement."""
        if self.silences is None:
            raise UserError("Silences are off: ALERTMANAGER_URL is not configured.")
        now = self.clock()
        ends = now + duration
        try:
            silence_id = await self.silences.create_silence(
                matchers,
                now,
                ends,
                created_by=f"slack:{user}",
                comment=f"incidentbot incident {incident.ref}",
            )
        except IntegrationError as exc:
            raise UserError(f"Alertmanager refused the silence: {escape(exc.message)}") from None
        described = ", ".join(f"`{escape(m.to_filter())}`" for m in matchers)
        await self.lifecycle.add_silence(
            incident.id,
            silence_id,
            [
                {"name": m.name, "value": m.value, "is_regex": m.is_regex, "is_equal": m.is_equal}
                for m in matchers
            ],
            user,
            now,
            ends,
        )
        text = f"🔕 <@{user}> silenced {described} until {ends:%Y-%m-%d %H:%M} UTC (silence {silence_id})"
        await self.lifecycle.add_event(
            incident.id, "silenced", text, now=now, actor=user, data={"silence_id": silence_id}, bump=True
        )
        self.publish(incident.id)
        return text

    async def expire_for(self, incident: Incident, user: str) -> None:
        """Expire the incident's active silences (on resolve)."""
        if self.silences is None:
            return
        now = self.clock()
        for record in await self.lifecycle.active_silences(incident.id, now):
            try:
                await self.silences.expire_silence(record.silence_id)
            except IntegrationError as exc:
                await self.lifecycle.add_event(
                    incident.id,
                    "silence_expire_failed",
                    f"Could not expire silence {record.silence_id}: {exc.message}",
                    now=now,
                    announce=True,
                )
                continue
            await self.lifecycle.mark_silence_expired(record.id, now)
            await self.lifecycle.add_event(
                incident.id,
                "silence_expired",
                f"Silence {record.silence_id} expired on resolve",
                now=now,
                actor=user,
            )
