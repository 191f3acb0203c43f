"""A fake OpenAI-compatible model: ``POST /v1/chat/completions`` on ``http://127.0.0.1:<port>``.

It plays a script: each request (other than the start-up probe) takes the next `Turn`, either
tool calls (with ids ``call_1``, ``call_2``, ... in order) or a final text answer. With the
script used up it answers `default` (a text). Modes for the degraded cases:

- ``tools=False``: a model that never calls a tool (the probe gets text back);
- ``endless=(name, arguments)``: every turn calls that tool again, a loop that never ends;
- ``delay_s``: each answer is late by that much (to test time budgets);
- ``probe_gate``: while set to an unset event, start-up probes wait for it (a slow endpoint);
- ``turn_gate``: likewise for every other request (an investigation held mid-way);
- ``api_key``: requests without ``Authorization: Bearer <key>`` get 401.

Every request body is kept in :attr:`requests` (probe included) so tests can inspect what
reached the model: the tools offered, and that no secret got through. Usage tokens are a
deterministic function of the sizes (a quarter of the characters).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")
PROBE_TOOL = "ready"


@dataclass(frozen=True, slots=True)
class Turn:
    """One answer of the model: tool calls (name, arguments) or a text."""

    calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    text: str = ""


def call(*calls: tuple[str, dict[str, Any]]) -> Turn:
    return Turn(calls=tuple(calls))


def answer(value: str | dict[str, Any]) -> Turn:
    return Turn(text=value if isinstance(value, str) else json.dumps(value))


@dataclass
class FakeLLM:
    tools: bool = True
    api_key: str | None = None
    endless: tuple[str, dict[str, Any]] | None = None
    delay_s: float = 0.0
    probe_gate: asyncio.Event | None = None
    turn_gate: asyncio.Event | None = None
    default: str = "Nothing to add."
    # Play the script again from its start once it is used up (the sandbox demo).
    repeat: bool = False
    script: list[Turn] = field(default_factory=list)
    _played: list[Turn] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    _calls: int = 0
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def play(self, turns: Sequence[Turn]) -> None:
        """Replace the script: the next requests get these turns, in order."""
        self.script = list(turns)
        self._played = list(turns)

    @property
    def conversation_requests(self) -> list[dict[str, Any]]:
        """Requests other than the start-up probe."""
        return [r for r in self.requests if not _is_probe(r)]

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, probe: Callable[[FakeLLM], T | None], timeout: float = 10.0) -> T:
        """Until `probe` returns something other than None; woken on every request."""
        assert self._changed is not None
        async with asyncio.timeout(timeout), self._changed:
            while (found := probe(self)) is None:
                await self._changed.wait()
            return found

    async def _completions(self, request: web.Request) -> web.Response:
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": {"message": "invalid api key"}}, status=401)
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": {"message": "body is not JSON"}}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return web.json_response({"error": {"message": "messages is required"}}, status=400)
        self.requests.append(body)
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        gate = self.probe_gate if _is_probe(body) else self.turn_gate
        if gate is not None:
            await gate.wait()
        turn = self._next_turn(body)
        return web.json_response(self._completion(body, turn))

    def _next_turn(self, body: dict[str, Any]) -> Turn:
        if _is_probe(body):
            return call((PROBE_TOOL, {})) if self.tools else Turn(text="ready")
        if self.endless is not None and self.tools:
            return call(self.endless)
        if not self.script and self.repeat:
            self.script = list(self._played)
        if self.script:
            turn = self.script.pop(0)
            if turn.calls and not (self.tools and body.get("tools")):
                return Turn(text=self.default)
            return turn
        return Turn(text=self.default)

    def _completion(self, body: dict[str, Any], turn: Turn) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
        if turn.calls:
            message["tool_calls"] = []
            for name, arguments in turn.calls:
                self._calls += 1
                message["tool_calls"].append(
                    {
                        "id": f"call_{self._calls}",
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(arguments)},
                    }
                )
        prompt = len(json.dumps(body["messages"])) // 4
        completion = len(json.dumps(message)) // 4
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if turn.calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }


def _is_probe(body: dict[str, Any]) -> bool:
    tools = body.get("tools") or []
    return len(tools) == 1 and tools[0].get("function", {}).get("name") == PROBE_TOOL
