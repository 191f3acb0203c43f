"""Playbook steps from a unit's blocks: one per numbered (or command-carrying) list item,
or the unit as one step; a code block of ``# 1. ...`` chunks gives one step per chunk."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import Any

from bot.tools.importer.markdown import Block, Item
from bot.tools.importer.procedures import is_procedure_list, nested_ordered
from bot.tools.importer.promql import bare_promql
from bot.tools.importer.rules import is_rule_code
from bot.tools.importer.sections import Unit
from bot.tools.importer.shell import guess_language, is_command
from bot.tools.importer.text import (
    clean_title,
    first_sentence,
    fit_template,
    fit_title,
    strip_list_marker,
)

_TEXT_KINDS = ("para", "table", "quote")


@dataclass
class StepDraft:
    title: str
    text: str = ""
    codes: list[tuple[str, str]] = field(default_factory=list)  # (language, code)


def _without_commands(title: str) -> str:
    """A step title without the inline shell commands it quotes ("Scale X via `kubectl ...`")."""

    def drop(m: re.Match[str]) -> str:
        return "" if is_command(m.group(2)) else m.group(0)

    title = re.sub(r"\s+", " ", title).strip()
    short = re.sub(r"\s*(?:\b(?:via|with|using|by running|by|run)\s+)?\(?(`+)(.+?)\1\)?", drop, title)
    short = re.sub(r"\s+", " ", short).strip(" ,;:-")
    return short if len(short) >= 8 else title


def _numbered_chunks(code: str) -> list[tuple[str, str]] | None:
    """Split a code block made of ``# 1. title`` chunks into (title, code) pairs."""
    heads = [
        (i, m.group(1))
        for i, line in enumerate(code.splitlines())
        if (m := re.match(r"^\s*#\s*(?:step\s*)?\d+\s*[.):]\s*(\S.*)$", line, re.IGNORECASE))
    ]
    if len(heads) < 2:
        return None
    lines = code.splitlines()
    chunks: list[tuple[str, str]] = []
    for n, (start, title) in enumerate(heads):
        end = heads[n + 1][0] if n + 1 < len(heads) else len(lines)
        body = (lines[:start] if n == 0 else []) + lines[start + 1 : end]
        chunks.append((title.strip(), "\n".join(body).strip("\n")))
    return chunks


def item_steps(item: Item) -> list[StepDraft]:
    """The steps of one list item: the item itself, or one per item of its numbered list."""
    blocks = item.blocks
    if blocks and blocks[0].kind == "para":
        title, rest = first_sentence(blocks[0].text)
        others = blocks[1:]
    else:
        title, rest = "Step", ""
        others = blocks
    # a bullet ("**PostgreSQL**:") over a numbered procedure: one step per numbered item
    nested = None if item.ordered else nested_ordered(item)
    if nested is not None and not any(b.kind == "code" for b in others):
        return _nested_steps(title, rest, others, nested)
    text_parts = [rest] if rest and rest.strip(" .:") else []
    short = _without_commands(title)
    if short != re.sub(r"\s+", " ", title).strip() and blocks and blocks[0].kind == "para":
        title, text_parts = short, [blocks[0].text]
    codes: list[tuple[str, str]] = []
    for block in others:
        if block.kind == "code":
            if not is_rule_code(block):
                codes.append((block.lang, block.text))
        else:
            text_parts.append(block.markdown())
    return [StepDraft(title or "Step", "\n\n".join(text_parts).strip(), codes)]


def _nested_steps(lead: str, rest: str, others: list[Block], nested: Block) -> list[StepDraft]:
    """One step per item of `nested`, titled after the bullet's lead; the bullet's other
    text goes before the first."""
    steps: list[StepDraft] = []
    for sub in nested.items:
        for step in item_steps(sub):
            step.title = f"{lead}: {step.title}" if lead else step.title
            steps.append(step)
    extra = [rest] + [b.markdown() for b in others if b is not nested]
    extra_text = "\n\n".join(x for x in extra if x.strip())
    if steps and extra_text:
        steps[0].text = (extra_text + "\n\n" + steps[0].text).strip()
    return steps


def unit_steps(unit: Unit, fallback_title: str) -> tuple[list[StepDraft], list[str]]:
    """Steps of one unit, and markdown that belongs in the summary (intro text)."""
    blocks = [b for b in unit.blocks if not is_rule_code(b)]
    title = clean_title(unit.label) if unit.label else fallback_title
    if not blocks:
        return [], []
    proc_lists = [b for b in blocks if is_procedure_list(b)]
    if not proc_lists:
        return _steps_without_lists(unit, blocks, title)
    return _steps_of_lists(unit, blocks, proc_lists)


