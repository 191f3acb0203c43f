"""An OpenAI-compatible chat-completions endpoint (vLLM, Ollama, LiteLLM, a hosted API) over
aiohttp: one request per call, tools in the OpenAI `tools` shape, and a start-up probe that
says whether the endpoint answers and whether it calls tools.

Every failure (unreachable, timeout, HTTP error, a body that is not a completion) becomes an
IntegrationError; the text of an error body is cut short and never includes our request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp

from bot.core.errors import IntegrationError

PROBE_TOOL = "ready"
_PROBE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": PROBE_TOOL,
            "description": "Call this to say you are ready.",
            "parameters": {"type": "object", "properties": {}, "required": []},
        },
    }
]
_PROBE_MESSAGES = [
    {"role": "system", "content": "You are being checked for tool support."},
    {"role": "user", "content": f"Call the `{PROBE_TOOL}` tool now."},
]


class Capability(StrEnum):
    """What the investigator may do with the configured endpoint."""

    OFF = "off"  # no LLM_BASE_URL: nothing changes anywhere
    PROBING = "probing"  # configured, the first probe has not answered yet
    UNREACHABLE = "unreachable"  # configured, but it did not answer at start-up
    SUMMARIES = "summaries_only"  # answers, but calls no tools: drafts only, no investigation
    TOOLS = "tools"  # investigations and drafts


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """A tool call the model asked for (its own id; the arguments as it sent them)."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Completion:
    content: str
    tool_calls: tuple[ToolRequest, ...]
    prompt_tokens: int
    completion_tokens: int

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def assistant_message(self) -> dict[str, Any]:
        """This completion as the assistant turn of the next request."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": t.call_id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                for t in self.tool_calls
            ]
        return message


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse_completion(body: object) -> Completion:
    """The first choice of a chat-completions response (IntegrationError when malformed)."""
    try:
        assert isinstance(body, dict)
        message = body["choices"][0]["message"]
        assert isinstance(message, dict)
        calls = []
        for raw in message.get("tool_calls") or []:
            function = raw["function"]
            arguments = function.get("arguments") or "{}"
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            calls.append(ToolRequest(str(raw.get("id") or ""), str(function["name"]), arguments))
        usage = body.get("usage") or {}
        return Completion(
            str(message.get("content") or ""),
            tuple(calls),
            _int(usage.get("prompt_tokens")),
            _int(usage.get("completion_tokens")),
        )
    except (AssertionError, KeyError, IndexError, TypeError, AttributeError):
        raise IntegrationError("llm", "the endpoint's answer is not a chat completion") from None


class ChatClient:
    """POST {base_url}/chat/completions with a bearer key (when one is set)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        session: aiohttp.ClientSession,
        *,
        timeout_s: float = 60.0,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] = (),
        *,
        tool_choice: str | None = None,
        max_tokens: int | None = None,
        timeout_s: float | None = None,
    ) -> Completion:
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "temperature": 0}
        if tools:
            body["tools"] = list(tools)
            body["tool_choice"] = tool_choice or "auto"
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s is not None else self._timeout
        try:
            async with self._session.post(
                self.url, data=json.dumps(body), headers=self._headers, timeout=timeout
            ) as resp:
                if resp.status >= 400:
                    text = (await resp.text())[:200]
                    raise IntegrationError("llm", f"HTTP {resp.status}: {text}")
                payload = await resp.json(content_type=None)
        except TimeoutError:
            raise IntegrationError("llm", "the model did not answer in time") from None
        except (aiohttp.ClientError, OSError, json.JSONDecodeError) as exc:
            raise IntegrationError("llm", f"{type(exc).__name__}: {str(exc)[:200]}") from None
        return parse_completion(payload)

    async def probe(self, timeout_s: float = 20.0) -> tuple[Capability, str]:
        """Whether the endpoint answers and calls a tool when told to: (capability, why)."""
        try:
            answer = await self.complete(
                _PROBE_MESSAGES, _PROBE_TOOLS, tool_choice="required", max_tokens=32, timeout_s=timeout_s
            )
        except IntegrationError as exc:
            if "HTTP 400" in exc.message:
                # Some servers refuse `tools` outright: ask again without them.
                return await self._plain_probe(timeout_s, exc.message)
            return Capability.UNREACHABLE, exc.message
        if any(t.name == PROBE_TOOL for t in answer.tool_calls):
            return Capability.TOOLS, f"model {self.model} answers and calls tools"
        return Capability.SUMMARIES, f"model {self.model} answers but did not call a tool"

    async def _plain_probe(self, timeout_s: float, first: str) -> tuple[Capability, str]:
        try:
            await self.complete(_PROBE_MESSAGES[:1], max_tokens=8, timeout_s=timeout_s)
        except IntegrationError as exc:
            return Capability.UNREACHABLE, exc.message
        return Capability.SUMMARIES, f"model {self.model} refuses tools ({first[:80]})"
