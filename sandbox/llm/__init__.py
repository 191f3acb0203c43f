"""A fake OpenAI-compatible chat-completions server that plays scripted conversations and
records every request body it received (see ``app``)."""

from sandbox.llm.app import FakeLLM, Turn, answer, call

__all__ = ["FakeLLM", "Turn", "answer", "call"]
