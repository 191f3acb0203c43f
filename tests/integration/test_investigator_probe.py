"""The model endpoint is probed in the background: start-up never waits for it, `/readyz`,
`/incident help` and a refused `/incident investigate` say "probing" until it answers, and an
endpoint that is unreachable or calls no tools is probed again until it does."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.app import BotServer
from bot.clients.llm import Capability
from bot.flows.investigate.service import Investigator
from sandbox.llm import answer
from tests.integration import test_investigator as base
from tests.integration.rig import bot_url
from tests.integration.rig import running_bot as running_bot_unprobed
from tests.integration.test_investigator import Env, open_incident, result_text, types

# The investigator's fixtures (sandbox Kubernetes, fake model, the bot's settings).
kube, llm, env = base.kube, base.llm, base.env


def investigator_of(bot: BotServer) -> Investigator:
    investigator = bot.parts.flows.investigator
    assert investigator is not None
    return investigator


async def readyz_detail(env: Env, bot: BotServer) -> Any:
    async with env.http.get(bot_url(bot) + "/readyz") as resp:
        assert resp.status == 200
        return (await resp.json())["detail"]["investigator"]


def probes(env: Env) -> int:
    return len(env.llm.requests) - len(env.llm.conversation_requests)


def probe_task(bot: BotServer) -> asyncio.Task[None]:
    return next(t for t in bot._loops if t.get_name() == "investigator-probe")


async def test_a_slow_endpoint_does_not_delay_start_up(env: Env) -> None:
    env.llm.probe_gate = asyncio.Event()
    async with running_bot_unprobed(env.settings()) as bot:
        # Started and serving while the probe is still waiting for its answer.
        await env.llm.wait_for(lambda f: probes(env) or None)
        assert "probing" in await readyz_detail(env, bot)
        channel = await open_incident(env, bot)
        help_reply = await types(env, bot, "U0ALICE", channel, "help", "investigator:")
        assert "probing" in help_reply.text
        refused = await types(env, bot, "U0ALICE", channel, "investigate", "No investigation")
        assert "probing" in refused.text and "Traceback" not in refused.text
        assert env.llm.conversation_requests == []

        # Positive control: once the endpoint answers, the same request runs.
        env.llm.probe_gate.set()
        await investigator_of(bot).wait_for_status(lambda s: s.investigations)
        assert "investigator: on" in await readyz_detail(env, bot)
        env.llm.play([answer({"findings": [], "not_enough_evidence": True})])
        await types(env, bot, "U0ALICE", channel, "investigate", "Investigating")
        await env.slack.wait_for(lambda s: result_text(env, channel), timeout=30)
        assert len(env.llm.conversation_requests) == 1


async def test_a_degraded_endpoint_is_probed_again_until_it_calls_tools(env: Env) -> None:
    env.llm.tools = False
    async with running_bot_unprobed(env.settings(llm_probe_interval_seconds=0.1)) as bot:
        investigator = investigator_of(bot)
        await investigator.wait_for_status(lambda s: s.capability is Capability.SUMMARIES)
        assert "summaries only" in await readyz_detail(env, bot)
        seen = probes(env)
        await env.llm.wait_for(lambda f: probes(env) > seen or None)  # probed again, unasked

        env.llm.tools = True  # the model server is fixed (say, tool parsing switched on)
        await investigator.wait_for_status(lambda s: s.investigations)
        assert "investigator: on" in await readyz_detail(env, bot)
        # Healthy: the background probing has ended, and sends nothing more.
        await asyncio.wait_for(probe_task(bot), timeout=5)
        assert probe_task(bot).result() is None
        count = probes(env)
        channel = await open_incident(env, bot)
        await types(env, bot, "U0ALICE", channel, "help", "investigator:")
        assert probes(env) == count


async def test_an_unreachable_endpoint_is_probed_again(env: Env) -> None:
    async with running_bot_unprobed(
        env.settings(llm_base_url="http://127.0.0.1:9/v1", llm_probe_interval_seconds=0.1)
    ) as bot:
        investigator = investigator_of(bot)
        await investigator.wait_for_status(lambda s: s.capability is Capability.UNREACHABLE)
        assert "did not answer" in await readyz_detail(env, bot)
        # Still trying: the probe loop runs on.
        assert not probe_task(bot).done()


async def test_the_kill_switch_sends_no_probe(env: Env) -> None:
    async with running_bot_unprobed(env.settings(llm_disabled=True)) as bot:
        await asyncio.wait_for(probe_task(bot), timeout=5)
        assert "kill switch" in await readyz_detail(env, bot)
        assert env.llm.requests == []
    # Positive control: without the switch, the probe is sent.
    async with running_bot_unprobed(env.settings()) as bot:
        await investigator_of(bot).wait_for_status(lambda s: s.investigations)
        assert probes(env) == 1
