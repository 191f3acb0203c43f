"""The investigation limit holds across replicas: two bots on one PostgreSQL and Redis with
LLM_MAX_CONCURRENT=1 run one investigation between them, and the slot of a replica that died
mid-investigation lapses with its lease."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from bot.store.coordination import PREFIX
from sandbox.llm import answer
from tests.integration import test_investigator as base
from tests.integration.rig import quiet
from tests.integration.test_investigator import (
    Env,
    open_incident,
    result_text,
    rows,
    running_bot,
    types,
)

# The investigator's fixtures (sandbox Kubernetes, fake model, the bot's settings).
kube, llm, env = base.kube, base.llm, base.env

NOTHING = answer({"findings": [], "not_enough_evidence": True})
SLOTS_KEY = PREFIX + "slots:investigations"


async def test_one_investigation_at_a_time_across_two_replicas(env: Env) -> None:
    env.llm.turn_gate = asyncio.Event()
    env.llm.play([NOTHING, NOTHING])
    async with (
        running_bot(env.settings(replica_name="bot-a", llm_max_concurrent=1)) as bot_a,
        running_bot(env.settings(replica_name="bot-b", llm_max_concurrent=1)) as bot_b,
    ):
        channel = await open_incident(env, bot_a)
        await types(env, bot_a, "U0ALICE", channel, "investigate", "Investigating")
        # Replica A's investigation is with the model (its slot taken).
        await env.llm.wait_for(lambda f: f.conversation_requests or None)

        refused = await types(env, bot_b, "U0ALICE", channel, "investigate", "already running at the limit")
        assert "Traceback" not in refused.text
        assert len(env.llm.conversation_requests) == 1
        assert len(await rows(env.dsn, "SELECT id FROM investigations")) == 1

        # Positive control: once A's is done, B runs one.
        env.llm.turn_gate.set()
        await env.slack.wait_for(lambda s: result_text(env, channel), timeout=30)
        await quiet(bot_a)  # A's investigation has returned its slot
        await types(env, bot_b, "U0ALICE", channel, "investigate", "Investigating")
        await env.llm.wait_for(lambda f: len(f.conversation_requests) == 2 or None, timeout=30)
        assert len(await rows(env.dsn, "SELECT id FROM investigations")) == 2


async def test_the_slot_of_a_replica_that_died_lapses(env: Env) -> None:
    async with running_bot(env.settings(llm_max_concurrent=1)) as bot:
        channel = await open_incident(env, bot)
        # What a replica killed mid-investigation leaves behind: a slot whose lease nobody renews.
        client = aioredis.Redis.from_url(env.redis_url)
        try:
            now_ms = int(time.time() * 1000)
            await client.zadd(SLOTS_KEY, {"dead-replica|0|0": now_ms + 1500})
            await types(env, bot, "U0ALICE", channel, "investigate", "already running at the limit")
            assert env.llm.conversation_requests == []

            # The lease lapses (no renewal), and the limit frees itself.
            investigator = bot.parts.flows.investigator
            assert investigator is not None
            async with asyncio.timeout(10):
                while await investigator.coord.slots_held("investigations"):
                    await asyncio.sleep(0.1)
        finally:
            await client.aclose()
        env.llm.play([NOTHING])
        await types(env, bot, "U0ALICE", channel, "investigate", "Investigating")
        await env.slack.wait_for(lambda s: result_text(env, channel), timeout=30)
        assert len(env.llm.conversation_requests) == 1
