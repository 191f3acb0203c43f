"""Drafts matched on alerts: one per alerting rule and per section naming an alert
(heading, ``Alert:`` line, front matter), plus the procedure sections whose titles
resemble an alert's name (``Runbook 1: Database Connection Pool Exhaustion`` for
``DatabaseConnectionPoolExhausted``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.core.policy import map_severity
from bot.tools.importer.alert_names import AlertInfo, camel_alert, heading_alert, line_alerts, severity_of
from bot.tools.importer.document import Document, doc_title
from bot.tools.importer.drafts import Draft, fill, new_draft
from bot.tools.importer.front_matter import fm_alerts, fm_str
from bot.tools.importer.procedures import procedure_sections
from bot.tools.importer.rules import Rule, rule_summary
from bot.tools.importer.sections import Section, top_scope
from bot.tools.importer.text import camel_words, clean_title, stem, strip_emphasis, word_set

_TOKEN_STOP = word_set(
    """
    alert alerts problem issue issues runbook the a an of in on and for to is are not scenario
    procedure common
    """
)
_RULE_LINKS = (("runbook_url", "Runbook"), ("dashboard_url", "Dashboard"), ("dashboard", "Dashboard"))


class _AlertDrafts:
    """The drafts of a document's alerts: the names met together share one draft."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.drafts: list[Draft] = []
        self.by_name: dict[str, Draft] = {}

    def draft_for(self, names: list[str], title: str) -> Draft:
        existing = next((self.by_name[n] for n in names if n in self.by_name), None)
        if existing is None:
            existing = new_draft(self.doc, title, names)
            self.drafts.append(existing)
        for name in names:
            if name not in existing.alerts:
                existing.alerts.append(name)
            self.by_name[name] = existing
        return existing


def alert_drafts(doc: Document) -> list[Draft]:
    found = _AlertDrafts(doc)
    for rule in doc.rules:
        _add_rule(found.draft_for([rule.name], alert_title([rule.name], "", rule)), rule)
    infos, order = _alert_sections(doc)
    alert_ids = set(infos)
    for section in order:
        _add_alert_section(doc, found, section, infos[id(section)], alert_ids)
    if found.drafts:
        _attach_similar_procedures(doc, found.drafts, alert_ids)
    for draft in found.drafts:
        if not draft.has_rule and not draft.collector.graphs:
            draft.graph_alert_expr = True
    return found.drafts


def alert_title(names: list[str], heading: str, rule: Rule | None, descriptions: Sequence[str] = ()) -> str:
    """The heading when it is words ("High Error Rate"), else the alert name with the
    rule's summary annotation or the runbook's description of the alert."""
    name = " / ".join(names)
    clean = re.sub(r"\s*\([^()]*\)$", "", clean_title(heading))
    if clean and " " in clean and not re.match(r"(?i)^alert\b", clean):
        return clean if any(n in clean for n in names) else f"{clean} ({name})"
    summary = rule.annotations.get("summary", "").strip() if rule else ""
    summary = summary or next((strip_emphasis(d) for d in descriptions if d.strip()), "")
    return f"{name}: {summary}" if summary else name


def _add_rule(draft: Draft, rule: Rule) -> None:
    """The rule's severity, summary, expression graph and links (the first rule of a name)."""
    if draft.has_rule:
        return
    draft.has_rule = True
    severity = map_severity(rule.severity) if rule.severity else None
    draft.severity = draft.severity or severity
    draft.summary.append(rule_summary(rule))
    if rule.expr:
        title = rule.annotations.get("summary", "").strip() or f"{rule.name} expression"
        if not draft.collector.graph(title, re.sub(r"\s+", " ", rule.expr)):
            draft.graph_alert_expr = True
    for key, title in _RULE_LINKS:
        url = rule.annotations.get(key, "").strip()
        if url.startswith(("http://", "https://")):
            draft.collector.link(title, url)


def _alert_sections(doc: Document) -> tuple[dict[int, AlertInfo], list[Section]]:
    """The sections naming alerts, by id and in document order (the root stands for the
    front matter, which names the alerts of the whole document)."""
    infos: dict[int, AlertInfo] = {}
    order: list[Section] = []
    for section in doc.root.walk():
        info = _front_matter_alerts(doc) if section is doc.root else _section_alerts(section)
        if info.names:
            infos[id(section)] = info
            order.append(section)
    scope = top_scope(doc.root)
    if id(doc.root) in infos and scope is not doc.root and id(scope) in infos:
        # front matter names the alert of a document whose only top section names one too
        root_info, inner = infos.pop(id(doc.root)), infos[id(scope)]
        inner.names += [n for n in root_info.names if n not in inner.names]
        inner.severity = inner.severity or root_info.severity
        order.remove(doc.root)
    return infos, order


def _front_matter_alerts(doc: Document) -> AlertInfo:
    severity = severity_of(fm_str(doc.front, "severity", "priority") or "")
    return AlertInfo(names=fm_alerts(doc.front), severity=severity)


def _section_alerts(section: Section) -> AlertInfo:
    """The alerts its heading names, else its ``Alert:`` lines; a severity from either."""
    info = heading_alert(section.title)
    lines = line_alerts(section.blocks)
    if not info.names:
        info.names = lines.names
    info.severity = info.severity or lines.severity
    info.expressions = lines.expressions
    info.descriptions = lines.descriptions
    return info


def _add_alert_section(
    doc: Document, found: _AlertDrafts, section: Section, info: AlertInfo, alert_ids: set[int]
) -> None:
    is_root = section is doc.root
    scope = top_scope(section) if is_root else section
    heading = fm_str(doc.front, "title") if is_root else section.title
    heading = heading or (doc_title(doc) if is_root else "")
    named = next((r for r in doc.rules if r.name in info.names), None)
    draft = found.draft_for(info.names, alert_title(info.names, heading or "", named, info.descriptions))
    draft.severity = draft.severity or info.severity
    for expr in info.expressions:
        draft.collector.graph(f"{info.names[0]} alert expression", expr)
    if is_root:
        description = fm_str(doc.front, "summary", "description")
        if description:
            draft.summary.append(description)
    fill(draft, scope, alert_ids - {id(section)}, heading=clean_title(heading or ""))


def _attach_similar_procedures(doc: Document, drafts: list[Draft], alert_ids: set[int]) -> None:
    """Procedures that name no alert but whose title resembles an alert's name."""
    for section in procedure_sections(doc.root, alert_ids):
        draft = _most_similar(drafts, _tokens(clean_title(section.title)))
        if draft is not None:
            draft.summary.append(f"Runbook: {clean_title(section.title)}.")
            fill(draft, section, alert_ids, heading=clean_title(section.title))


def _most_similar(drafts: list[Draft], tokens: set[str]) -> Draft | None:
    """The draft with an alert name sharing at least two and 60% of its words with `tokens`."""
    best: tuple[float, Draft] | None = None
    for draft in drafts:
        for name in draft.alerts:
            alert_tokens = _tokens(name)
            common = len(tokens & alert_tokens)
            score = common / max(1, len(alert_tokens))
            if common >= 2 and score >= 0.6 and (best is None or score > best[0]):
                best = (score, draft)
    return best[1] if best is not None else None


def _tokens(text: str) -> set[str]:
    words = camel_words(text) if " " not in text and camel_alert(text) else re.findall(r"[A-Za-z]+", text)
    return {stem(w) for w in words if w.lower() not in _TOKEN_STOP and not w.isdigit()}
