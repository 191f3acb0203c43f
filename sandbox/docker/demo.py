"""The sandbox's Docker host: OnQuota's compose project on the fake engine, as clusters.yaml
lists it, and a demo where an OnQuota alert's playbook proposes the runbook's backend restart,
two approvers approve it, and it runs once through the Docker Engine API."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sandbox.docker.app import DockerSandbox
from sandbox.slack import Message, SlackDriver, SlackSandbox

DOCKER_DEMO_ALERT = (
    "OnQuotaBackendDown",
    {"compose_project": "onquota", "namespace": "onquota", "severity": "critical"},
)
DOCKER_DEMO_TITLE = "Restart the OnQuota backend (Docker Engine API)"
# OnQuota's bundled runbooks are on-demand guides (it defines no alert rules): the sandbox adds
# one that its alert matches, proposing the runbook's `docker-compose restart backend`.
DOCKER_DEMO_PLAYBOOK: dict[str, Any] = {
    "name": "sandbox-onquota-backend-down",
    "title": "OnQuota: backend down (sandbox)",
    "system": "onquota",
    "match": {"alertname": DOCKER_DEMO_ALERT[0]},
    "steps": [{"title": "Diagnose", "text": "The backend container does not answer its health check."}],
    "remediations": [
        {
            "action": "host_command",
            "title": DOCKER_DEMO_TITLE,
            "why": "Runbook: docker-compose restart backend.",
            "params": {
                "host": "onquota",
                "template": "onquota_compose_restart",
                "args": {"service": "backend"},
            },
        }
    ],
}


def docker_host(engine: DockerSandbox, team: str, project: str, select: dict[str, str]) -> dict[str, Any]:
    """clusters.yaml's entry for a host whose engine is the sandbox's, limited to `project`."""
    access = {"url": engine.unix_url, "projects": [project]}
    return {"team": team, "transport": "docker", "docker": access, "select": select}


async def docker_demo(
    slack: SlackSandbox, driver: SlackDriver, fire: Callable[[], Awaitable[int]], approvers: Sequence[str]
) -> str:
    """Fire the OnQuota alert, approve the restart its playbook proposes as each of `approvers`
    and return the verification the bot posts once it ran."""
    await fire()

    def proposal(s: SlackSandbox) -> Message | None:
        for channel in s.channels.values():
            for m in channel.messages:
                text = json.dumps(m.blocks or [])
                if DOCKER_DEMO_TITLE in text and "approve_action" in text:
                    return m
        return None

    msg = await slack.wait_for(proposal, timeout=30)
    for user in approvers:
        await driver.click("approve_action", user_id=user, channel_id=msg.channel, message_ts=msg.ts)

    def verified(s: SlackSandbox) -> str | None:
        return next((m.text for m in s.thread(msg.channel, msg.ts) if "Verification of" in m.text), None)

    return await slack.wait_for(verified, timeout=90)
