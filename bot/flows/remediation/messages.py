"""The proposal message and its thread: always re-rendered from the stored run."""

from __future__ import annotations

from bot.clients.kubernetes.clusters import Clusters
from bot.clients.slack import SlackChat
from bot.core.errors import IntegrationError
from bot.core.policy import Policy
from bot.core.ports import Clock
from bot.core.runs import ActionRun
from bot.flows.owned_messages import OwnedMessages
from bot.flows.remediation.common import run_blockers
from bot.flows.remediation.hosts import HostActions
from bot.flows.supervisor import Supervisor
from bot.obs import logs
from bot.render.proposals import proposal_message, thread_note
from bot.store.coordination import Coordination
from bot.store.kill_switch import KillSwitchStore
from bot.store.remediation import RemediationStore

log = logs.logger(logs.Component.REMEDIATION)

MESSAGE_LOCK_TTL_MS = 30_000
MESSAGE_ROUNDS = 10
MAX_NOTE = 2500


def _shown(run: ActionRun | None) -> bool:
    if run is None or run.channel_id is None:
        return True
    return run.message_ts is not None and run.version <= run.shown_version


class ProposalMessages:
    def __init__(
        self,
        store: RemediationStore,
        switch: KillSwitchStore,
        chat: SlackChat,
        owned: OwnedMessages,
        coord: Coordination,
        supervisor: Supervisor,
        policy: Policy,
        clusters: Clusters,
        clock: Clock,
        hosts: HostActions | None = None,
    ) -> None:
        self.store = store
        self.switch = switch
        self.chat = chat
        self.owned = owned
        self.coord = coord
        self.supervisor = supervisor
        self.policy = policy
        self.clusters = clusters
        self.clock = clock
        self.hosts = hosts

    async def note(self, run: ActionRun, text: str) -> None:
        """A reply in the proposal's thread; a Slack failure here is logged, never fatal (the
        state is already stored and the message re-rendered by the sweep)."""
        if run.channel_id is None:
            return
        body = text if len(text) <= MAX_NOTE else text[: MAX_NOTE - 1] + "…"
        try:
            await self.chat.post(run.channel_id, thread_note(body), thread_ts=run.message_ts)
        except IntegrationError as err:
            log.warning("remediation.note_failed", extra={"run_id": run.id, "error": str(err)})

    def spawn_refresh(self, run_id: int) -> None:
        self.supervisor.spawn(self._refresh_quietly(run_id), name=f"run-message-{run_id}")

    async def _refresh_quietly(self, run_id: int) -> None:
        try:
            await self.refresh(run_id)
        except IntegrationError as err:  # the sweep retries: the stored version is still ahead
            log.warning("remediation.message_failed", extra={"run_id": run_id, "error": str(err)})

    async def refresh(self, run_id: int) -> None:
        """Post or update the proposal message from the stored run until it shows the latest
        version. One updater per run at a time (Redis lock). A change committed while another
        caller held the lock is seen by that holder: it re-reads the run after releasing."""
        for _ in range(3):
            token = await self.coord.try_lock(f"run-message:{run_id}", MESSAGE_LOCK_TTL_MS)
            if token is None:
                return
            try:
                await self._bring_up_to_date(run_id)
            finally:
                await self.coord.release(f"run-message:{run_id}", token)
            if _shown(await self.store.get(run_id)):
                return

    async def _bring_up_to_date(self, run_id: int) -> None:
        for _ in range(MESSAGE_ROUNDS):
            run = await self.store.get(run_id)
            if run is None or run.channel_id is None or _shown(run):
                return
            # What stops execution matters only while the run may still execute.
            warnings = (
                []
                if run.final
                else run_blockers(self.policy, self.clusters, self.hosts, run, await self.switch.get())
            )
            msg = proposal_message(
                run,
                self.policy.rule_for(run.action, run.approval_rule, run.cluster, run.namespace),
                self.clock(),
                policy=self.policy,
                warnings=warnings,
            )
            if run.message_ts is None:
                ts = await self.owned.post(run.channel_id, msg, f"run:{run.id}")
                await self.store.set_message(run.id, run.channel_id, ts)
            else:
                await self.chat.update(run.channel_id, run.message_ts, msg)
            await self.store.mark_shown(run.id, run.version)
