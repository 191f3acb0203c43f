"""The runtime kill switch: `/incident killswitch on|off [reason]`.

Flipping it needs a role the policy names (`kill_switch_roles`); the state lives in PostgreSQL
(`bot.store.kill_switch`), so every replica sees it before its next execution, with no restart.
Each flip is audited, announced in the incident notification channel and shown on every
proposal still pending. `policy.yaml kill_switch: true` keeps it on whatever is flipped here.
"""

from __future__ import annotations

from bot.clients.slack import SlackChat
from bot.core.blockkit import escape
from bot.core.errors import IntegrationError, UserError
from bot.core.policy import Policy
from bot.core.ports import Clock
from bot.flows.remediation.authz import roles_text
from bot.flows.remediation.common import Access, with_problems
from bot.flows.remediation.messages import ProposalMessages
from bot.obs import logs
from bot.render.times import at
from bot.store.kill_switch import KillSwitchStore
from bot.store.remediation import RemediationStore

log = logs.logger(logs.Component.REMEDIATION)

MAX_REASON = 300


class KillSwitch:
    def __init__(
        self,
        store: KillSwitchStore,
        remediation: RemediationStore,
        access: Access,
        chat: SlackChat,
        messages: ProposalMessages,
        policy: Policy,
        clock: Clock,
        *,
        incident_channel: str,
    ) -> None:
        self.store = store
        self.remediation = remediation
        self.access = access
        self.chat = chat
        self.messages = messages
        self.policy = policy
        self.clock = clock
        self.incident_channel = incident_channel

    async def status(self) -> str:
        """The switch as every replica sees it now, in words."""
        state = await self.store.get()
        forced = " `policy.yaml` sets `kill_switch: true`, so it stays on whatever is flipped here."
        if state is None or not state.engaged:
            if self.policy.kill_switch:
                return "🛑 The kill switch is *on*: nothing executes." + forced
            return "The kill switch is *off*: approved remediations execute."
        why = f" ({escape(state.reason)})" if state.reason else ""
        return (
            f"🛑 The kill switch is *on*: nothing executes. Turned on by <@{state.changed_by}> at "
            f"{at(state.changed_at)}{why}."
        )

    async def flip(self, user: str, engaged: bool, reason: str) -> str:
        """Turn the switch on or off for every replica; refused (audited, nothing else) unless the
        user holds one of the policy's `kill_switch_roles`."""
        reason = " ".join(reason.split())
        if len(reason) > MAX_REASON:
            raise UserError(f"The reason is too long ({len(reason)} characters, at most {MAX_REASON}).")
        roles = list(self.policy.kill_switch_roles)
        membership = await self.access.membership(user, roles)
        if not self.policy.in_roles(roles, user, membership.groups):
            refusal = (
                f"You may not turn the kill switch {'on' if engaged else 'off'}: the policy lets "
                f"{roles_text(roles)} do it (`kill_switch_roles`)."
            )
            await self.remediation.refused(
                None, user, self.clock(), {"kill_switch": engaged, "reason": refusal}
            )
            raise UserError(with_problems(refusal, membership))
        state, changed = await self.store.set(engaged, user, reason, self.clock())
        log.info("remediation.kill_switch", extra={"user": user, "engaged": engaged, "changed": changed})
        if changed:
            await self._announce(user, engaged, reason)
            for run_id in await self.remediation.pending_ids():
                self.messages.spawn_refresh(run_id)
        verb = "on" if state.engaged else "off"
        text = (
            f"The kill switch is now *{verb}* for every replica."
            if changed
            else f"The kill switch was already *{verb}*."
        )
        if not engaged and self.policy.kill_switch:
            text += (
                " `policy.yaml` still sets `kill_switch: true`, so nothing executes until that is changed."
            )
        return text

    async def _announce(self, user: str, engaged: bool, reason: str) -> None:
        why = f": {escape(reason)}" if reason else ""
        if engaged:
            text = f"🛑 <@{user}> turned the remediation kill switch *on*{why}. Nothing executes until it is turned off."
        else:
            text = f"✅ <@{user}> turned the remediation kill switch *off*{why}. Approved remediations execute again."
        try:
            channel = await self.chat.resolve_channel_id(self.incident_channel)
            await self.chat.post_text(channel, text)
        except IntegrationError as err:  # stored and audited already; the proposals show it too
            log.warning("remediation.kill_switch_announce_failed", extra={"error": str(err)})