def _steps_without_lists(unit: Unit, blocks: list[Block], title: str) -> tuple[list[StepDraft], list[str]]:
    """A unit with no procedure list: one step (or one per ``# 1.`` chunk of its only code)."""
    summary: list[str] = []
    if unit.label is None and all(b.kind in _TEXT_KINDS for b in blocks):
        return [], [b.markdown() for b in blocks]
    codes = [b for b in blocks if b.kind == "code"]
    texts = [b for b in blocks if b.kind != "code"]
    if unit.label is None:
        # the section's own introduction: leading paragraphs are the summary
        while texts and texts[0].kind in _TEXT_KINDS and texts[0] is blocks[0]:
            summary.append(texts[0].markdown())
            blocks = blocks[1:]
            texts = texts[1:]
    text = "\n\n".join(b.markdown() for b in texts)
    if len(codes) == 1:
        chunks = _numbered_chunks(codes[0].text)
        if chunks:
            steps = [StepDraft(clean_title(t) or title, "", [(codes[0].lang, c)]) for t, c in chunks]
            steps[0].text = text
            return steps, summary
    return [StepDraft(title, text, [(c.lang, c.text) for c in codes])], summary


def _steps_of_lists(
    unit: Unit, blocks: list[Block], proc_lists: list[Block]
) -> tuple[list[StepDraft], list[str]]:
    """A unit with procedure lists: their items' steps; blocks before the first list lead
    into it (or are the summary), blocks after a list join its last step."""
    steps: list[StepDraft] = []
    summary: list[str] = []
    pending: list[Block] = []
    for block in blocks:
        if block in proc_lists:
            new = [step for item in block.items for step in item_steps(item)]
            if pending and new:
                _lead_in(unit, pending, new[0], summary)
                pending = []
            steps += new
        elif steps:
            _append_block(steps[-1], block)
        else:
            pending.append(block)
    return steps, summary


def _lead_in(unit: Unit, pending: list[Block], first: StepDraft, summary: list[str]) -> None:
    intro = "\n\n".join(b.markdown() for b in pending if b.kind != "code")
    if unit.label is None and all(b.kind in _TEXT_KINDS for b in pending):
        summary.append(intro)
    else:
        first.text = (intro + "\n\n" + first.text).strip()
        first.codes = [(b.lang, b.text) for b in pending if b.kind == "code"] + first.codes


def _append_block(step: StepDraft, block: Block) -> None:
    if block.kind == "code":
        step.codes.append((block.lang, block.text))
    else:
        step.text = (step.text + "\n\n" + block.markdown()).strip()


# Inline code may wrap over lines of a paragraph (never over a blank line); fences inside a
# step's text come from nested lists.
_WRAPPED_CODE = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.DOTALL)
_TEXT_FENCE = re.compile(
    r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+-]*)[^\n]*\n(.*?)\n[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL
)


def step_sources(step: StepDraft) -> tuple[list[tuple[str, str]], list[str]]:
    """(code blocks, inline code / bare PromQL lines) of a step; fenced code in its text
    (from nested lists) counts as a code block."""
    text = step.title + "\n" + step.text
    fenced = [(m.group(2), textwrap.dedent(m.group(3))) for m in _TEXT_FENCE.finditer(text)]
    text = _TEXT_FENCE.sub("", text)
    inline = [" ".join(m.group(2).split()) for m in _WRAPPED_CODE.finditer(text)]
    text = _WRAPPED_CODE.sub("", text)  # their lines are not bare PromQL
    for line in text.splitlines():
        if "`" in line:
            continue
        if bare_promql(line):
            inline.append(strip_list_marker(line))
        command = re.search(r"(?:^|[\s:(])((?:kubectl|oc)\s[^\n]+)", line)
        if command:  # a command written without backticks: up to the end of the line/sentence
            inline.append(re.sub(r"[.)]+$|\.\s.*$", "", command.group(1).strip()))
    return step.codes + fenced, inline


def step_dict(step: StepDraft) -> dict[str, Any]:
    """The step as playbook data: title, text, and one code block with its language (code
    blocks in other languages go into the text)."""
    data: dict[str, Any] = {"title": fit_title(step.title)}
    text = step.text
    code: str | None = None
    language: str | None = None
    if step.codes:
        langs = {lang.lower() for lang, _ in step.codes}
        if len(langs) == 1:
            code = "\n\n".join(body for _, body in step.codes)
            language = step.codes[0][0].lower()
        else:
            code, language = step.codes[0][1], step.codes[0][0].lower()
            extra = "\n\n".join(f"```{lang}\n{body}\n```" for lang, body in step.codes[1:])
            text = (text + "\n\n" + extra).strip()
    if text.strip():
        data["text"] = fit_template(text, 3000)
    if code is not None and code.strip():
        _add_code(data, code, language)
    return data


def _add_code(data: dict[str, Any], code: str, language: str | None) -> None:
    if len(code) > 3000:
        code = code[:2950].rsplit("\n", 1)[0] + "\n# … (truncated, see the runbook)"
    data["code"] = code.rstrip() + "\n"
    if not language:
        language = guess_language(code.splitlines()) if any(is_command(x) for x in code.splitlines()) else ""
    if language and re.fullmatch(r"[a-z0-9][a-z0-9+#._-]*", language) and len(language) <= 20:
        data["language"] = language
