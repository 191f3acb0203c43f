"""The sandbox demo's model: for any incident, it reads the alerts, the playbook and similar
past incidents, then answers with findings citing them (replayed for every investigation)."""

from __future__ import annotations

from contextlib import AsyncExitStack

from sandbox.llm.app import FakeLLM, Turn, answer, call

DEMO_SCRIPT: tuple[Turn, ...] = (
    call(("incident_alerts", {}), ("playbook", {}), ("similar_incidents", {})),
    answer(
        {
            "summary": "Demo model (scripted): what the alerts and the playbook say.",
            "findings": [
                {
                    "claim": "The incident's alerts are listed in c1; start from them.",
                    "citations": ["c1"],
                    "confidence": 0.7,
                },
                {"claim": "The matching playbook's steps are in c2.", "citations": ["c2"], "confidence": 0.6},
                {"claim": "Past incidents like this one are in c3.", "citations": ["c3"], "confidence": 0.4},
            ],
            "actions": [],
            "not_enough_evidence": False,
        }
    ),
    # `/incident summary`: a text answer.
)


def demo_model() -> FakeLLM:
    """A fake model that replays the demo conversation for every investigation."""
    fake = FakeLLM(
        repeat=True,
        default="Demo stakeholder update: responders are investigating; next update in 30 minutes.",
    )
    fake.play(DEMO_SCRIPT)
    return fake


async def start_demo_model(stack: AsyncExitStack) -> str:
    """Start the demo model (stopped by `stack`); its base URL."""
    model = demo_model()
    await model.start()
    stack.push_async_callback(model.stop)
    return model.base_url
