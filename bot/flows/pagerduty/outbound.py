"""Slack → PagerDuty: mirror a Slack-side change to the linked PagerDuty incident.

Failures are reported in the channel, never lost silently, and never undo the Slack-side
change. Only changes that did not come from PagerDuty are mirrored (the callers decide)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from enum import StrEnum

from bot.clients.pagerduty import PagerDutyClient
from bot.core.blockkit import escape
from bot.core.errors import IntegrationError
from bot.core.incident import Incident
from bot.core.ports import Clock
from bot.store.coordination import Coordination
from bot.store.lifecycle import LifecycleStore

# How long a note the bot wrote is recognised when PagerDuty announces it back (its webhooks
# are retried for up to 48 hours).
OWN_NOTE_TTL_S = 3 * 86400


def own_note_key(pagerduty_incident_id: str, content: str) -> str:
    digest = hashlib.sha256(content.strip().encode("utf-8")).hexdigest()[:32]
    return f"pd-own-note:{pagerduty_incident_id}:{digest}"


class Mirrored(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    NOTE = "note"


class PagerDutyMirror:
    def __init__(
        self,
        pager: PagerDutyClient | None,
        lifecycle: LifecycleStore,
        coord: Coordination,
        clock: Clock,
        publish: Callable[[int], None],
    ) -> None:
        self.pager = pager
        self.lifecycle = lifecycle
        self.coord = coord
        self.clock = clock
        self.publish = publish

    async def send(self, incident: Incident, what: Mirrored, text: str | None = None) -> None:
        if self.pager is None or not incident.pagerduty_incident_id:
            return
        pd_id = incident.pagerduty_incident_id
        try:
            match what:
                case Mirrored.ACKNOWLEDGE:
                    await self.pager.acknowledge(pd_id)
                case Mirrored.RESOLVE:
                    await self.pager.resolve(pd_id, text)
                case Mirrored.NOTE if text:
                    # Remembered before the call: PagerDuty's incident.annotated webhook for this
                    # note may arrive before the call returns, and must not be posted back.
                    await self.coord.remember(own_note_key(pd_id, text), OWN_NOTE_TTL_S)
                    await self.pager.add_note(pd_id, text)
        except IntegrationError as exc:
            await self.lifecycle.add_event(
                incident.id,
                "pagerduty_failed",
                f"⚠️ PagerDuty {what} failed: {escape(exc.message)}",
                now=self.clock(),
                announce=True,
            )
            self.publish(incident.id)
            return
        await self.lifecycle.add_event(
            incident.id, "pagerduty_synced", f"PagerDuty {what} sent for {pd_id}", now=self.clock()
        )
