"""Propose a remediation: check the policy (requester role, namespace allow/deny, parameter
bounds, exec template, cooldown), preview it with a server-side dry run, store the run with an
opaque token and post the proposal message into the incident channel.

Playbook remediations take their targets from the alert's labels only within the playbook's
`targets`; anything else is not proposed, with the reason in the channel. What only the
requester may see (set env: the values before and after) comes back with the proposal and is
never stored."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from bot.clients.kubernetes.clusters import Clusters
from bot.clients.kubernetes.results import Preview
from bot.clients.slack import SlackChat
from bot.core.actions import (
    HOST_ACTIONS,
    PARAMS_BY_ACTION,
    ActionName,
    ActionParams,
    ExecParams,
    HostCommandParams,
    ScaleParams,
    target_of,
)
from bot.core.blockkit import Message, escape
from bot.core.clusters import UnknownClusterError
from bot.core.errors import IntegrationError, UserError
from bot.core.incident import Incident, IncidentStatus
from bot.core.playbooks import Playbook, Remediation
from bot.core.policy import ApprovalRule, Policy
from bot.core.ports import Clock
from bot.core.runs import ActionRun, NewRun, PreviewInfo
from bot.core.templating import TemplateError, render_text
from bot.flows.remediation import break_glass
from bot.flows.remediation.authz import (
    exec_argv,
    may_request,
    namespace_allowed,
    namespace_of,
    parameter_problem,
)
from bot.flows.remediation.common import TOKEN_BYTES, Access, cooldown_problem, default_title, with_problems
from bot.flows.remediation.hosts import HostActions, host_template
from bot.flows.remediation.messages import ProposalMessages
from bot.obs import logs
from bot.render.proposals import not_proposed_message
from bot.store.incidents import PostgresStore
from bot.store.remediation import RemediationStore

log = logs.logger(logs.Component.REMEDIATION)


@dataclass(frozen=True, slots=True)
class Request:
    """Where a proposal comes from and what it says, beyond the action itself."""

    requested_by: str | None
    playbook: str | None = None
    title: str | None = None  # Slack mrkdwn that is already safe
    why: str = ""  # Slack mrkdwn that is already safe
    approval: str = "default"
    labels: Mapping[str, str] | None = None
    generator_url: str = ""
    undo_of: int | None = None
    dedupe_key: str | None = None
    target_labels: tuple[str, ...] = ()  # the alert labels the target was taken from
    cluster: str | None = None  # None: the cluster the alert labels (or the incident's alerts) name
    break_glass: str | None = None  # the requester's reason for bypassing the cooldown


@dataclass(frozen=True, slots=True)
class Proposal:
    """A stored proposal (None: this playbook proposal existed already) and the preview lines
    only the requester may see (never stored)."""

    run: ActionRun | None
    private_lines: tuple[str, ...] = ()


class Proposer:
    def __init__(
        self,
        store: RemediationStore,
        incidents: PostgresStore,
        clusters: Clusters,
        chat: SlackChat,
        messages: ProposalMessages,
        access: Access,
        policy: Policy,
        clock: Clock,
        hosts: HostActions | None = None,
    ) -> None:
        self.store = store
        self.incidents = incidents
        self.clusters = clusters
        self.chat = chat
        self.messages = messages
        self.access = access
        self.policy = policy
        self.clock = clock
        self.hosts = hosts

    async def propose(
        self, incident: Incident, action: ActionName, params: ActionParams, request: Request
    ) -> ActionRun | None:
        """Check the policy, preview, store and post a proposal. A refusal raises UserError with
        the reason; None when this playbook proposal was already made for the incident. The
        default title is built from validated names only."""
        return (await self.propose_with_preview(incident, action, params, request)).run

    async def propose_with_preview(
        self, incident: Incident, action: ActionName, params: ActionParams, request: Request
    ) -> Proposal:
        """`propose`, also returning the preview lines meant for the requester only. An alert
        naming a cluster that is not configured is refused before anything is stored or read."""
        if not isinstance(params, PARAMS_BY_ACTION[action]):
            raise TypeError(f"{action.value} takes {PARAMS_BY_ACTION[action].__name__}")
        _check_open(incident)
        cluster = (
            self._host_for(params)
            if isinstance(params, HostCommandParams)
            else await self._cluster_for(incident, request)
        )
        namespace = namespace_of(action, params)
        rule = self.policy.rule_for(action, request.approval, cluster, namespace)
        await self._check_request(action, params, request, rule)
        argv = self._argv(params)
        target = target_of(action, params)
        now = self.clock()
        exclude = [request.undo_of] if request.undo_of else []
        problem = await cooldown_problem(self.store, target, rule, now, exclude=exclude, cluster=cluster)
        bypass: break_glass.Bypass | None = None
        if request.break_glass is not None:
            bypass = await break_glass.grant(
                self.policy,
                self.access,
                incident,
                rule,
                user=request.requested_by,
                reason=request.break_glass,
                cooldown=problem,
            )
            rule = bypass.rule
        elif problem:
            raise UserError(f"Not proposed: {problem}{break_glass.hint(self.policy, rule)}")
        preview, private = await self._checked_preview(cluster, action, params, argv, rule)
        assert incident.channel_id is not None  # checked by _check_open
        new = NewRun(
            incident_id=incident.id,
            action=action,
            params=params.model_dump(mode="json"),
            target=target,
            namespace=namespace,
            title=request.title or escape(default_title(action, params)),
            why=request.why,
            playbook=request.playbook,
            requested_by=request.requested_by,
            approval_rule=request.approval,
            approvals_needed=rule.required_approvals,
            preview=preview,
            labels=dict(request.labels or {}),
            generator_url=request.generator_url,
            expires_at=now + timedelta(minutes=rule.expiry_minutes),
            channel_id=incident.channel_id,
            undo_of=request.undo_of,
            dedupe_key=self._dedupe_key(request.dedupe_key, cluster),
            approvers_all_of=tuple(rule.approvers_all_of),
            target_labels=request.target_labels,
            cluster=cluster,
            break_glass=bypass.reason if bypass else None,
        )
        return Proposal(await self._store_and_post(incident, new, argv, now, bypass), private)

    async def _cluster_for(self, incident: Incident, request: Request) -> str:
        """The cluster to act on: the one given (an undo: its run's), else the one the alert's
        labels name, else (ad hoc) the one every alert of the incident names."""
        if request.cluster is not None:
            named = request.cluster or self.clusters.catalog.default_name
            if named not in self.clusters.catalog.names:
                listed = ", ".join(f"`{n}`" for n in self.clusters.catalog.names)
                raise UnknownClusterError(
                    f"`{escape(named[:63])}` is not one of the configured clusters ({listed}); "
                    "nothing is run against any cluster"
                )
            return named
        if request.labels is not None:
            return self.clusters.select(request.labels)
        loaded = await self.incidents.load_view(incident.id)
        alerts = loaded[0].alerts if loaded is not None else []
        names = sorted({self.clusters.select(a.labels) for a in alerts}) or [self.clusters.select(None)]
        if len(names) > 1:
            raise UserError(
                f"The alerts of incident {incident.ref} come from several clusters "
                f"({', '.join(f'`{n}`' for n in names)}); an ad hoc run cannot tell which one to act on."
            )
        return names[0]

    def _argv(self, params: ActionParams) -> list[str] | None:
        """The command an exec or host command runs (audited with the proposal); UserError when
        a template or argument is refused."""
        if isinstance(params, ExecParams):
            return exec_argv(self.policy, params)
        if isinstance(params, HostCommandParams):
            return host_template(self.policy, params)[1]
        return None

    def _host_for(self, params: HostCommandParams) -> str:
        """A host run stores its host where a Kubernetes run stores its cluster (per-target
        rules, cooldowns and the undo follow it)."""
        if self.hosts is None:
            raise UserError("No hosts are configured (clusters.yaml `hosts`); nothing is run on any host.")
        return self.hosts.named(params.host)

    def _dedupe_key(self, key: str | None, cluster: str) -> str | None:
        """One playbook proposal per incident and cluster: alerts of one group can come from
        several clusters."""
        if key is None or self.clusters.catalog.implicit:
            return key
        return f"{key}@{cluster}"

    async def _check_request(
        self, action: ActionName, params: ActionParams, request: Request, rule: ApprovalRule
    ) -> None:
        if request.requested_by is not None and request.undo_of is None:
            membership = await self.access.membership(request.requested_by, rule.requesters)
            decision = may_request(
                self.policy,
                rule,
                action,
                user_id=request.requested_by,
                user_groups=membership.groups,
                rule_name=request.approval,
            )
            if not decision.allowed:
                raise UserError(with_problems(decision.reason, membership))
        namespace = namespace_of(action, params)
        namespace_allowed(rule, action, namespace, rule_name=request.approval).require()

    async def _store_and_post(
        self,
        incident: Incident,
        new: NewRun,
        argv: list[str] | None,
        now: datetime,
        bypass: break_glass.Bypass | None = None,
    ) -> ActionRun | None:
        playbook, requested_by = new.playbook, new.requested_by
        who = (
            f"<@{requested_by}>"
            if requested_by
            else (f"playbook `{playbook}`" if playbook else "incidentbot")
        )
        details: dict[str, object] = {"argv": argv} if argv else {}
        glass = ""
        if bypass is not None:
            details["break_glass"] = {
                "by": requested_by,
                "reason": bypass.reason,
                "bypassed": bypass.cooldown,
            }
            glass = f"; break-glass, bypassing the cooldown: {escape(bypass.reason)}"
        run = await self.store.create(
            new,
            secrets.token_hex(TOKEN_BYTES),
            now,
            timeline=(
                f"{who} proposed “{new.title}” ({new.action.value} on {new.target}"
                f"{'' if new.action in HOST_ACTIONS else f' in cluster {new.cluster}'}),"
                f" {new.approvals_needed} approval(s) needed{glass}"
            ),
            details=details,
        )
        if run is None:
            return None
        if bypass is not None and requested_by:
            await self._announce(new.channel_id, break_glass.announcement(requested_by, new.title, bypass))
        log.info(
            "remediation.proposed",
            extra={
                "run_id": run.id,
                "incident_id": incident.id,
                "action": new.action.value,
                "target": new.target,
                "cluster": new.cluster,
            },
        )
        try:
            await self.messages.refresh(run.id)
        except IntegrationError as err:  # stored: the sweep posts it once Slack answers
            log.warning("remediation.post_failed", extra={"run_id": run.id, "error": str(err)})
        return run

    async def _announce(self, channel: str | None, msg: Message) -> None:
        if channel is None:
            return
        try:
            await self.chat.post(channel, msg)
        except IntegrationError as err:  # audited and on the timeline already
            log.warning("remediation.announce_failed", extra={"channel": channel, "error": str(err)})

    async def _checked_preview(
        self,
        cluster: str,
        action: ActionName,
        params: ActionParams,
        argv: list[str] | None,
        rule: ApprovalRule,
    ) -> tuple[PreviewInfo, tuple[str, ...]]:
        """The preview, within the policy's bounds: checked before it touches anything (a host's
        preview runs a command there), and again with what it read (a scale's replicas)."""
        bound = parameter_problem(self.policy, rule, action, params, current_replicas=None)
        if bound is None:
            preview, private = await self._preview(cluster, action, params, argv, rule.allows_namespace)
            bound = parameter_problem(
                self.policy, rule, action, params, current_replicas=preview.current_replicas
            )
        if bound:
            raise UserError(f"The policy refuses this {action.value}: {bound}.")
        return preview, private

    async def _preview(
        self,
        name: str,
        action: ActionName,
        params: ActionParams,
        argv: list[str] | None,
        namespace_allowed: Callable[[str], bool],
    ) -> tuple[PreviewInfo, tuple[str, ...]]:
        """(what is stored and shown, what only the requester may see)."""
        if isinstance(params, HostCommandParams):
            assert self.hosts is not None  # checked by _host_for
            return await self.hosts.preview(params), ()
        cluster, label = self.clusters.client(name), self.clusters.label(name)
        if cluster is None:
            return PreviewInfo(
                summary_lines=("no preview: the Kubernetes cluster is not configured",),
                problem="the Kubernetes cluster is not configured, so nothing can run",
                cluster=label,
            ), ()
        try:
            preview: Preview = await cluster.preview(
                action, params, argv=argv, namespace_allowed=namespace_allowed
            )
        except IntegrationError as err:
            return PreviewInfo(
                summary_lines=(f"could not preview: {err.message}",),
                problem=f"could not preview: {err.message}",
                cluster=label,
            ), ()
        if not preview.target_exists:
            # Nothing to approve: a proposal that can never run is refused, not posted.
            raise UserError(
                f"Not proposed: {preview.problem or 'the target does not exist'} (cluster {label})."
            )
        current: int | None = None
        if isinstance(params, ScaleParams) and preview.target_exists:
            try:
                status = await cluster.rollout_status(params.namespace, params.deployment)
                current = status.desired_replicas
            except IntegrationError:
                current = None
        return PreviewInfo(
            summary_lines=tuple(preview.summary_lines),
            dry_run_ok=preview.dry_run_ok,
            target_exists=preview.target_exists,
            resource_version=preview.resource_version,
            generation=preview.generation,
            fingerprint=preview.fingerprint,
            problem=preview.problem,
            current_replicas=current,
            cluster=label,
        ), tuple(preview.private_lines)

    # ------------------------------------------------------------------ from playbooks

    async def propose_for_alert(
        self, incident_id: int, labels: dict[str, str], playbook: Playbook, *, note_key: str | None = None
    ) -> None:
        """Propose the playbook's remediations for one alert of the incident (the alert's
        generatorURL is looked up for verification). `note_key`: the "not proposed" note is the
        bot's own message under that key, posted once however often this is resumed."""
        loaded = await self.incidents.load_view(incident_id)
        if loaded is None:
            return
        view = loaded[0]
        generator_url = next((a.generator_url for a in view.alerts if a.labels == labels), "")
        await self.propose_playbook_remediations(
            view.incident, labels, playbook, generator_url=generator_url, note_key=note_key
        )

    async def propose_playbook_remediations(
        self,
        incident: Incident,
        alert_labels: Mapping[str, str],
        playbook: Playbook,
        *,
        generator_url: str = "",
        note_key: str | None = None,
    ) -> tuple[list[ActionRun], list[str]]:
        """Propose each of the playbook's remediations for this alert. A remediation whose
        parameters cannot be filled from the labels, or that the policy refuses, becomes a short
        "not proposed: <reason>" note in the channel instead. Returns (proposals, notes)."""
        labels = dict(alert_labels)
        runs: list[ActionRun] = []
        notes: list[str] = []
        # What happened to each remediation, said once and in the runbook's order.
        fates: list[str] = []
        for index, rem in enumerate(playbook.remediations):
            title = _safe_title(rem, labels)
            try:
                run = await self._propose_one(incident, playbook, rem, index, labels, generator_url)
            except (TemplateError, UserError, ValidationError) as err:
                reason = escape(str(err)).removeprefix("Not proposed: ")
                notes.append(f"{title}: not proposed: {reason}")
                fates.append(f"{title} (`{rem.action.value}`): not proposed: {reason}")
                continue
            if run is not None:
                runs.append(run)
            fates.append(f"{title} (`{rem.action.value}`): {'proposed above' if run else 'proposed before'}")
        if notes and incident.channel_id:
            try:
                note = not_proposed_message(fates)
                if note_key is None:
                    await self.chat.post(incident.channel_id, note)
                else:
                    await self.messages.owned.post(incident.channel_id, note, note_key)
            except IntegrationError as err:
                log.warning("remediation.note_failed", extra={"incident_id": incident.id, "error": str(err)})
        return runs, notes

    async def _propose_one(
        self,
        incident: Incident,
        playbook: Playbook,
        rem: Remediation,
        index: int,
        labels: dict[str, str],
        generator_url: str,
    ) -> ActionRun | None:
        defaults = {}
        if rem.action in HOST_ACTIONS and "host" not in rem.params:
            # The host whose `select` labels the alert carries.
            if self.hosts is None:
                raise UserError("no hosts are configured (clusters.yaml `hosts`)")
            defaults["host"] = self.hosts.select(labels)
        params = rem.render_params(labels, defaults=defaults)
        return await self.propose(
            incident,
            rem.action,
            params,
            Request(
                requested_by=None,
                playbook=playbook.name,
                title=render_text(rem.title, labels),
                why=render_text(rem.why, labels) if rem.why else "",
                approval=rem.approval,
                labels=labels,
                generator_url=generator_url,
                dedupe_key=f"playbook:{playbook.name}:{index}",
                target_labels=tuple(rem.target_labels(labels)),
            ),
        )


def _check_open(incident: Incident) -> None:
    if incident.status is IncidentStatus.RESOLVED:
        raise UserError(f"Incident {incident.ref} is resolved; remediations are not proposed any more.")
    if incident.channel_id is None:
        raise UserError(f"Incident {incident.ref} has no channel yet; try again in a moment.")


def _safe_title(rem: Remediation, labels: Mapping[str, str]) -> str:
    try:
        return render_text(rem.title, labels)
    except TemplateError:
        return escape(rem.title)
