"""A small markdown block parser: headings, paragraphs, fenced and indented code, lists
(items hold their own blocks), tables and quotes. Lenient the way runbooks need: lazy
continuation lines, fences at any indentation inside items, ``•`` bullets."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.tools.importer.text import dedent_line, dedent_lines, indent_width, next_non_blank

MAX_NESTING = 30

FENCE_OPEN = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*?)[ \t]*$")
LIST_ITEM = re.compile(r"^(?P<indent>[ ]*)(?P<marker>[-*+•]|\d{1,9}[.)])(?P<space>[ \t]+|$)(?P<rest>.*)$")
_ATX = re.compile(r"^[ ]{0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_HR = re.compile(r"^[ ]{0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_SETEXT = re.compile(r"^[ ]{0,3}(=+|-+)[ \t]*$")


@dataclass(eq=False)
class Block:
    kind: str  # heading | para | code | list | table | quote
    raw: list[str]
    text: str = ""
    level: int = 0
    lang: str = ""
    ordered: bool = False
    items: list[Item] = field(default_factory=list)

    def markdown(self) -> str:
        if self.kind == "code":
            return f"```{self.lang}\n{self.text}\n```"
        return "\n".join(dedent_lines(self.raw)).strip("\n")


@dataclass(eq=False)
class Item:
    blocks: list[Block]
    ordered: bool


def interrupts(line: str) -> bool:
    """Whether `line` starts a new block instead of continuing a paragraph."""
    s = line.strip()
    return bool(
        FENCE_OPEN.match(line)
        or (_ATX.match(line) and s.startswith("#"))
        or _HR.match(line)
        or s.startswith(("|", ">"))
        or LIST_ITEM.match(line)
    )


def parse_blocks(lines: list[str], depth: int = 0) -> list[Block]:
    """The blocks of markdown lines; `depth` is the list nesting they are in."""
    blocks: list[Block] = []
    i, n = 0, len(lines)
    while i < n:
        if not lines[i].strip():
            i += 1
            continue
        block, i = _block_at(lines, i, depth)
        if block is not None:
            blocks.append(block)
    return blocks


def _block_at(lines: list[str], i: int, depth: int) -> tuple[Block | None, int]:
    """The block starting at the non-blank line `i` (None for a rule) and the line after it."""
    line = lines[i]
    ind = indent_width(line)
    fence = FENCE_OPEN.match(line)
    if fence:
        return _fenced_code(lines, i, fence, ind)
    if ind >= 4 and not LIST_ITEM.match(line):
        return _indented_code(lines, i)
    atx = _ATX.match(line)
    if atx and line.strip().startswith("#"):
        return Block("heading", [line], text=(atx.group(2) or "").strip(), level=len(atx.group(1))), i + 1
    if _HR.match(line):
        return None, i + 1
    stripped = line.strip()
    if stripped.startswith(("|", ">")):
        return _prefixed(lines, i, stripped[0])
    if LIST_ITEM.match(line):
        return _parse_list(lines, i, depth)
    return _paragraph(lines, i)


def _fence_close(mark: str) -> re.Pattern[str]:
    """The line that closes a fence opened with `mark` (same character, at least as long)."""
    return re.compile(rf"^[ ]*{re.escape(mark[0])}{{{len(mark)},}}[ \t]*$")


def _fenced_code(lines: list[str], i: int, fence: re.Match[str], ind: int) -> tuple[Block, int]:
    close = _fence_close(fence["fence"])
    j = i + 1
    body: list[str] = []
    while j < len(lines) and not close.match(lines[j]):
        body.append(dedent_line(lines[j], ind))
        j += 1
    info = fence["info"].strip().split()
    block = Block("code", lines[i : j + 1], text="\n".join(body).strip("\n"), lang=info[0] if info else "")
    return block, j + 1


def _indented_code(lines: list[str], i: int) -> tuple[Block, int]:
    j = i
    while j < len(lines) and (not lines[j].strip() or indent_width(lines[j]) >= 4):
        j += 1
    body = dedent_lines(lines[i:j])
    return Block("code", lines[i:j], text="\n".join(body).strip("\n")), j


def _prefixed(lines: list[str], i: int, mark: str) -> tuple[Block, int]:
    """A table (``|`` lines) or a quote (``>`` lines)."""
    j = i
    while j < len(lines) and lines[j].strip().startswith(mark):
        j += 1
    kind = "table" if mark == "|" else "quote"
    return Block(kind, lines[i:j], text="\n".join(x.strip() for x in lines[i:j])), j


def _paragraph(lines: list[str], i: int) -> tuple[Block, int]:
    """A paragraph, or a setext heading (one line underlined with ``===`` or ``---``)."""
    n = len(lines)
    j = i + 1
    while j < n and lines[j].strip() and not interrupts(lines[j]):
        j += 1
    if j < n and j == i + 1 and _SETEXT.match(lines[j]):
        level = 1 if lines[j].strip().startswith("=") else 2
        return Block("heading", lines[i : j + 1], text=lines[i].strip(), level=level), j + 1
    para = lines[i:j]
    return Block("para", para, text="\n".join(x.strip() for x in para)), j


def _parse_list(lines: list[str], start: int, depth: int) -> tuple[Block, int]:
    """A list of items with the same indentation and kind (bulleted or numbered)."""
    first = LIST_ITEM.match(lines[start])
    assert first is not None
    base = len(first["indent"])
    ordered = first["marker"][0].isdigit()
    items: list[Item] = []
    i = start
    while i < len(lines):
        m = LIST_ITEM.match(lines[i])
        if m is None or len(m["indent"]) != base or m["marker"][0].isdigit() != ordered:
            break
        body, i = _item_lines(lines, i, m, base)
        items.append(Item(blocks=_item_blocks(body, depth), ordered=ordered))
        k = next_non_blank(lines, i)
        if not _same_list(lines, k, base, ordered):
            break
        i = k
    return Block("list", lines[start:i], ordered=ordered, items=items), i


def _item_lines(lines: list[str], i: int, m: re.Match[str], base: int) -> tuple[list[str], int]:
    """The content lines of the item starting at line `i`, dedented to its content column,
    and the line after the item."""
    space = len(m["space"]) if m["space"] and len(m["space"]) <= 4 else 1
    content_col = base + len(m["marker"]) + space
    body = [re.sub(r"^\[[ xX]\]\s+", "", m["rest"])]
    j, n = i + 1, len(lines)
    while j < n:
        cur = lines[j]
        if not cur.strip():
            k = next_non_blank(lines, j)
            if k < n and indent_width(lines[k]) > base:
                body += [""] * (k - j)
                j = k
                continue
            break
        fence = FENCE_OPEN.match(cur)
        if fence and indent_width(cur) > base:
            fenced, j = _item_fence(lines, j, fence, content_col)
            body += fenced
        elif indent_width(cur) > base:
            body.append(dedent_line(cur, content_col))
            j += 1
        elif body[-1].strip() and not interrupts(cur):  # a lazy continuation line
            body.append(cur.strip())
            j += 1
        else:
            break
    return body, j


def _item_fence(lines: list[str], j: int, fence: re.Match[str], content_col: int) -> tuple[list[str], int]:
    """A fenced block in an item: its lines keep their relative indentation, whatever it is."""
    removed = min(content_col, indent_width(lines[j]))
    close = _fence_close(fence["fence"])
    fenced = [lines[j][removed:]]
    j += 1
    while j < len(lines):
        fenced.append(dedent_line(lines[j], removed))
        j += 1
        if close.match(lines[j - 1]):
            break
    return fenced, j


def _item_blocks(body: list[str], depth: int) -> list[Block]:
    if depth < MAX_NESTING:
        return parse_blocks(body, depth + 1)
    # absurdly deep nesting: the rest is one paragraph
    return [Block("para", body, text="\n".join(x.strip() for x in body if x.strip()))]


def _same_list(lines: list[str], k: int, base: int, ordered: bool) -> bool:
    """Whether line `k` is another item of the list at indentation `base`."""
    nxt = LIST_ITEM.match(lines[k]) if k < len(lines) else None
    return nxt is not None and len(nxt["indent"]) == base and nxt["marker"][0].isdigit() == ordered
