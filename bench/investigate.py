"""The investigator's evaluation: recorded incident cases (bench/investigate_cases/*.json,
built from the seed runbooks) played through the real tool-calling loop with the recorded tool
outputs, scored on root cause found, citations valid, correct action suggested, abstention
when the evidence is missing, tokens and latency.

Against the fake model (sandbox.llm, CI): each case's `script` is what an ideal model would do,
so this tests the harness, the loop and the scoring, not a model. Against a real endpoint, the
same cases and tools; compare models by running it once per model:

    .venv/bin/python bench/investigate.py                      # the fake, every case
    .venv/bin/python bench/investigate.py --endpoint http://localhost:11434/v1 --model qwen2.5:14b
    .venv/bin/python bench/investigate.py --cases db-pool-after-deploy,redis-memory --no-write

A case file: {"name", "title", "severity", "alerts": [labels...], "question",
"tools": {"<tool>" or "<tool> <json args>": "recorded output", ...},
"expected": {"root_cause": [words that must all appear in one finding or the summary],
"action": {"action": "...", "target": "deployment ns/name"} | null, "abstain": bool},
"script": [[[tool, args], ...], {final answer}]}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sections import RESULTS_MD, write_section  # noqa: E402

from bot.clients.llm import ChatClient  # noqa: E402
from bot.core.actions import target_of  # noqa: E402
from bot.core.investigation import Redactor, Verdict  # noqa: E402
from bot.flows.investigate.loop import Budgets, Conversation, Outcome  # noqa: E402
from bot.flows.investigate.tools import ToolError  # noqa: E402
from sandbox.llm import FakeLLM, Turn, answer, call  # noqa: E402

CASES_DIR = Path(__file__).resolve().parent / "investigate_cases"


@dataclass(frozen=True)
class Case:
    name: str
    brief: str
    tools: Mapping[str, str]
    expected: Mapping[str, Any]
    script: Sequence[Turn]


def load_case(path: Path) -> Case:
    data = json.loads(path.read_text(encoding="utf-8"))
    alerts = "\n".join(json.dumps(a, sort_keys=True) for a in data["alerts"])
    brief = (
        f"Incident: {data['title']} (severity {data['severity']}).\nAlerts:\n{alerts}\n"
        "Start with incident_alerts and the playbook, then look at metrics, pods, events, logs and"
        " recent rollouts." + (f"\nThe responder asks: {data['question']}" if data.get("question") else "")
    )
    turns: list[Turn] = []
    for step in data["script"]:
        turns.append(answer(step) if isinstance(step, dict) else call(*[(n, a) for n, a in step]))
    return Case(data["name"], brief, data["tools"], data["expected"], turns)


def load_cases(names: Sequence[str] | None = None) -> list[Case]:
    cases = [load_case(p) for p in sorted(CASES_DIR.glob("*.json"))]
    if names:
        wanted = set(names)
        cases = [c for c in cases if c.name in wanted]
        missing = wanted - {c.name for c in cases}
        if missing:
            raise SystemExit(f"unknown case(s): {', '.join(sorted(missing))}")
    return cases


class RecordedTools:
    """A case's recorded outputs: by tool and exact arguments, else by tool alone."""

    def __init__(self, outputs: Mapping[str, str]) -> None:
        self.outputs = outputs

    async def run(self, name: str, arguments: Mapping[str, Any]) -> str:
        exact = f"{name} {json.dumps(dict(arguments), sort_keys=True)}"
        for key in (exact, name):
            if key in self.outputs:
                return self.outputs[key]
        raise ToolError("no data for these arguments")


@dataclass(frozen=True)
class Score:
    case: str
    root_cause: bool
    citations_valid: bool
    action_correct: bool
    abstention_correct: bool
    tokens: int
    seconds: float
    status: str

    @property
    def passed(self) -> bool:
        return self.root_cause and self.citations_valid and self.action_correct and self.abstention_correct


def _texts(verdict: Verdict) -> list[str]:
    return [verdict.summary.lower(), *(f.claim.lower() for f in verdict.findings)]


