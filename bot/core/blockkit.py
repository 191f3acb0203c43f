"""Block Kit primitives with Slack's limits enforced in this one place (protocols.md C.5).

Everything that builds a message goes through these helpers, so no renderer can produce a
block Slack rejects: long text is cut with an ellipsis, lists are capped.
"""

from __future__ import annotations

import re
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
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONFIRM_BUTTON = 30


@dataclass(frozen=True, slots=True)
class Message:
    text: str  # notification fallback, always sent
    blocks: list[Block] = field(default_factory=list)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape(text: str) -> str:
    """Escape Slack's control characters in user- or alert-supplied text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Line breaks (also Unicode's), other control characters, zero-width and direction-changing
# characters: any of them lets a value start what looks like a line of its own, or hide text.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]+")
# Look-alikes for mrkdwn's formatting characters ("_" is kept: common in label values, it only
# italicises at word boundaries).
_INERT = str.maketrans({"`": "ˋ", "*": "∗", "~": "∼"})


def single_line(text: str) -> str:
    """One line: breaks and invisible characters become spaces, runs of spaces one space."""
    return " ".join(_BREAKS.sub(" ", text).split())


def inert(text: str) -> str:
    """Untrusted text on one line with mrkdwn's formatting characters neutralised, not escaped
    (for text that is escaped later, e.g. by template rendering)."""
    return single_line(text).translate(_INERT)


def inline(text: str, limit: int | None = None) -> str:
    """A user- or alert-supplied value for mrkdwn: one line, formatting neutralised, clipped to
    `limit` characters before escaping, Slack-escaped. Every value a person or an alert chose
    goes through this before it is shown, so it can neither mention, link, format nor fake a
    line of the card around it."""
    flat = inert(text)
    return escape(clip(flat, limit) if limit is not None else flat)


_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


def mention(user: str) -> str:
    """A Slack user id as a mention; anything else (a name from another system) as inline text."""
    return f"<@{user}>" if _SLACK_USER_ID.fullmatch(user) else inline(user)


def link(url: str, label: str) -> str:
    # Only web links: a generatorURL or annotation is alert data, never a javascript: link.
    if not url.startswith(("http://", "https://")) or len(url) > MAX_URL or any(c in url for c in "<>| \n"):
        return escape(label)
    return f"<{url}|{escape(label).replace('|', '¦')}>"


def header(text: str) -> Block:
    # plain_text shows no mrkdwn and no mentions; a header is still one line.
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": clip(single_line(text), MAX_HEADER) or " "},
    }


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


def confirm(title: str, text: str, ok: str, *, deny: str = "Cancel", danger: bool = True) -> Block:
    """A confirmation dialog object for an interactive element (Slack's limits: title, ok and
    deny 100/30/30 characters of plain text, the text 300)."""
    dialog: Block = {
        "title": {"type": "plain_text", "text": clip(title, MAX_CONFIRM_TITLE)},
        "text": {"type": "mrkdwn", "text": clip(text, MAX_CONFIRM_TEXT)},
        "confirm": {"type": "plain_text", "text": clip(ok, MAX_CONFIRM_BUTTON)},
        "deny": {"type": "plain_text", "text": clip(deny, MAX_CONFIRM_BUTTON)},
    }
    if danger:
        dialog["style"] = "danger"
    return dialog


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
