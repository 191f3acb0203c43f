"""Verify an executed run: wait for the rollout (bounded), then re-run the playbook's step
checks or the alert's own expression until recovered or the verification window passes,
report in the proposal's thread and, for an applied change that did not help, propose the
undo as a new proposal under the same approval rules."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from bot.clients.kubernetes.clusters import Clusters
from bot.clients.kubernetes.results import RolloutState
from bot.clients.prometheus import PrometheusMetrics, PrometheusSources
from bot.core.actions import (
    ActionName,
    ActionParams,
    DeploymentTarget,
    HostCommandParams,
    NodeParams,
    RolloutUndoParams,
    ScaleParams,
)
from bot.core.blockkit import escape
from bot.core.checks import evaluate_check_all
from bot.core.errors import IntegrationError, UserError
from bot.core.playbooks import Playbook, PlaybookSet
from bot.core.ports import Clock
from bot.core.promql import QueryGuard, QueryRefused
from bot.core.runs import ActionRun, RunStatus
from bot.core.templating import TemplateError
from bot.flows.remediation.common import UNDOABLE, parse_params
from bot.flows.remediation.messages import ProposalMessages
from bot.flows.remediation.propose import Proposer, Request
from bot.obs import logs
from bot.store.incidents import PostgresStore
from bot.store.remediation import RemediationStore

log = logs.logger(logs.Component.REMEDIATION)

ROLLOUT_TIMEOUT_S = 600.0  # Kubernetes' default progressDeadlineSeconds
NOT_CONFIGURED = "recovery not checked: Prometheus is not configured (PROMETHEUS_URL)"


def _sample_matches(sample_labels: Mapping[str, str], alert_labels: Mapping[str, str]) -> bool:
    """Whether a sample of the alert expression is this alert's series (its labels agree)."""
    return all(
        alert_labels.get(k) == v for k, v in sample_labels.items() if k != "__name__" and k in alert_labels
    )


def undo_for(run: ActionRun) -> tuple[ActionName, ActionParams] | None:
    """The action that puts back what `run` changed, or None when there is none."""
    if run.action not in UNDOABLE:
        return None
    params = parse_params(run.action, run.params)
    if isinstance(params, ScaleParams):
        previous = run.preview.current_replicas
        if previous is None or previous == params.replicas:
            return None
        return ActionName.SCALE, ScaleParams(
            namespace=params.namespace, deployment=params.deployment, replicas=previous
        )
    if isinstance(params, DeploymentTarget):
        return ActionName.ROLLOUT_UNDO, RolloutUndoParams(
            namespace=params.namespace, deployment=params.deployment
        )
    if isinstance(params, NodeParams):
        return ActionName.UNCORDON, NodeParams(node=params.node)
    return None


