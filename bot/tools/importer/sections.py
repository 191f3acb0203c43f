"""A runbook as a tree of sections (one per heading), and a section's units: the blocks
under each sub-heading or bold label ("**Diagnosis**", "Resolution:")."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from bot.tools.importer.markdown import Block
from bot.tools.importer.text import clean_title, phrase_set, word_set


@dataclass(eq=False)
class Section:
    title: str
    level: int
    blocks: list[Block] = field(default_factory=list)
    children: list[Section] = field(default_factory=list)

    def walk(self) -> Iterator[Section]:
        yield self
        for child in self.children:
            yield from child.walk()


def build_sections(blocks: list[Block]) -> Section:
    """The section tree of a document's blocks; the root (level 0) holds what precedes the
    first heading."""
    root = Section("", 0)
    stack = [root]
    for block in blocks:
        if block.kind == "heading":
            section = Section(block.text, block.level)
            while len(stack) > 1 and stack[-1].level >= block.level:
                stack.pop()
            stack[-1].children.append(section)
            stack.append(section)
        else:
            stack[-1].blocks.append(block)
    return root


def first_heading(root: Section) -> str | None:
    return next((s.title for s in root.walk() if s.level and s.title.strip()), None)


def top_scope(section: Section) -> Section:
    """The document's only top section (its title heading) when the root holds nothing else."""
    return section.children[0] if not section.blocks and len(section.children) == 1 else section


# --------------------------------------------------------------------------- labels

_KNOWN_LABELS = word_set(
    """
    symptoms symptom impact cause causes diagnosis diagnose resolution solution solutions mitigation
    investigation verification verify remediation fix workaround notes note description summary
    overview context action actions escalation prevention recovery rollback triage response
    """
)
SUMMARY_LABELS = phrase_set(
    """
    background, what it means, alert, alert details, impact, description, context, meaning, details,
    purpose, summary, about, overview, symptom, when to use, symptoms
    """
)
NOTE_LABELS = phrase_set(
    """
    notes, note, common causes, root cause, known causes, causes, possible causes, probable causes,
    root causes, tips
    """
)
SKIP_LABELS = phrase_set(
    """
    reference, contacts, metadata, owners, table of contents, related, change log, revision history,
    emergency contacts, related runbooks, owner, see also, related links, links, changelog, history,
    contents, references
    """
)
_PROC_LABELS = phrase_set(
    """
    response, solution, workaround, fix, verification, resolution, remediation, rollback,
    investigation, triage, immediate actions, solutions, mitigation, diagnosis, diagnose,
    symptoms, immediate, recovery
    """
)
_ALL_LABELS = _KNOWN_LABELS | SUMMARY_LABELS | NOTE_LABELS | SKIP_LABELS | _PROC_LABELS


@dataclass
class Unit:
    """Blocks under one heading or bold label (label None: a section's own introduction)."""

    label: str | None
    blocks: list[Block]


def norm_label(label: str | None) -> str:
    return re.sub(r"\s+", " ", clean_title(label or "").lower())


def procedure_label(label: str) -> bool:
    norm = norm_label(label)
    return norm in _PROC_LABELS or norm.split(" ")[0] in _PROC_LABELS


def label_of(block: Block) -> tuple[str, Block | None] | None:
    """(label, the rest of the paragraph if any) when a paragraph starts with a label."""
    if block.kind != "para" or not block.text.strip():
        return None
    lines = block.text.splitlines()
    first = lines[0].strip()
    m = re.fullmatch(r"(?:\*\*|__)(?P<l>[^*_].*?)(?:\*\*|__)\s*:?", first)
    if m and len(lines) == 1:
        return m["l"].strip().rstrip(":").strip(), None
    m = re.fullmatch(r"(?P<l>[A-Z][\w /&()'-]{1,40}):", first)
    if m and len(lines) == 1 and (norm_label(m["l"]) in _ALL_LABELS or procedure_label(m["l"])):
        return m["l"].strip(), None
    m = re.fullmatch(r"(?:\*\*|__)(?P<l>[^*_].*?):?(?:\*\*|__):?\s+(?P<rest>\S.*)", first) or re.fullmatch(
        r"(?P<l>[A-Z][A-Za-z ]{2,30}):\s+(?P<rest>\S.*)", first
    )
    if m and norm_label(m["l"]) in _KNOWN_LABELS:
        rest_lines = [m["rest"], *lines[1:]]
        return m["l"].strip().rstrip(":"), Block("para", rest_lines, text="\n".join(rest_lines))
    return None


def section_units(section: Section, skip: set[int], depth: int = 0) -> list[Unit]:
    """The units of a section and of its sub-sections (except those whose id is in `skip`)."""
    units: list[Unit] = []
    current = Unit(section.title if depth else None, [])
    for block in section.blocks:
        labelled = label_of(block)
        if labelled is not None:
            if current.blocks:
                units.append(current)
            current = Unit(labelled[0], [labelled[1]] if labelled[1] else [])
        else:
            current.blocks.append(block)
    if current.blocks:
        units.append(current)
    for child in section.children:
        if id(child) not in skip:
            units += section_units(child, skip, depth + 1)
    return units
