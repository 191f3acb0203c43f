"""Investigations of incidents, on request or when one opens: the progress in a thread of the
incident channel, the audit (investigation, every tool call, tokens, cost) and the timeline,
the result as one message, and suggested actions turned into ordinary proposals through
`Proposer` (the policy's approvers and counts; the investigator never executes anything).

Off entirely when no endpoint is configured; degraded to summaries when the endpoint answers
but calls no tools; stopped by the kill switch (LLM_DISABLED)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from redis.exceptions import RedisError

from bot.clients.llm import Capability, ChatClient
from bot.clients.slack import SlackChat
from bot.core import blockkit as kit
from bot.core.actions import target_of
from bot.core.blockkit import Message
from bot.core.errors import IntegrationError, UserError
from bot.core.incident import Incident, IncidentStatus, IncidentView, Severity
from bot.core.investigation import Redactor, SuggestedAction, ToolCall
from bot.core.policy import Policy
from bot.core.ports import Clock
from bot.flows.enrich import Enricher
from bot.flows.investigate.loop import Budgets, Conversation, Outcome
from bot.flows.investigate.tools import ToolBox
from bot.flows.remediation.common import Access
from bot.flows.remediation.propose import Proposer, Request
from bot.flows.supervisor import Supervisor
from bot.obs import logs
from bot.obs.metrics import Metrics
from bot.render.investigation import (
    ProposalNote,
    progress_line,
    result_message,
    started_message,
    summary_draft_message,
)
from bot.store.coordination import Coordination
from bot.store.incidents import PostgresStore
from bot.store.investigations import InvestigationStore, Usage

log = logs.logger(logs.Component.INVESTIGATE)

REQUESTER = "investigator"
SLOTS = "investigations"
SLOT_LEASE_MS = 30_000
AT_LIMIT = "Investigations are already running at the limit; try again in a few minutes."
MAX_GRAPHS = 2
MAX_REASON = 300


@dataclass(frozen=True, slots=True)
class Status:
    """What the investigator can do, as said in the log, /readyz and /incident help."""

    capability: Capability
    detail: str
    disabled: bool = False

    @property
    def investigations(self) -> bool:
        return self.capability is Capability.TOOLS and not self.disabled

    @property
    def summaries(self) -> bool:
        return self.capability in (Capability.TOOLS, Capability.SUMMARIES) and not self.disabled

    def describe(self) -> str:
        if self.capability is Capability.OFF:
            return "investigator: off (LLM_BASE_URL is not set)"
        if self.disabled:
            return "investigator: stopped by the kill switch (LLM_DISABLED)"
        if self.capability is Capability.PROBING:
            return "investigator: probing the model endpoint (investigations wait for its answer)"
        if self.capability is Capability.UNREACHABLE:
            return f"investigator: off, the model endpoint did not answer ({self.detail}); probing again"
        if self.capability is Capability.SUMMARIES:
            return f"investigator: summaries only, the model calls no tools ({self.detail}); probing again"
        return f"investigator: on ({self.detail})"


@dataclass(frozen=True, slots=True)
class AutoRule:
    """`team:P1` entries of LLM_AUTO_INVESTIGATE (`*`: any team)."""

    entries: frozenset[tuple[str, Severity]]

    @classmethod
    def parse(cls, text: str) -> AutoRule:
        entries = set()
        for item in filter(None, (p.strip() for p in text.split(","))):
            team, _, severity = item.partition(":")
            try:
                entries.add((team.strip() or "*", Severity(severity.strip().upper())))
            except ValueError:
                raise ValueError(f"LLM_AUTO_INVESTIGATE: `{item}` is not team:P1..P4") from None
        return cls(frozenset(entries))

    def applies(self, incident: Incident) -> bool:
        team = incident.team or "*"
        return (team, incident.severity) in self.entries or ("*", incident.severity) in self.entries


@dataclass(frozen=True, slots=True)
class Pricing:
    per_million_tokens: float = 0.0

    def cost(self, tokens: int) -> float:
        return round(tokens * self.per_million_tokens / 1_000_000, 6)


class Investigator:
    def __init__(
        self,
        client: ChatClient | None,
        status: Status,
        tools_for: Callable[[IncidentView], ToolBox],
        store: PostgresStore,
        history: InvestigationStore,
        chat: SlackChat,
        proposer: Proposer,
        access: Access,
        policy: Policy,
        supervisor: Supervisor,
        metrics: Metrics,
        clock: Clock,
        *,
        budgets: Budgets,
        redactor: Redactor,
        max_concurrent: int,
        coord: Coordination,
        pricing: Pricing,
        auto: AutoRule,
        enricher: Enricher | None = None,
    ) -> None:
        self.client = client
        self.status = status
        self.tools_for = tools_for
        self.store = store
        self.history = history
        self.chat = chat
        self.proposer = proposer
        self.access = access
        self.policy = policy
        self.supervisor = supervisor
        self.metrics = metrics
        self.clock = clock
        self.budgets = budgets
        self.redactor = redactor
        self.pricing = pricing
        self.auto = auto
        self.enricher = enricher
        # The limit holds across replicas: a counting semaphore in Redis, whose leases lapse
        # when a replica dies mid-investigation.
        self.max_concurrent = max_concurrent
        self.coord = coord
        self._auto_seen: set[int] = set()
        self._status_changed = asyncio.Condition()

    async def watch_endpoint(self, stop: asyncio.Event, *, interval_s: float, timeout_s: float) -> None:
        """Probe the endpoint in the background (start-up never waits for a model): until it
        answers with tool calls, again every `interval_s` while it is unreachable or tool-less,
        so a model that comes up later is used without a restart. Not while the kill switch
        (LLM_DISABLED) is on: nothing is sent to a model that is switched off."""
        client = self.client
        while client is not None and not self.status.disabled and not stop.is_set():
            probe = asyncio.ensure_future(client.probe(timeout_s))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({probe, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not probe.done():
                probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probe
                return
            capability, detail = probe.result()
            await self._set_status(Status(capability, detail))
            if capability is Capability.TOOLS:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)

    async def _set_status(self, status: Status) -> None:
        changed = status != self.status
        self.status = status
        if changed:
            (log.info if status.investigations else log.warning)(
                "investigator.status", extra={"status": status.describe()}
            )
        async with self._status_changed:
            self._status_changed.notify_all()

    async def wait_for_status(self, wanted: Callable[[Status], bool], timeout: float = 10.0) -> Status:
        """Until the status is one `wanted` accepts (woken by every probe's answer)."""
        async with asyncio.timeout(timeout), self._status_changed:
            while not wanted(self.status):
                await self._status_changed.wait()
            return self.status

    def require_investigations(self) -> ChatClient:
        if self.client is None or not self.status.investigations:
            raise UserError(f"No investigation: {self.status.describe()}.")
        return self.client

    async def admit(self) -> None:
        """Refuse at once when every slot is taken on the replicas together (the limit)."""
        try:
            held = await self.coord.slots_held(SLOTS)
        except RedisError as exc:
            raise IntegrationError("redis", f"the investigation limit cannot be checked: {exc}") from None
        if held >= self.max_concurrent:
            raise UserError(AT_LIMIT)

    async def check_switch(self) -> None:
        """Refuse while the runtime kill switch stops investigations (read from PostgreSQL, so
        every replica sees a flip at once)."""
        stopped = await self.history.stopped_by()
        if stopped is not None:
            who, why = stopped
            raise UserError(
                f"Investigations are stopped (by <@{who}>{': ' + kit.escape(why) if why else ''});"
                " `/incident investigator allow` lets them run again."
            )

    async def set_switch(self, user: str, stop: bool, reason: str) -> str:
        """Stop or allow investigations on every replica: the policy's `kill_switch_roles` only."""
        roles = list(self.policy.kill_switch_roles)
        membership = await self.access.membership(user, roles)
        if not self.policy.in_roles(roles, user, membership.groups):
            names = ", ".join(f"`{r}`" for r in roles) or "nobody"
            raise UserError(
                f"You may not {'stop' if stop else 'allow'} investigations: the policy lets {names} do it."
            )
        reason = " ".join(reason.split())[:MAX_REASON]
        await self.history.set_stopped(stop, user, reason, self.clock())
        log.info("investigation.switch", extra={"user": user, "stopped": stop})
        return f"Investigations are {'stopped' if stop else 'allowed'} on every replica (by <@{user}>)."

    async def investigate(self, incident: Incident, requested_by: str | None, question: str) -> Outcome:
        """Run one investigation end to end, holding one of the slots shared by every replica."""
        client = self.require_investigations()
        await self.check_switch()
        if incident.channel_id is None:
            raise UserError(f"Incident {incident.ref} has no channel yet; try again in a moment.")
        async with contextlib.AsyncExitStack() as held:
            try:
                slot = await held.enter_async_context(
                    self.coord.slot(SLOTS, self.max_concurrent, SLOT_LEASE_MS)
                )
            except RedisError as exc:
                raise IntegrationError("redis", f"the investigation limit cannot be checked: {exc}") from None
            if slot is None:
                raise UserError(AT_LIMIT)
            return await self._run(client, incident, incident.channel_id, requested_by, question)

    async def investigate_requested(self, incident: Incident, user: str, question: str) -> None:
        """`investigate` in the background for a person: a refusal or an outside failure is said
        in the incident's channel (the command was answered already)."""
        try:
            await self.investigate(incident, user, question)
        except (UserError, IntegrationError) as exc:
            log.warning("investigation.not_run", extra={"incident_id": incident.id, "error": str(exc)})
            text = exc.message if isinstance(exc, IntegrationError) else str(exc)
            if incident.channel_id:
                with contextlib.suppress(IntegrationError):
                    await self.chat.post_text(
                        incident.channel_id, f"<@{user}>: the investigation did not run: {kit.escape(text)}"
                    )

    async def after_publish(self, view: IncidentView) -> bool:
        """Publish hook: the automatic investigation of an open incident with a channel, when
        configured for its team and severity; started in the background, at most once per
        incident (the store refuses a second automatic one). Never changes the incident."""
        incident = view.incident
        if (
            not self.status.investigations
            or incident.channel_id is None
            or incident.status is IncidentStatus.RESOLVED
            or incident.id in self._auto_seen
            or not self.auto.applies(incident)
        ):
            return False
        self._auto_seen.add(incident.id)
        self.supervisor.spawn(self._auto(incident), name=f"investigate-{incident.id}")
        return False

    async def _auto(self, incident: Incident) -> None:
        try:
            await self.admit()
            await self.investigate(incident, None, "")
        except (UserError, IntegrationError) as exc:
            log.warning("investigation.auto_skipped", extra={"incident_id": incident.id, "error": str(exc)})

    async def _run(
        self, client: ChatClient, incident: Incident, channel: str, requested_by: str | None, question: str
    ) -> Outcome:
        loaded = await self.store.load_view(incident.id)
        if loaded is None:
            raise UserError(f"Incident {incident.ref} is gone.")
        view = loaded[0]
        started = await self.history.start(incident.id, requested_by, question, client.model, self.clock())
        if started is None:
            raise UserError(f"Incident {incident.ref} had its automatic investigation already.")
        investigation: int = started
        thread: str | None = None
        try:
            thread = await self.chat.post(channel, started_message(incident.ref, requested_by, question))
        except IntegrationError as err:  # progress is a courtesy; the audit has it
            log.warning("investigation.progress_failed", extra={"error": str(err)})

        async def on_call(call: ToolCall) -> None:
            await self.history.record_call(investigation, call, self.clock())
            if thread is None:
                return
            try:
                await self.chat.post_text(channel, progress_line(call), thread_ts=thread)
            except IntegrationError as err:
                log.warning("investigation.progress_failed", extra={"error": str(err)})

        brief = _brief(incident, question)
        conversation = Conversation(client, self.budgets, self.redactor)
        outcome = await conversation.run(self.tools_for(view), brief, on_call)
        notes = await self._propose(incident, requested_by, outcome)
        await self._record(incident, investigation, outcome, notes)
        msg = result_message(
            incident.ref,
            outcome.verdict,
            outcome.calls,
            notes,
            status=outcome.status,
            stop_reason=outcome.stop_reason,
            tokens=outcome.tokens,
        )
        await self.chat.post(channel, msg)
        await self._graphs(channel, outcome, view.alerts[0].labels if view.alerts else None)
        return outcome

    async def _graphs(self, channel: str, outcome: Outcome, labels: dict[str, str] | None) -> None:
        """The evidence as graphs: each cited range query drawn into the channel, as an ad hoc
        graph is (cost checks again, the same per-user and in-flight limits)."""
        if self.enricher is None or not self.enricher.graphs_on or outcome.verdict is None:
            return
        cited = {c for f in outcome.verdict.findings for c in f.citations}
        ranges = [c for c in outcome.calls if c.id in cited and c.ok and c.tool == "promql_range"]
        for call in ranges[:MAX_GRAPHS]:
            try:
                slot = await self.enricher.admit_ad_hoc(REQUESTER)
            except UserError:
                return  # over the graph limits: the finding's excerpt stays the evidence
            minutes = call.arguments.get("minutes", 60)
            cluster = call.arguments.get("cluster")
            await self.enricher.draw_ad_hoc(
                slot,
                channel,
                str(call.arguments["query"]),
                lookback=timedelta(minutes=minutes if isinstance(minutes, int) else 60),
                alert_start=None,
                now=self.clock(),
                labels=labels,
                cluster=cluster if isinstance(cluster, str) else None,
            )

    async def draft_summary(self, incident: Incident, user: str) -> Message:
        """A stakeholder update drafted from the timeline, stored as a draft; the message shown to
        `user` carries a Post button (nothing is posted until a human clicks it)."""
        if self.client is None or not self.status.summaries:
            raise UserError(f"No summary: {self.status.describe()}.")
        await self.check_switch()
        events = await self.store.timeline(incident.id)
        timeline = "\n".join(f"{e.at.isoformat()} {e.kind}: {e.text}" for e in events[-80:])
        brief = _brief(incident, "") + "\nTimeline:\n" + timeline
        messages = [
            {"role": "system", "content": SUMMARY_PROMPT},
            {"role": "user", "content": self.redactor(brief)},
        ]
        completion = await self.client.complete(
            messages, max_tokens=600, timeout_s=self.budgets.request_timeout_s
        )
        draft = completion.content.strip()[:2000] or "(the model returned nothing)"
        token = secrets.token_urlsafe(16)
        draft_id = await self.history.save_draft(
            incident.id, user, self.client.model, draft, token, self.clock()
        )
        return summary_draft_message(incident.ref, draft, f"{draft_id}:{token}")

    async def narrative(self, incident: Incident) -> tuple[str, str] | None:
        """(model, a narrative of the incident from its timeline) for the postmortem draft; None
        when the investigator cannot write one (off, stopped, or the model failed: the draft
        then goes out without it)."""
        if self.client is None or not self.status.summaries or await self.history.stopped_by() is not None:
            return None
        events = await self.store.timeline(incident.id)
        timeline = "\n".join(f"{e.at.isoformat()} {e.kind}: {e.text}" for e in events[-120:])
        messages = [
            {"role": "system", "content": NARRATIVE_PROMPT},
            {"role": "user", "content": self.redactor(_brief(incident, "") + "\nTimeline:\n" + timeline)},
        ]
        try:
            completion = await self.client.complete(
                messages, max_tokens=800, timeout_s=self.budgets.request_timeout_s
            )
        except IntegrationError as exc:
            log.warning(
                "investigation.narrative_failed", extra={"incident_id": incident.id, "error": str(exc)}
            )
            return None
        text = completion.content.strip()[:4000]
        return (self.client.model, text) if text else None

    async def claim_draft(self, value: str, incident: Incident) -> str:
        """The draft a Post button names, once (UserError for a forged, foreign or used one)."""
        draft_id, _, token = value.partition(":")
        text = await self.history.claim_draft(
            int(draft_id) if draft_id.isdigit() else 0, token, incident.id, self.clock()
        )
        if text is None:
            raise UserError("This draft was posted already, or the button is not valid here.")
        return text

    async def _propose(
        self, incident: Incident, requested_by: str | None, outcome: Outcome
    ) -> list[ProposalNote]:
        notes = []
        for suggestion in outcome.verdict.actions if outcome.verdict else ():
            title = f"{suggestion.action.value}: {_target(suggestion)}"
            try:
                run = await self.proposer.propose(
                    incident,
                    suggestion.action,
                    suggestion.params,
                    Request(
                        # The person who asked is the requester the policy checks (and who may not
                        # approve where the rule says so): never fewer approvals than their own.
                        requested_by=requested_by,
                        title=kit.escape(f"🔎 Suggested by the {REQUESTER}: {title}"),
                        why=kit.escape(suggestion.why),
                        dedupe_key=f"{REQUESTER}:{incident.id}:{suggestion.action.value}:{_target(suggestion)}",
                    ),
                )
            except UserError as exc:
                notes.append(ProposalNote(title, None, str(exc)))
                continue
            notes.append(ProposalNote(title, run.id if run else None, None if run else "proposed before"))
        return notes

    async def _record(
        self, incident: Incident, investigation: int, outcome: Outcome, notes: list[ProposalNote]
    ) -> None:
        usage = Usage(outcome.prompt_tokens, outcome.completion_tokens, self.pricing.cost(outcome.tokens))
        verdict = outcome.verdict
        result = {
            "findings": [
                {"claim": f.claim, "citations": list(f.citations), "confidence": f.confidence}
                for f in (verdict.findings if verdict else ())
            ],
            "not_enough_evidence": verdict.abstained if verdict else None,
            "dropped": list(verdict.dropped) if verdict else [],
            "proposals": [{"title": n.title, "run_id": n.run_id, "problem": n.problem} for n in notes],
        }
        tools = ", ".join(sorted({c.tool for c in outcome.calls})) or "none"
        text = (
            f"Investigation {outcome.status}: {len(outcome.calls)} tool call(s) ({tools}),"
            f" {outcome.tokens} tokens, est. cost {usage.cost:.4f}"
            + (f"; {outcome.stop_reason}" if outcome.stop_reason else "")
        )
        await self.history.finish(
            investigation,
            incident.id,
            status=outcome.status,
            usage=usage,
            stop_reason=outcome.stop_reason,
            result=result,
            timeline=kit.escape(text),
            now=self.clock(),
        )
        self.metrics.investigations.labels(outcome.status).inc()
        self.metrics.investigation_seconds.observe(outcome.seconds)
        self.metrics.investigation_tokens.labels("prompt").inc(outcome.prompt_tokens)
        self.metrics.investigation_tokens.labels("completion").inc(outcome.completion_tokens)
        log.info(
            "investigation.finished",
            extra={"incident_id": incident.id, "status": outcome.status, "tokens": outcome.tokens},
        )


SUMMARY_PROMPT = (
    "Write a short stakeholder update (at most 6 sentences, plain text) about this incident from its"
    " timeline: impact, what is known, what is being done, next update. Do not speculate beyond the"
    " timeline."
)


NARRATIVE_PROMPT = (
    "Write the narrative summary of a postmortem (one to three short paragraphs, plain text) from"
    " this incident's timeline: what happened, how it was detected, what was done, how it ended."
    " Use only what the timeline says; say so where it is silent."
)


def _target(suggestion: SuggestedAction) -> str:
    return target_of(suggestion.action, suggestion.params)


def _brief(incident: Incident, question: str) -> str:
    lines = [
        f"Incident {incident.ref}: {incident.title}",
        f"Severity {incident.severity.value}, status {incident.status.value}, team {incident.team or '-'},"
        f" service {incident.service or '-'}.",
        "Start with incident_alerts and the playbook, then look at metrics, pods, events, logs and"
        " recent rollouts.",
    ]
    if question:
        lines.append(f"The responder asks: {question}")
    return "\n".join(lines)
