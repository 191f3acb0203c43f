"""Alertmanager silences for an incident: created from Slack under the policy's rules,
recorded on the incident, announced, expired when it resolves.

A silence needs the `lifecycle.silence` role and an open incident; it always carries the
incident's own labels (those all of its alerts share, so the group labels among them) as
equality matchers, so a responder can narrow it but never widen it past the incident;
negative and match-everything matchers need `lifecycle.silence_elevated`; the duration is
capped per severity (`lifecycle.silence_max_minutes`). Every check runs before Alertmanager
is called: a refusal changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from bot.clients.alertmanager import AlertmanagerSilences, Matcher
from bot.clients.slack import SlackChat
from bot.core.blockkit import inline
from bot.core.errors import IntegrationError, UserError
from bot.core.incident import Incident, IncidentStatus
from bot.core.policy import Permission, Policy
from bot.core.ports import Clock
from bot.flows.authorize import Authorizer
from bot.obs import logs
from bot.render.times import at
from bot.store.incidents import PostgresStore
from bot.store.lifecycle import LifecycleStore

log = logs.logger(logs.Component.INCIDENTS)

# Values no real label is likely to have: a regex matching them matches (nearly) everything.
_PROBES = ("", "x", "Zq-7_.:/ incidentbot-probe")


def broad_reason(matcher: Matcher) -> str | None:
    """Why a matcher widens a silence beyond named values (negative, empty, match-everything),
    or None for a plain `label=value` or a selective `label=~regex`."""
    shown = f"`{inline(matcher.to_filter())}`"
    if not matcher.is_equal:
        return f"{shown} is negative"
    if not matcher.is_regex:
        return f"{shown} matches every alert without the label" if not matcher.value else None
    if not _compiles(matcher.value) or any(re.fullmatch(matcher.value, p) for p in _PROBES):
        return f"{shown} matches (nearly) everything"
    return None


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


class SilenceFlow:
    def __init__(
        self,
        store: PostgresStore,
        lifecycle: LifecycleStore,
        silences: AlertmanagerSilences | None,
        chat: SlackChat,
        authorize: Authorizer,
        policy: Policy,
        clock: Clock,
        publish: Callable[[int], None],
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.silences = silences
        self.chat = chat
        self.authorize = authorize
        self.policy = policy
        self.clock = clock
        self.publish = publish

    async def incident_matchers(self, incident: Incident) -> list[Matcher]:
        """The incident's own scope, always part of its silences: the labels all of its alerts
        share (without severity; the group labels are among them) as equality matchers, and
        the alert names when those differ. Empty when the incident has no alerts."""
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

    async def silence(
        self, incident: Incident, requested: list[Matcher], duration: timedelta, user: str
    ) -> str:
        """Check everything, then silence in Alertmanager; returns the answer for `user`."""
        await self.authorize.require(Permission.SILENCE, user, incident)
        if self.silences is None:
            raise UserError("Silences are off: ALERTMANAGER_URL is not configured.")
        if incident.status is IncidentStatus.RESOLVED:
            raise UserError(
                f"Incident {incident.ref} is resolved: its alerts are not silenced any more. "
                "`/incident reopen` it first if they still need silencing."
            )
        longest = self.policy.lifecycle.silence_max(incident.severity)
        if duration > longest:
            raise UserError(
                f"A {incident.severity} incident can be silenced for at most {_duration(longest)}"
                " (`lifecycle.silence_max_minutes` in policy.yaml)."
            )
        invalid = [m for m in requested if m.is_regex and not _compiles(m.value)]
        if invalid:
            raise UserError(f"`{inline(invalid[0].to_filter())}` is not a valid regular expression.")
        broad = [reason for m in requested if (reason := broad_reason(m)) is not None]
        if broad:
            refusal = await self.authorize.decide(Permission.SILENCE_ELEVATED, user, incident)
            if not refusal.allowed:
                raise UserError(f"{'; '.join(broad)}. {refusal.reason}")
        scope = await self.incident_matchers(incident)
        if not scope:
            raise UserError(
                f"Incident {incident.ref} has no alerts, so there is nothing of its own to silence."
            )
        matchers = scope + [m for m in requested if m not in scope]
        return await self._create(incident, matchers, duration, user)

    async def _create(
        self, incident: Incident, matchers: list[Matcher], duration: timedelta, user: str
    ) -> str:
        """Silence in Alertmanager, record it on the incident and announce it in the incident's
        channel and the notification channel; returns the announcement. Only after `silence`
        checked everything."""
        assert self.silences is not None  # checked by `silence`
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
            raise UserError(f"Alertmanager refused the silence: {inline(exc.message)}") from None
        described = ", ".join(f"`{inline(m.to_filter())}`" for m in matchers)
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
        text = (
            f"🔕 <@{user}> silenced {described} for {_duration(duration)}, until {at(ends)}"
            f" (silence {inline(silence_id)})"
        )
        await self.lifecycle.add_event(
            incident.id,
            "silenced",
            text,
            now=now,
            actor=user,
            data={"silence_id": silence_id},
            announce=True,
        )
        self.publish(incident.id)
        await self._tell_notification_channel(incident, text)
        return text

    async def _tell_notification_channel(self, incident: Incident, text: str) -> None:
        """The silence in the notification channel too: alerts going quiet is news for everyone
        watching, not only for the incident's channel."""
        loaded = await self.store.load_view(incident.id)
        channel = loaded[1].notification_channel_id if loaded else None
        if not channel:
            return
        try:
            await self.chat.post_text(channel, f"Incident {incident.ref}: {text}")
        except IntegrationError as exc:
            # The silence exists and the incident's channel hears of it: say so in the log
            # rather than answer the responder with an error for a silence that worked.
            log.warning("silence.announce_failed", extra={"incident_id": incident.id, "error": str(exc)})

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
