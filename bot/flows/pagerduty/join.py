"""Alertmanager and PagerDuty reporting one problem make one incident.

An organisation commonly sends one Alertmanager group both to the bot (``webhook_configs``)
and to PagerDuty (``pagerduty_configs``), whose incident then reaches the bot as a V3 webhook.
Whichever arrives first opens the incident and records its join keys
(``bot.sources.pagerduty.alertmanager_join_keys``); the other joins it. The PagerDuty side is
in ``bot.flows.pagerduty.inbound``; this is the Alertmanager side, called by the intake."""

from __future__ import annotations

from datetime import datetime

from bot.core.blockkit import escape, link
from bot.core.incident import Alert, Incident
from bot.sources.pagerduty import alertmanager_join_keys
from bot.store.incidents import IntakeTx
from bot.store.join_keys import JoinKeys


def group_join_keys(group_key: str, alerts: list[Alert]) -> dict[str, str]:
    return alertmanager_join_keys(group_key, ((a.labels, a.annotations) for a in alerts))


class AlertGroupJoin:
    """Finds the open incident an Alertmanager group belongs to through PagerDuty, and records
    the group's keys on the incident it ends up in."""

    async def lock_and_find(self, tx: IntakeTx, group_key: str, alerts: list[Alert]) -> Incident | None:
        """Lock the group's join keys for this transaction; the open incident recorded under
        one of them (a PagerDuty-born incident, usually), if any."""
        keys = group_join_keys(group_key, alerts)
        join = JoinKeys(tx)
        await join.lock(keys)
        return await join.open_incident(keys)

    async def record(self, tx: IntakeTx, incident_id: int, group_key: str, alerts: list[Alert]) -> None:
        await JoinKeys(tx).record(incident_id, group_join_keys(group_key, alerts))

    async def announce_joined(self, tx: IntakeTx, incident: Incident, names: str, now: datetime) -> None:
        where = (
            link(incident.pagerduty_url, "the PagerDuty incident")
            if incident.pagerduty_url
            else "the PagerDuty incident"
        )
        await tx.add_event(
            incident.id,
            "alertmanager_joined",
            f"Alertmanager's alerts ({escape(names)}) joined this incident: they are what paged {where}.",
            at=now,
            announce=True,
        )
