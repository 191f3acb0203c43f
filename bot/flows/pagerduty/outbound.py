"""Slack → PagerDuty: mirror a Slack-side change to the linked PagerDuty incident.

Failures are reported in the channel, never lost silently, and never undo the Slack-side
change. Only changes that did not come from PagerDuty are mirrored (the callers decide)."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from bot.clients.pagerduty import PagerDutyClient
from bot.core.blockkit import escape
from bot.core.errors import IntegrationError
from bot.core.incident import Incident
from bot.core.ports import Clock
from bot.store.lifecycle import LifecycleStore


class Mirrored(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    NOTE = "note"


class PagerDutyMirror:
    def __init__(
        self,
        pager: PagerDutyClient | None,
        lifecycle: LifecycleStore,
        clock: Clock,
        publish: Callable[[int], None],
    ) -> None:
        self.pager = pager
        self.lifecycle = lifecycle
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
