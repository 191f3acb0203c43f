"""The postmortem draft's optional narrative summary: written by the investigator's model from
the (redacted) timeline, marked as generated, above the sections built from the record; absent,
with nothing sent to the model, when the investigator is stopped or not configured."""

from __future__ import annotations

from bot.app import BotServer
from sandbox.slack import SandboxFile, SlackSandbox
from tests.integration import test_investigator as base
from tests.integration.test_investigator import Env, open_incident, running_bot, types

# The investigator's fixtures (sandbox Kubernetes, fake model, the bot's settings).
kube, llm, env = base.kube, base.llm, base.env

NARRATIVE = "Checkout failed from 16:00 after the pool filled; the team rolled back and it recovered."
SEEDED = "hunter2-rotated-db-password"


async def postmortem_file(env: Env, bot: BotServer, channel: str) -> str:
    seen = {f.id for f in env.slack.files.values()}
    await types(env, bot, "U0ALICE", channel, "postmortem", "postmortem draft")

    def uploaded(s: SlackSandbox) -> SandboxFile | None:
        return next(
            (
                f
                for f in s.files.values()
                if f.id not in seen and f.name.startswith("postmortem-") and f.completed
            ),
            None,
        )

    draft = await env.slack.wait_for(uploaded)
    assert draft.data is not None
    return draft.data.decode()


async def test_postmortem_gains_a_generated_narrative_marked_as_such(env: Env) -> None:
    env.llm.default = NARRATIVE
    async with running_bot(env.settings()) as bot:
        channel = await open_incident(env, bot)
        await types(env, bot, "U0ALICE", channel, f"status rotated DB password={SEEDED}", "Status update")
        text = await postmortem_file(env, bot, channel)
        assert "## Narrative summary (generated)" in text
        assert "Written by a language model (fake-model)" in text and "it may be wrong" in text
        assert f"> {NARRATIVE}" in text
        # Under the title, above what the record says.
        assert text.index("Narrative summary (generated)") < text.index("## Summary") < text.index("Timeline")
        # The model saw the timeline, redacted.
        (request,) = env.llm.conversation_requests
        assert "rotated DB password" in str(request) and SEEDED not in str(request)

        # Stopped by the kill switch: the draft is the record's alone, and the model is not asked.
        await types(env, bot, "U0ALICE", channel, "investigator stop", "stopped on every replica")
        text = await postmortem_file(env, bot, channel)
        assert "Narrative summary" not in text and "## Summary" in text
        assert len(env.llm.conversation_requests) == 1


async def test_without_a_model_the_postmortem_is_unchanged(env: Env) -> None:
    async with running_bot(env.settings(llm_base_url=None)) as bot:
        channel = await open_incident(env, bot)
        text = await postmortem_file(env, bot, channel)
        assert "Narrative summary" not in text and "## Summary" in text
    assert env.llm.requests == []
