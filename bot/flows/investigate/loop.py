"""The tool-calling loop, bounded: a token budget, a time budget, a cap on tool calls, and every
message redacted on its way out. Shared by live investigations and the benchmark (which plays
recorded tool outputs through the same loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.clients.llm import ChatClient, Completion
from bot.core.errors import IntegrationError
from bot.core.investigation import (
    SUGGESTIBLE,
    AnswerError,
    Redactor,
    ToolCall,
    Verdict,
    clip_output,
    judge,
)
from bot.flows.investigate.tools import READ_ONLY_TOOLS, TOOLS_BY_NAME, ToolBox, ToolError, parse_arguments

SYSTEM_PROMPT = (
    "You investigate a production incident with read-only tools. Gather evidence first. Every tool"
    " result starts with its id in brackets, e.g. [c1]. When done, answer with ONE JSON object and"
    " nothing else:\n"
    '{"summary": "...", "findings": [{"claim": "...", "citations": ["c1"], "confidence": 0.0-1.0}],'
    ' "actions": [{"action": "<name>", "params": {...}, "why": "...", "citations": ["c2"]}],'
    ' "not_enough_evidence": false}\n'
    "Cite only ids of tool results that support the claim. If the evidence does not establish a"
    ' cause, say so with "not_enough_evidence": true. Actions are optional suggestions that people'
    " review and approve; allowed action names: " + ", ".join(sorted(a.value for a in SUGGESTIBLE)) + "."
)
FINAL_TURN_TOKENS = 1500


@dataclass(frozen=True, slots=True)
class Budgets:
    tokens: int = 60_000
    seconds: float = 180.0
    tool_calls: int = 16
    output_chars: int = 4000
    request_timeout_s: float = 60.0


@dataclass
class Outcome:
    """What one conversation produced. `verdict` is None when it was stopped or failed."""

    status: str = "running"  # done, abstained, stopped, failed
    verdict: Verdict | None = None
    calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_reason: str | None = None
    seconds: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


OnCall = Callable[[ToolCall], Awaitable[None]]


async def _nothing(_: ToolCall) -> None:
    return None


class Conversation:
    """One investigation's exchange with the model."""

    def __init__(self, client: ChatClient, budgets: Budgets, redactor: Redactor) -> None:
        self.client = client
        self.budgets = budgets
        self.redact = redactor

    async def run(self, toolbox: ToolBox, brief: str, on_call: OnCall = _nothing) -> Outcome:
        outcome = Outcome()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.budgets.seconds):
                await self._loop(toolbox, brief, on_call, outcome)
        except TimeoutError:
            outcome.status, outcome.stop_reason = (
                "stopped",
                f"time budget of {self.budgets.seconds:g}s used up",
            )
        except IntegrationError as exc:
            outcome.status, outcome.stop_reason = "failed", f"the model failed: {exc.message}"
        outcome.seconds = time.monotonic() - started
        return outcome

    async def _loop(self, toolbox: ToolBox, brief: str, on_call: OnCall, outcome: Outcome) -> None:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": brief},
        ]
        tools = [spec.openai() for spec in READ_ONLY_TOOLS]
        while True:
            if outcome.tokens >= self.budgets.tokens:
                outcome.status, outcome.stop_reason = (
                    "stopped",
                    f"token budget of {self.budgets.tokens} used up",
                )
                return
            completion = await self._send(messages, tools, outcome)
            if not completion.tool_calls:
                self._finish(completion.content, outcome)
                return
            if len(outcome.calls) + len(completion.tool_calls) > self.budgets.tool_calls:
                outcome.status = "stopped"
                outcome.stop_reason = f"tool-call budget of {self.budgets.tool_calls} used up"
                return
            messages.append(completion.assistant_message())
            for request in completion.tool_calls:
                call = await self._call(
                    toolbox, request.name, request.arguments, f"c{len(outcome.calls) + 1}"
                )
                outcome.calls.append(call)
                await on_call(call)
                messages.append(
                    {"role": "tool", "tool_call_id": request.call_id, "content": f"[{call.id}] {call.output}"}
                )

    async def _send(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]], outcome: Outcome
    ) -> Completion:
        remaining = max(self.budgets.tokens - outcome.tokens, 1)
        completion = await self.client.complete(
            [self._redacted(m) for m in messages],
            tools,
            max_tokens=min(remaining, FINAL_TURN_TOKENS * 4),
            timeout_s=self.budgets.request_timeout_s,
        )
        outcome.prompt_tokens += completion.prompt_tokens
        outcome.completion_tokens += completion.completion_tokens
        return completion

    def _redacted(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Every string that leaves for the model passes the redactor (contents and the tool
        arguments echoed back)."""
        out = dict(message)
        if isinstance(out.get("content"), str):
            out["content"] = self.redact(out["content"])
        if out.get("tool_calls"):
            out["tool_calls"] = [
                {**t, "function": {**t["function"], "arguments": self.redact(t["function"]["arguments"])}}
                for t in out["tool_calls"]
            ]
        return out

    async def _call(self, toolbox: ToolBox, name: str, raw: str, call_id: str) -> ToolCall:
        started = time.monotonic()
        arguments: dict[str, Any] = {}
        spec = TOOLS_BY_NAME.get(name)
        try:
            spec, arguments = parse_arguments(name, raw)
            output, ok = await toolbox.run(name, arguments), True
        except ToolError as exc:
            output, ok = f"error: {exc}", False
        elapsed = int((time.monotonic() - started) * 1000)
        text = clip_output(self.redact(output), self.budgets.output_chars)
        evidence = spec.evidence if spec is not None else READ_ONLY_TOOLS[-1].evidence
        return ToolCall(call_id, name[:60], _safe_args(arguments), text, ok, evidence, elapsed)

    def _finish(self, content: str, outcome: Outcome) -> None:
        try:
            verdict = judge(content, outcome.calls)
        except AnswerError as exc:
            outcome.status, outcome.stop_reason = "failed", f"the model's answer was unusable: {exc}"
            return
        outcome.verdict = verdict
        outcome.status = "abstained" if verdict.abstained else "done"


def _safe_args(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as recorded: JSON-able, each value cut short (a query keeps its full length)."""
    return {str(k)[:40]: v[:2000] if isinstance(v, str) else v for k, v in list(arguments.items())[:10]}