def score(case: Case, outcome: Outcome) -> Score:
    expected = case.expected
    verdict = outcome.verdict
    abstain = bool(expected.get("abstain"))
    words = [w.lower() for w in expected.get("root_cause") or []]
    if verdict is None:
        return Score(case.name, False, False, False, False, outcome.tokens, outcome.seconds, outcome.status)
    found = abstain or any(all(w in text for w in words) for text in _texts(verdict) if text)
    # Valid citations: no finding was dropped for citing nothing the tools answered.
    cited = not any(d.startswith("uncited") for d in verdict.dropped)
    want = expected.get("action")
    got = {(a.action.value, target_of(a.action, a.params)) for a in verdict.actions}
    action_ok = (not got) if want is None else (want["action"], want["target"]) in got
    return Score(
        case.name,
        found,
        cited,
        action_ok,
        verdict.abstained == abstain,
        outcome.tokens,
        outcome.seconds,
        outcome.status,
    )


async def run_cases(
    cases: Sequence[Case], client: ChatClient, fake: FakeLLM | None, budgets: Budgets
) -> list[Score]:
    scores = []
    for case in cases:
        if fake is not None:
            fake.play(case.script)
        conversation = Conversation(client, budgets, Redactor())
        outcome = await conversation.run(RecordedTools(case.tools), case.brief)
        scores.append(score(case, outcome))
    return scores


async def evaluate(
    cases: Sequence[Case], *, endpoint: str | None = None, model: str = "fake", api_key: str | None = None
) -> list[Score]:
    """Score `cases` against `endpoint` (None: the fake model, started here)."""
    budgets = Budgets(tokens=60_000, seconds=300.0, tool_calls=16)
    fake = None
    if endpoint is None:
        fake = FakeLLM()
        await fake.start()
        endpoint = fake.base_url
    try:
        async with aiohttp.ClientSession() as session:
            client = ChatClient(endpoint, model, api_key, session, timeout_s=120.0)
            return await run_cases(cases, client, fake, budgets)
    finally:
        if fake is not None:
            await fake.stop()


def report(scores: Sequence[Score], model: str, endpoint: str) -> str:
    def rate(attr: str) -> str:
        return f"{sum(getattr(s, attr) for s in scores)}/{len(scores)}"

    lines = [
        "## Investigator evaluation (bench/investigate.py)",
        "",
        f"Model `{model}` at `{endpoint}`; {len(scores)} recorded cases from the seed runbooks;"
        f" {platform.python_implementation()} {platform.python_version()}.",
        "",
        "| case | root cause | citations | action | abstention | tokens | seconds | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        marks = [
            "✓" if v else "✗"
            for v in (s.root_cause, s.citations_valid, s.action_correct, s.abstention_correct)
        ]
        lines.append(f"| {s.case} | {' | '.join(marks)} | {s.tokens} | {s.seconds:.2f} | {s.status} |")
    seconds = [s.seconds for s in scores] or [0.0]
    lines += [
        "",
        f"Root cause {rate('root_cause')}, citations valid {rate('citations_valid')}, correct action"
        f" {rate('action_correct')}, abstention {rate('abstention_correct')}; tokens total"
        f" {sum(s.tokens for s in scores)}, median latency {statistics.median(seconds):.2f}s.",
    ]
    if endpoint == "fake":
        lines.append(
            "The fake model plays each case's scripted ideal conversation: this run checks the harness,"
            " the loop and the scoring, not a model. Run with `--endpoint URL --model NAME` to compare models."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoint", help="an OpenAI-compatible base URL (default: the fake model)")
    parser.add_argument("--model", default="fake")
    parser.add_argument("--api-key-env", default="LLM_API_KEY", help="environment variable holding the key")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    cases = load_cases(args.cases.split(",") if args.cases else None)
    scores = asyncio.run(
        evaluate(cases, endpoint=args.endpoint, model=args.model, api_key=os.environ.get(args.api_key_env))
    )
    text = report(scores, args.model, args.endpoint or "fake")
    print(text)
    if not args.no_write:
        write_section(RESULTS_MD, "investigate", text)


if __name__ == "__main__":
    main()
