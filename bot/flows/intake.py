"""Ingest → incident: turn stored webhook deliveries into incidents, then ask for publishing.

The HTTP handler only stores the raw delivery (durable before the 2xx) and wakes a worker.
Workers on every replica claim deliveries with SKIP LOCKED, apply each in one transaction
(serialised per alert group by an advisory lock), and hand changed incidents to the
publisher. A sweep picks up whatever a crash or an outage left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime

from bot.core.blockkit import escape
from bot.core.catalog import Catalog, Route
from bot.core.incident import (
    Alert,
    AlertStatus,
    Incident,
    IncidentSource,
    IncidentStatus,
    Severity,
    highest_severity,
    incident_title,
)
from bot.core.playbooks import PlaybookSet
from bot.core.ports import Clock
from bot.core.timers import opening_timers
from bot.flows.correlation.intake import Correlator, Placed
from bot.flows.failures import dependency_of
from bot.flows.gate import BACKGROUND, IntakeGate
from bot.flows.pagerduty.join import AlertGroupJoin
from bot.obs import logs
from bot.obs.metrics import Metrics
from bot.obs.outages import Outages
from bot.sources.alertmanager import REPAIRS_FIELD, AMPayload
from bot.store.inbox import Inbox, InboxRow
from bot.store.incidents import IntakeTx

log = logs.logger(logs.Component.INTAKE)

SourceHandler = Callable[[InboxRow, IntakeTx], Awaitable[list[int]]]
MAX_ATTEMPTS = 10


def playbook_group_key(playbooks: PlaybookSet, payload: AMPayload) -> str:
    """Alertmanager's groupKey, unless the matching playbook groups by its own labels."""
    first = payload.alerts[0].labels
    playbook = playbooks.match(first)
    if playbook is None or not playbook.group_by:
        return payload.group_key
    values = ",".join(f"{name}={first.get(name, '')}" for name in playbook.group_by)
    return f"playbook:{playbook.name}:{values}"


def playbook_severity(playbooks: PlaybookSet, labels: dict[str, str]) -> Severity:
    """The matching playbook's severity override, else the policy's severity mapping."""
    playbook = playbooks.match(labels)
    if playbook is not None and playbook.severity is not None:
        return playbook.severity
    return playbooks.policy.severity_for(labels.get("severity"))


