"""Plain-text runbooks (no fences and no ``##`` headings) as markdown: short stand-alone
lines become headings, ``Label:`` lines become bold labels and runs of command-looking
lines become fenced code blocks."""

from __future__ import annotations

import re

from bot.tools.importer.markdown import LIST_ITEM
from bot.tools.importer.promql import bare_promql
from bot.tools.importer.shell import guess_language, is_command
from bot.tools.importer.text import MD_LINK, clean_title, indent_width, next_non_blank

_TOC_TITLES = ("table of contents", "contents")


def is_markdown(text: str) -> bool:
    """Markdown (else plain text): fences, ``##`` headings, bold, links, inline code, or a
    ``# Title`` first line."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    return bool(
        re.search(r"^[ ]{0,3}(?:```|~~~)", text, re.MULTILINE)
        or re.search(r"^#{2,6}[ \t]+\S", text, re.MULTILINE)
        or re.search(r"\*\*[^*\n]+\*\*", text)
        or MD_LINK.search(text)
        or re.search(r"`[^`\n]+`", text)
        or (re.match(r"# [A-Z]", first) and not is_command(first[2:]))
    )


def plain_to_markdown(text: str) -> str:
    lines = [line.rstrip() for line in text.expandtabs(4).splitlines()]
    lines = [re.sub(r"^(\s*)•\s+", r"\1- ", line) for line in lines]
    toc = _toc_entries(lines)
    out: list[str] = []
    seen_title = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            out.append("")
            i += 1
            continue
        ind = indent_width(line)
        if _plain_code_like(line) and not LIST_ITEM.match(line):
            j = _code_run_end(lines, i, ind)
            block = lines[i:j]
            pad = " " * ind
            out += [pad + "```" + guess_language(block), *block, pad + "```"]
            i = j
            continue
        s = line.strip()
        if _plain_heading(lines, i):
            out.append("#" * _heading_level(s, toc, seen_title) + " " + s)
            seen_title = True
        elif _plain_label(lines, i):
            out.append(" " * ind + "**" + s + "**")
        else:
            out.append(line)
        i += 1
    return "\n".join(out)


def _plain_code_like(line: str) -> bool:
    s = line.strip()
    if not s:
        return False
    if s.startswith(("#", "{", "}")):
        return True
    if is_command(s):
        return True
    if re.match(r"^[A-Z][A-Z0-9_]*=\S", s) or re.match(r"^[a-z_][\w.-]*:(\s|$)", s):
        return True  # VAR=value, key: value
    if re.match(r"^[a-z_][\w.]*\s*=\s*\S", s):
        return True
    return bare_promql(s)


def _code_run_end(lines: list[str], i: int, ind: int) -> int:
    """The line after the run of code-looking lines starting at line `i` (indented `ind`):
    blank lines inside it are kept when code goes on after them."""
    j = i + 1
    while j < len(lines):
        cur = lines[j]
        if cur.strip():
            if _leaves_code(cur, ind):
                break
            j += 1
            continue
        k = next_non_blank(lines, j)
        if not _code_resumes(lines, k, ind):
            break
        j = k
    return j


def _leaves_code(line: str, ind: int) -> bool:
    if indent_width(line) <= ind and LIST_ITEM.match(line):
        return True
    return indent_width(line) < ind and not _plain_code_like(line)


def _code_resumes(lines: list[str], k: int, ind: int) -> bool:
    if k >= len(lines):
        return False
    nxt = lines[k]
    if LIST_ITEM.match(nxt) and indent_width(nxt) <= ind:
        return False
    return indent_width(nxt) > ind or (_plain_code_like(nxt) and indent_width(nxt) >= ind)


def _toc_entries(lines: list[str]) -> set[str]:
    """The entries of a table of contents, if the runbook has one."""
    for i, line in enumerate(lines):
        if line.strip().lower() in _TOC_TITLES:
            entries: set[str] = set()
            j = next_non_blank(lines, i + 1)
            while j < len(lines) and lines[j].strip():
                m = LIST_ITEM.match(lines[j])
                if m:
                    entries.add(clean_title(m["rest"]).lower())
                j += 1
            return entries
    return set()


def _heading_level(title: str, toc: set[str], seen_title: bool) -> int:
    """1 for the document's title; with a table of contents, 2 for its entries and 3 for
    the rest; else 2."""
    if not seen_title:
        return 1
    if title.lower() in _TOC_TITLES or clean_title(title).lower() in toc:
        return 2
    return 3 if toc else 2


def _plain_heading(lines: list[str], i: int) -> bool:
    line = lines[i]
    s = line.strip()
    if line[:1] in (" ", "\t") or not (4 <= len(s) <= 80):
        return False
    if i > 0 and lines[i - 1].strip():
        return False
    if i + 1 < len(lines) and lines[i + 1].strip():
        return False
    if not (s[0].isupper() or s[0].isdigit()) or s[-1] in ".,;:-!" or len(s.split()) > 10:
        return False
    return not (_plain_code_like(s) or LIST_ITEM.match(line))


def _plain_label(lines: list[str], i: int) -> bool:
    s = lines[i].strip()
    if not s.endswith(":") or not s[0].isupper() or len(s.split()) > 5 or len(s) > 60:
        return False
    before = i == 0 or not lines[i - 1].strip()
    return before and not _plain_code_like(s) and not LIST_ITEM.match(lines[i])