class Verifier:
    def __init__(
        self,
        store: RemediationStore,
        incidents: PostgresStore,
        clusters: Clusters,
        prometheus: PrometheusSources,
        playbooks: PlaybookSet,
        proposer: Proposer,
        messages: ProposalMessages,
        clock: Clock,
        *,
        verify_seconds: float,
        guard: QueryGuard,
    ) -> None:
        self.store = store
        self.incidents = incidents
        self.clusters = clusters
        self.prometheus = prometheus
        self.playbooks = playbooks
        self.proposer = proposer
        self.messages = messages
        self.clock = clock
        self.verify_seconds = verify_seconds
        # An alert's own expression is re-run only from a configured Prometheus and within the
        # cost checks (bot.core.promql), as when it was graphed.
        self.guard = guard

    async def verify(self, run: ActionRun) -> str:
        """Wait for the rollout, re-run the checks, report in the thread; offer the undo when the
        change did not help (or was applied only partly). Returns the verification text."""
        recovered: bool | None
        rollout_ok, rollout_text = await self._rollout(run)
        if not rollout_ok:
            recovered, text = False, f"not recovered: {rollout_text}"
        else:
            recovered, checked = await self._check_recovery(run)
            parts = "; ".join(p for p in (rollout_text, checked) if p)
            verdict = "" if recovered is None else ("recovered: " if recovered else "not recovered: ")
            text = verdict + parts
        updated = await self.store.set_verification(
            run.id, text, self.clock(), details={"recovered": recovered, "rollout_ok": rollout_ok}
        )
        icon = "ℹ️" if recovered is None else ("✅" if recovered else "⚠️")
        await self.messages.note(run, f"{icon} Verification of “{run.title}”: {escape(text)}")
        self.messages.spawn_refresh(run.id)
        log.info("remediation.verified", extra={"run_id": run.id, "recovered": recovered})
        if recovered is False:
            await self.offer_undo(updated or run)
        return text

    async def _rollout(self, run: ActionRun) -> tuple[bool, str]:
        params = parse_params(run.action, run.params)
        if run.status is not RunStatus.SUCCEEDED:
            return False, f"the change was applied only partly ({run.error})"
        cluster = self.clusters.client(run.cluster)  # the cluster the change was made in
        if cluster is None or not isinstance(params, DeploymentTarget):
            return True, ""
        try:
            status = await cluster.wait_rollout(params.namespace, params.deployment, ROLLOUT_TIMEOUT_S)
        except IntegrationError as err:
            return False, f"rollout status unknown: {err.message}"
        if status.state is RolloutState.COMPLETE:
            return True, status.message
        return False, f"rollout {status.state.value}: {status.message}"

    async def _alert_context(self, run: ActionRun) -> tuple[dict[str, str], str, Playbook | None]:
        labels, generator_url = dict(run.labels), run.generator_url
        if not labels:
            loaded = await self.incidents.load_view(run.incident_id)
            if loaded is not None:
                view = loaded[0]
                alert = next(iter(view.firing), None) or next(iter(view.alerts), None)
                if alert is not None:
                    labels, generator_url = dict(alert.labels), alert.generator_url
        playbook = self.playbooks.by_name(run.playbook) if run.playbook else None
        if playbook is None and labels:
            playbook = self.playbooks.match(labels)
        return labels, generator_url, playbook

    async def _check_once(
        self, source: PrometheusMetrics, labels: dict[str, str], generator_url: str, playbook: Playbook | None
    ) -> tuple[bool | None, str]:
        """(recovered, what the checks said); recovered None: nothing could be checked."""
        checks = [step.check for step in (playbook.steps if playbook else []) if step.check is not None]
        if checks:
            texts: list[str] = []
            verdict: bool | None = True
            for check in checks:
                try:
                    query = check.render_query(labels)
                except TemplateError as err:
                    return None, f"recovery not checked: a step check cannot be filled in ({err})"
                samples = await source.query_instant(query)
                outcome = evaluate_check_all(check.op, check.value, [s.value for s in samples])
                texts.append(f"{check.description or query}: {outcome.text}")
                if outcome.passed is not True:
                    verdict = False
            return verdict, "runbook checks — " + "; ".join(texts)
        if not generator_url:
            return None, "recovery not checked: no runbook step checks and no alert expression to re-run"
        try:
            expr = self.guard.alert_expression(generator_url)
        except QueryRefused as refused:
            return None, f"recovery not checked: the alert's expression is not re-run: {refused.plain}"
        samples = [s for s in await source.query_instant(expr) if _sample_matches(s.labels, labels)]
        if not samples:
            return True, f"the alert's expression returns no samples for this alert (`{expr}`)"
        values = ", ".join(f"{s.value:g}" for s in samples[:5])
        return False, f"the alert's expression still returns {len(samples)} sample(s) ({values}) (`{expr}`)"

    async def _check_recovery(self, run: ActionRun) -> tuple[bool | None, str]:
        """Re-run the checks until they pass or the verification window has passed."""
        # The Prometheus of the cluster the change was made in (a host's: PROMETHEUS_URL).
        source = self.prometheus.for_cluster(run.cluster)
        if source is None:
            return None, NOT_CONFIGURED
        labels, generator_url, playbook = await self._alert_context(run)
        window = self.verify_seconds
        interval = min(5.0, max(0.5, window / 10))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        while True:
            try:
                recovered, text = await self._check_once(source, labels, generator_url, playbook)
            except IntegrationError as err:
                recovered, text = None, f"recovery unknown: could not query Prometheus: {err.message}"
            else:
                if recovered is None:  # nothing to check: waiting does not change that
                    return recovered, text
            if recovered is True or loop.time() + interval > deadline:
                return recovered, text
            await asyncio.sleep(interval)

    def _host_undo(self, run: ActionRun) -> tuple[ActionName, ActionParams] | None:
        """A host command's undo, as its template declares (scale back to what the preview
        counted)."""
        params = parse_params(run.action, run.params)
        hosts = self.proposer.hosts
        if not isinstance(params, HostCommandParams) or hosts is None:
            return None
        undo = hosts.undo_of(params, run.preview.current_replicas)
        return (ActionName.HOST_COMMAND, undo) if undo is not None else None

    async def offer_undo(self, run: ActionRun) -> ActionRun | None:
        """Propose the undo of `run` as a new proposal under the same approval rules."""
        undo = undo_for(run) or self._host_undo(run)
        if undo is None or run.undo_of is not None:  # never an undo of an undo (no ping-pong)
            return None
        incident = await self.incidents.get_incident(run.incident_id)
        if incident is None:
            return None
        action, params = undo
        request = Request(
            requested_by=run.requested_by,
            playbook=run.playbook,
            title=f"Undo: {run.title}",
            why=f"Run {run.id} did not help ({escape(run.verification or run.error or 'see the thread')}).",
            approval=run.approval_rule,
            labels=run.labels,
            generator_url=run.generator_url,
            undo_of=run.id,
            dedupe_key=f"undo:{run.id}",
            cluster=run.cluster,
        )
        try:
            proposal = await self.proposer.propose(incident, action, params, request)
        except UserError as err:
            await self.messages.note(run, f"The undo ({action.value}) was not proposed: {err}")
            return None
        if proposal is not None:
            await self.messages.note(
                run, f"↩️ Proposed the undo below: `{action.value}` on {escape(proposal.target)}."
            )
        return proposal
