"""Which lists and sections are procedures: numbered steps, lists carrying commands,
Symptoms/Diagnosis/Resolution labels, incident-like titles."""

from __future__ import annotations

import re

from bot.tools.importer.markdown import Block, Item
from bot.tools.importer.promql import promql_like
from bot.tools.importer.rules import is_rule_code
from bot.tools.importer.sections import Section, label_of, procedure_label
from bot.tools.importer.shell import is_command
from bot.tools.importer.text import INLINE_CODE, clean_title, first_sentence, stem, word_set

_PROC_TITLE_WORDS = word_set(
    """
    troubleshoot troubleshooting issue issues problem problems failure failures fail failing
    incident outage recovery recover restore mitigation mitigate remediation runbook playbook
    rollback down error errors latency loss crash crashes crashing corrupt corruption exhaust
    exhaustion exhausted leak backlog lag slow high low stuck unhealthy degraded not won't cannot
    can't unavailable timeout timeouts full pressure saturation spike
    """
)


def list_has_commands(block: Block) -> bool:
    """A list with a code block (not a rule), or an inline command or query, in an item."""
    for item in block.items:
        for inner in item.blocks:
            if inner.kind == "code" and not is_rule_code(inner):
                return True
            if inner.kind == "list" and list_has_commands(inner):
                return True
            if inner.kind == "para":
                spans = [m.group(2) for m in INLINE_CODE.finditer(inner.text)]
                if any(is_command(s) or promql_like(s) for s in spans):
                    return True
    return False


def nested_ordered(item: Item) -> Block | None:
    """The numbered list inside an item (after its first block), if any."""
    for block in item.blocks[1:]:
        if block.kind == "list" and block.ordered and len(block.items) >= 1:
            return block
    return None


def is_procedure_list(block: Block) -> bool:
    if block.kind != "list":
        return False
    if block.ordered or list_has_commands(block):
        return True
    return any(nested_ordered(item) is not None for item in block.items)


def is_procedure(section: Section) -> bool:
    """Labels like Symptoms/Diagnosis/Resolution (one bold label, or two sub-headings), or
    at least two numbered steps with commands or an incident-like title."""
    if any(procedure_label(lab[0]) for b in section.blocks if (lab := label_of(b)) is not None):
        return True
    if sum(1 for child in section.children if procedure_label(child.title)) >= 2:
        return True
    ordered = 0
    commands = False
    for block in section.blocks:
        if block.kind == "list":
            ordered += _numbered_items(block)
            commands = commands or list_has_commands(block)
        elif block.kind == "code" and not is_rule_code(block):
            commands = True
    words = {stem(w) for w in re.findall(r"[A-Za-z']+", clean_title(section.title).lower())}
    title_hit = bool(words & {stem(w) for w in _PROC_TITLE_WORDS})
    return ordered >= 2 and (title_hit or commands)


def _numbered_items(block: Block) -> int:
    """The numbered items of a list: its own if numbered, and those of the numbered lists
    nested in its items."""
    count = len(block.items) if block.ordered else 0
    for item in block.items:
        nested = nested_ordered(item)
        if nested is not None:
            count += len(nested.items)
    return count


def split_items(section: Section) -> list[tuple[str, Item]] | None:
    """A section that is one bullet list of incidents, each item a bold lead and a numbered
    procedure: one playbook per item."""
    lists = [b for b in section.blocks if b.kind == "list"]
    if len(lists) != 1 or lists[0].ordered or section.children or len(lists[0].items) < 2:
        return None
    found: list[tuple[str, Item]] = []
    for item in lists[0].items:
        nested = nested_ordered(item)
        if nested is None or len(nested.items) < 2 or not item.blocks or item.blocks[0].kind != "para":
            return None
        title, _ = first_sentence(item.blocks[0].text)
        found.append((title, item))
    return found


def procedure_sections(root: Section, alert_ids: set[int]) -> list[Section]:
    """Top-most procedure sections outside the alert sections."""
    found: list[Section] = []

    def has_alerts(section: Section) -> bool:
        return any(id(s) in alert_ids for s in section.walk())

    def visit(section: Section) -> None:
        if id(section) in alert_ids:
            return
        if section.level and not has_alerts(section) and is_procedure(section):
            found.append(section)
            return
        for child in section.children:
            visit(child)

    visit(root)
    return found
