"""Block Kit primitives with Slack's limits enforced in this one place (protocols.md C.5).

Everything that builds a message goes through these helpers, so no renderer can produce a
block Slack rejects: long text is cut with an ellipsis, lists are capped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Block = dict[str, Any]

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ACTION_ID = 255
MAX_ACTIONS = 25
MAX_CONTEXT = 10
MAX_URL = 3000
MAX_FALLBACK_TEXT = 4000


@dataclass(frozen=True, slots=True)
class Message:
    text: str  # notification fallback, always sent
    blocks: list[Block] = field(default_factory=list)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape(text: str) -> str:
    """Escape Slack's control characters in user- or alert-supplied text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    # Only web links: a generatorURL or annotation is alert data, never a javascript: link.
    if not url.startswith(("http://", "https://")) or len(url) > MAX_URL or any(c in url for c in "<>| \n"):
        return escape(label)
    return f"<{url}|{escape(label).replace('|', '¦')}>"


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, MAX_HEADER) or " "}}


def section(markdown: str, *, fields: list[str] | None = None, block_id: str | None = None) -> Block:
    block: Block = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": clip(markdown, MAX_SECTION_TEXT) or " "},
    }
    if fields:
        block["fields"] = [{"type": "mrkdwn", "text": clip(f, MAX_FIELD_TEXT)} for f in fields[:MAX_FIELDS]]
    if block_id:
        block["block_id"] = block_id[:255]
    return block


def context(*parts: str) -> Block:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": clip(p, MAX_SECTION_TEXT)} for p in parts[:MAX_CONTEXT] if p],
    }


def divider() -> Block:
    return {"type": "divider"}


def button(text: str, action_id: str, value: str, *, style: str | None = None) -> Block:
    element: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": clip(text, MAX_BUTTON_TEXT)},
        "action_id": action_id[:MAX_ACTION_ID],
        "value": value[:MAX_BUTTON_VALUE],
    }
    if style in ("primary", "danger"):
        element["style"] = style
    return element


def actions(*elements: Block, block_id: str | None = None) -> Block:
    block: Block = {"type": "actions", "elements": list(elements[:MAX_ACTIONS])}
    if block_id:
        block["block_id"] = block_id[:255]
    return block


def message(text: str, blocks: list[Block]) -> Message:
    """Final assembly: cap the block count, keeping the last block (usually the buttons)."""
    if len(blocks) > MAX_BLOCKS:
        blocks = [*blocks[: MAX_BLOCKS - 2], context("_(more omitted)_"), blocks[-1]]
    return Message(text=clip(text, MAX_FALLBACK_TEXT), blocks=blocks)