class Pipeline:
    def __init__(
        self,
        inbox: Inbox,
        playbooks: PlaybookSet,
        metrics: Metrics,
        clock: Clock,
        publish: Callable[[int], None],
        *,
        pagerduty: SourceHandler,
        gate: IntakeGate,
        outages: Outages,
        catalog: Catalog | None = None,
        join: AlertGroupJoin | None = None,
        correlator: Correlator | None = None,
    ) -> None:
        self.inbox = inbox
        self.catalog = catalog if catalog is not None else Catalog()
        self.playbooks = playbooks
        self.policy = playbooks.policy
        self.metrics = metrics
        self.clock = clock
        self.publish = publish
        self._wake: asyncio.Queue[None] = asyncio.Queue()
        # The other webhook source; Alertmanager deliveries are applied here.
        self.handlers: dict[str, SourceHandler] = {"pagerduty": pagerduty}
        # Webhook requests being answered go first (see bot.flows.gate).
        self.gate = gate
        self.outages = outages
        # The incident PagerDuty opened for this group, when its webhook came first.
        self.join = join or AlertGroupJoin()
        # Without one, every new group opens its own incident (as before correlation).
        self.correlator = correlator

    def severity(self, labels: dict[str, str]) -> Severity:
        return playbook_severity(self.playbooks, labels)

    def route(self, firing: list[Alert]) -> Route:
        """The incident's team and service, from its alerts' labels (bot.core.catalog)."""
        return self.catalog.route_alerts(
            (a.labels, self.policy.map_severity(a.labels.get("severity"))) for a in firing
        )

    def group_key(self, payload: AMPayload) -> str:
        return playbook_group_key(self.playbooks, payload)

    def wake(self) -> None:
        self._wake.put_nowait(None)

    async def worker(self, stop: asyncio.Event, poll_interval: float, drain_s: float = 10.0) -> None:
        """Process deliveries until stop is set, then drain what was accepted before the
        shutdown (bounded), so a SIGTERM leaves nothing half done."""
        BACKGROUND.set(True)
        while not stop.is_set():
            if await self._step():
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.get(), timeout=poll_interval)
        deadline = asyncio.get_running_loop().time() + drain_s
        while asyncio.get_running_loop().time() < deadline and await self._step():
            pass

    async def _step(self) -> bool:
        await self.gate.turn()
        try:
            processed = await self.process_one()
        except Exception as exc:
            dependency = dependency_of(exc)
            if dependency is None:
                log.exception("worker.error")
            else:
                self.outages.down(dependency, f"{type(exc).__name__}: {exc}")
            return False
        self.outages.up("postgres")
        return processed

    async def process_one(self) -> bool:
        """Claim and apply one stored delivery; False when there is none ready."""
        failed: tuple[int, int, str] | None = None
        touched: list[int] = []
        try:
            async with self.inbox.claim_delivery() as claimed:
                if claimed is None:
                    return False
                row, tx = claimed
                try:
                    touched = await self._apply(row, tx)
                except Exception as exc:
                    failed = (row.id, row.attempts, f"{type(exc).__name__}: {exc}")
                    raise
        except Exception:
            if failed is None:
                raise
            inbox_id, attempts, error = failed
            self.metrics.delivery_failures.inc()
            give_up = attempts + 1 >= MAX_ATTEMPTS
            log.exception("delivery.failed", extra={"inbox_id": inbox_id, "give_up": give_up})
            await self.inbox.record_delivery_failure(inbox_id, error, give_up=give_up)
            return True
        for incident_id in touched:
            self.publish(incident_id)
        return True

    async def _apply(self, row: InboxRow, tx: IntakeTx) -> list[int]:
        with logs.context(inbox_id=row.id, source=row.source):
            return await self._apply_row(row, tx)

    async def _apply_row(self, row: InboxRow, tx: IntakeTx) -> list[int]:
        if row.source == "alertmanager":
            payload = AMPayload.model_validate(row.body)
            touched = await self.apply_alertmanager(tx, payload, row.id)
            repairs = int(row.body.get(REPAIRS_FIELD, 0)) if isinstance(row.body, dict) else 0
            for incident_id in touched if repairs else []:
                await tx.add_event(
                    incident_id,
                    "delivery_repaired",
                    f"⚠️ {repairs} character(s) that cannot be stored (NUL, broken UTF-16) in an"
                    " Alertmanager delivery were replaced by \ufffd; its alerts were kept.",
                    at=self.clock(),
                    data={"inbox_id": row.id, "characters": repairs},
                )
        elif row.source in self.handlers:
            touched = await self.handlers[row.source](row, tx)
        else:
            log.warning("delivery.unknown_source", extra={"source": row.source, "inbox_id": row.id})
            touched = []
        self.metrics.processing_lag.observe(max(0.0, (self.clock() - row.received_at).total_seconds()))
        return touched

    async def apply_alertmanager(self, tx: IntakeTx, payload: AMPayload, delivery_id: int) -> list[int]:
        """Apply one group snapshot. Returns the incidents whose stored state changed."""
        now = self.clock()
        alerts = payload.domain_alerts()
        key = self.group_key(payload)
        await tx.lock_group(key)
        firing = [a for a in alerts if a.status is AlertStatus.FIRING]
        joined = await self.join.lock_and_find(tx, payload.group_key, firing)
        incident = await tx.open_incident_for(key) or joined
        created = False
        placed: Placed | None = None
        if incident is None and firing and self.correlator is not None:
            placed = await self.correlator.place(tx, firing, self.route(firing), now)
            incident = placed.target
        if incident is None and firing:
            incident, created = await self._open(tx, key, payload, firing, now)
        related: list[int] = []
        if placed is not None and incident is not None and self.correlator is not None:
            related = await self.correlator.record(tx, placed, incident, key, payload.group_key, now)
        firing_before = 0
        if incident is not None and not created:
            firing_before, total_before = await tx.incident_alert_counts(incident.id)
            if incident is joined and total_before == 0 and firing:
                # PagerDuty opened it first: the group's first alerts are not "firing again".
                firing_before = len(firing)
                await self.join.announce_joined(
                    tx, incident, ", ".join(sorted({a.name for a in firing})), now
                )
        if incident is not None and firing:
            await self.join.record(tx, incident.id, payload.group_key, firing)
        changes = await tx.upsert_alerts(incident.id if incident else None, alerts, delivery_id, now)
        for change in changes:
            self.metrics.alerts_stored.labels(change.alert.status.value).inc()
        if incident is None:
            return []  # resolved alerts of a group with no open incident: stored, nothing to show
        changed = created or bool(changes)
        for change in changes:
            verb = "fired" if change.alert.status is AlertStatus.FIRING else "resolved"
            await tx.add_event(
                incident.id,
                f"alert_{verb}",
                f"{escape(change.alert.name)} {verb}",
                at=now,
                data={"fingerprint": change.alert.fingerprint, "labels": change.alert.labels},
            )
        if incident.status is not IncidentStatus.RESOLVED and not created:
            changed = await self._follow_up(tx, incident.id, firing, firing_before, now) or changed
        if changed and not created:
            await tx.bump_version(incident.id)
        return ([incident.id] if changed else []) + related

    async def _open(
        self, tx: IntakeTx, key: str, payload: AMPayload, firing: list[Alert], now: datetime
    ) -> tuple[Incident, bool]:
        severity = highest_severity([self.severity(a.labels) for a in firing]) or Severity.P3
        route = self.route(firing)
        incident, created = await tx.create_incident(
            group_key=key,
            title=incident_title(firing),
            severity=severity,
            source=IncidentSource.ALERTMANAGER,
            now=now,
            external_url=payload.external_url or None,
            team=route.team,
            service=route.service,
        )
        if created:
            names = ", ".join(sorted({a.name for a in firing}))
            await tx.add_event(
                incident.id,
                "opened",
                f"Incident opened by Alertmanager: {escape(names)} (team {escape(self.catalog.route_text(route))})",
                at=now,
                data={"group_key": key, "alerts": len(firing), "team": route.team, "service": route.service},
            )
            for kind, due_at, data in opening_timers(self.policy, incident, now, self.catalog):
                await tx.schedule_timer(incident.id, kind, due_at, data)
            self.metrics.incidents_opened.labels("alertmanager", severity.value).inc()
            log.info("incident.opened", extra={"incident_id": incident.id, "severity": severity.value})
        return incident, created

    async def _follow_up(
        self, tx: IntakeTx, incident_id: int, firing: list[Alert], firing_before: int, now: datetime
    ) -> bool:
        """Announce all-resolved / firing-again and raise the severity for a new alert; True
        when the severity was raised."""
        firing_after, total = await tx.incident_alert_counts(incident_id)
        if firing_before > 0 and firing_after == 0:
            await tx.add_event(
                incident_id,
                "alerts_resolved",
                f"✅ All {total} alert(s) of this incident have resolved. Resolve the incident when"
                " you are satisfied (`/incident resolve`).",
                at=now,
                announce=True,
            )
        elif firing_before == 0 and firing_after > 0:
            await tx.add_event(
                incident_id,
                "alerts_refiring",
                f"🔥 Alerts are firing again ({firing_after} firing).",
                at=now,
                announce=True,
            )
        raised = highest_severity([self.severity(a.labels) for a in firing])
        if raised is not None and await tx.raise_severity(incident_id, raised):
            await tx.add_event(
                incident_id,
                "severity_raised",
                f"Severity raised to {raised} by a new alert.",
                at=now,
                announce=True,
            )
            return True
        return False
