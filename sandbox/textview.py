"""Render sandbox Slack messages as plain text for the terminal (the sandbox story)."""

from __future__ import annotations

import re
from typing import Any

_LINK = re.compile(r"<([^|>]+)\|([^>]+)>")
_MENTION = re.compile(r"<[@#]([A-Z0-9]+)(?:\|[^>]*)?>")
_DATE = re.compile(r"<!date\^\d+\^[^|]*\|([^>]*)>")


def plain(text: str, names: dict[str, str]) -> str:
    text = _DATE.sub(r"\1", text)
    text = _LINK.sub(r"\2 (\1)", text)
    text = _MENTION.sub(lambda m: names.get(m.group(1), m.group(1)), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, dict) else ""


def blocks_to_text(blocks: list[dict[str, Any]] | None, fallback: str, names: dict[str, str]) -> str:
    if not blocks:
        return plain(fallback, names)
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append("== " + _text(block.get("text")) + " ==")
        elif kind == "section":
            if block.get("text"):
                lines.append(plain(_text(block["text"]), names))
            fields = [plain(_text(f), names).replace("\n", ": ", 1) for f in block.get("fields", [])]
            if fields:
                lines.append("  " + " | ".join(fields))
        elif kind == "context":
            lines.append("  " + " ".join(plain(_text(e), names) for e in block.get("elements", [])))
        elif kind == "actions":
            buttons = [f"[{_text(e.get('text'))}]" for e in block.get("elements", [])]
            lines.append("  " + " ".join(buttons))
        elif kind == "image":
            lines.append(f"  (image: {block.get('alt_text', '')})")
        elif kind == "divider":
            lines.append("  ---")
        elif kind in ("markdown", "rich_text"):
            lines.append(plain(str(block.get("text", "")), names))
    return "\n".join(lines)
