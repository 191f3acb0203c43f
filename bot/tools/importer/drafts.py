"""Draft playbooks: a section's units become a draft's steps, summary, graphs,
remediations and links. Runbooks that name no alert give on-demand drafts, one per
procedure section."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.core.incident import Severity
from bot.tools.importer.collector import Collector
from bot.tools.importer.document import Document, doc_title
from bot.tools.importer.markdown import Block, Item
from bot.tools.importer.procedures import nested_ordered, procedure_sections, split_items
from bot.tools.importer.rules import is_rule_code
from bot.tools.importer.sections import (
    NOTE_LABELS,
    SKIP_LABELS,
    SUMMARY_LABELS,
    Section,
    Unit,
    norm_label,
    section_units,
    top_scope,
)
from bot.tools.importer.steps import StepDraft, item_steps, unit_steps
from bot.tools.importer.text import MD_LINK, clean_title, first_sentence, strip_emphasis


@dataclass
class Draft:
    title: str
    alerts: list[str]
    collector: Collector
    on_demand: bool = False
    severity: Severity | None = None
    summary: list[str] = field(default_factory=list)
    steps: list[StepDraft] = field(default_factory=list)
    graph_alert_expr: bool = False
    has_rule: bool = False
    sources: list[str] = field(default_factory=list)  # the runbook sections it comes from


def new_draft(doc: Document, title: str, alerts: list[str], *, on_demand: bool = False) -> Draft:
    return Draft(title=title, alerts=list(alerts), collector=Collector(doc.default_ns), on_demand=on_demand)


def fill(draft: Draft, section: Section, skip: set[int], *, heading: str) -> None:
    """Add a section's steps, summary, graphs, remediations and links to a draft."""
    merged = bool(draft.steps)
    for unit in section_units(section, skip):
        label = norm_label(unit.label) if unit.label is not None else None
        if label in SKIP_LABELS:
            _links(draft, unit.blocks)
        elif label in SUMMARY_LABELS:
            _add_summary_unit(draft, unit, heading)
        elif label in NOTE_LABELS:
            _add_note_unit(draft, unit)
        else:
            steps, summary = unit_steps(unit, heading)
            draft.summary += [s for s in summary if s.strip()]
            if merged and heading:  # a second section in the same draft: say where steps come from
                for step in steps:
                    step.title = f"{heading}: {step.title}"
            draft.steps += steps
            _links(draft, unit.blocks)
    if heading:
        draft.sources.append(heading)


def _add_summary_unit(draft: Draft, unit: Unit, heading: str) -> None:
    """A Background/Impact/... unit: its text goes into the summary, its queries and
    commands still give graphs and proposals."""
    text = "\n\n".join(b.markdown() for b in unit.blocks if not is_rule_code(b))
    if text.strip():
        draft.summary.append(f"**{clean_title(unit.label or '')}**\n{text}")
    _scan_blocks(draft, unit.blocks, clean_title(unit.label or "") or heading)


def _add_note_unit(draft: Draft, unit: Unit) -> None:
    """A Notes/Causes/... unit: one step with all of it."""
    text = "\n\n".join(b.markdown() for b in unit.blocks if b.kind != "code")
    codes = [(b.lang, b.text) for b in unit.blocks if b.kind == "code" and not is_rule_code(b)]
    if text.strip() or codes:
        draft.steps.append(StepDraft(clean_title(unit.label or "Notes"), text, codes))


def _scan_blocks(draft: Draft, blocks: list[Block], title: str) -> None:
    for block in blocks:
        if block.kind == "code" and not is_rule_code(block):
            draft.collector.scan_step(StepDraft(title, "", [(block.lang, block.text)]))
        elif block.kind in ("para", "list", "table"):
            draft.collector.scan_step(StepDraft(title, block.markdown()))


def _links(draft: Draft, blocks: list[Block]) -> None:
    for block in blocks:
        if block.kind != "code":
            for m in MD_LINK.finditer(block.markdown()):
                draft.collector.link(strip_emphasis(m.group(1)), m.group(2))


def on_demand_drafts(doc: Document) -> list[Draft]:
    """One draft per procedure section (or per incident of a section listing several);
    with none, the whole document as one draft if it has steps."""
    drafts: list[Draft] = []
    for section in procedure_sections(doc.root, set()):
        split = split_items(section)
        if split is not None:
            drafts += [_item_draft(doc, section, title, item) for title, item in split]
            continue
        draft = new_draft(doc, clean_title(section.title), [], on_demand=True)
        fill(draft, section, set(), heading=clean_title(section.title))
        drafts.append(draft)
    if not drafts:
        scope = top_scope(doc.root)
        draft = new_draft(doc, doc_title(doc), [], on_demand=True)
        fill(draft, scope, set(), heading=doc_title(doc))
        if draft.steps:
            drafts.append(draft)
    return drafts


def _item_draft(doc: Document, section: Section, title: str, item: Item) -> Draft:
    """The draft of one incident item: its numbered procedure as steps, the rest summary."""
    draft = new_draft(doc, title, [], on_demand=True)
    first = item.blocks[0].text if item.blocks else ""
    _, rest = first_sentence(first)
    if rest.strip():
        draft.summary.append(rest)
    nested = nested_ordered(item)
    assert nested is not None
    for sub in nested.items:
        draft.steps += item_steps(sub)
    for block in item.blocks[1:]:
        if block is not nested:
            draft.summary.append(block.markdown())
    draft.sources.append(f"{clean_title(section.title)}: {title}")
    return draft
