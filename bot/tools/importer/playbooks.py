"""Drafts as playbook data: names, match or on_demand, summary with where it came from,
steps, graphs, diagnostics, remediations and links, always valid for the Playbook model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from bot.core.playbooks import Playbook, Step
from bot.tools.importer.alert_drafts import alert_drafts
from bot.tools.importer.document import Document, parse_document
from bot.tools.importer.drafts import Draft, on_demand_drafts
from bot.tools.importer.steps import step_dict
from bot.tools.importer.text import WORD, fit_template, fit_title, kebab, slugify
from bot.tools.importer.validation import is_valid

MAX_STEPS = 40
_DIAGNOSTIC_KEYS = ("kind", "title", "namespace", "target", "target_kind", "container", "tail_lines")
_REMEDIATION_KEYS = ("action", "title", "why", "approval", "params")
_LISTS = ("steps", "graphs", "diagnostics", "remediations", "links")


def import_playbooks(markdown: str, source_name: str = "runbook.md") -> list[dict[str, Any]]:
    """Draft playbooks (plain data, ready for YAML) from a markdown or plain-text runbook."""
    doc = parse_document(markdown, source_name)
    drafts = alert_drafts(doc)
    if not drafts:
        drafts = on_demand_drafts(doc)
    playbooks: list[dict[str, Any]] = []
    names: set[str] = set()
    for draft in drafts:
        name = _unique(_base_name(doc, draft), names)
        names.add(name)
        playbooks.append(_playbook(doc, draft, name))
    return playbooks


def _base_name(doc: Document, draft: Draft) -> str:
    base = kebab(draft.alerts[0]) if draft.alerts else slugify(" ".join(WORD.findall(draft.title)[:6]))
    base = base or "playbook"
    if base.split("-")[0] != doc.system.split("-")[0]:
        base = f"{doc.system}-{base}"  # prefixed with the system unless it already names it
    return slugify(base, 59) or "playbook"


def _unique(base: str, taken: set[str]) -> str:
    name, n = base, 2
    while name in taken:
        name = f"{base}-{n}"
        n += 1
    return name


def _playbook(doc: Document, draft: Draft, name: str) -> dict[str, Any]:
    for step in draft.steps[:MAX_STEPS]:
        draft.collector.scan_step(step)
    data: dict[str, Any] = {"name": name, "title": fit_title(draft.title), "system": doc.system}
    if draft.on_demand:
        data["on_demand"] = True
    else:
        data["match"] = {"alertname": draft.alerts[0] if len(draft.alerts) == 1 else list(draft.alerts)}
    if draft.severity is not None:
        data["severity"] = draft.severity.value
    data["summary"] = _summary(doc, draft)
    steps = [step_dict(s) for s in draft.steps[:MAX_STEPS]]
    steps = [s for s in steps if is_valid(Step, s)]
    if steps:
        data["steps"] = steps
    col = draft.collector
    if col.graphs:
        data["graphs"] = col.graphs
    if draft.graph_alert_expr and not draft.on_demand:
        data["graph_alert_expr"] = True
    if col.diagnostics:
        data["diagnostics"] = [_ordered(d, _DIAGNOSTIC_KEYS) for d in col.diagnostics]
    if col.remediations:
        data["remediations"] = [_ordered(r, _REMEDIATION_KEYS) for r in col.remediations]
    if col.links:
        data["links"] = col.links
    return _repair(data)


def _summary(doc: Document, draft: Draft) -> str:
    """The draft's summary paragraphs, then where the draft comes from (always kept)."""
    origin = f"Draft imported from {doc.source_name}"
    if draft.sources:
        origin += " (" + "; ".join(dict.fromkeys(s for s in draft.sources if s)) + ")"
    if len(draft.steps) > MAX_STEPS:
        origin += f"; {len(draft.steps) - MAX_STEPS} more steps are in the runbook"
    origin = fit_template(origin + ".", 600)
    body = fit_template(
        "\n\n".join(dict.fromkeys(p.strip() for p in draft.summary if p.strip())), 3000 - len(origin) - 2
    )
    return f"{body}\n\n{origin}" if body else origin


def _ordered(data: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: data[k] for k in keys if k in data} | {k: v for k, v in data.items() if k not in keys}


def _repair(data: dict[str, Any]) -> dict[str, Any]:
    """Drop whatever still fails the Playbook model (a safety net; normally nothing)."""
    for _ in range(50):
        try:
            Playbook.model_validate(data)
            return data
        except ValidationError as exc:
            errors = exc.errors()
            message = str(exc)
        loc = errors[0]["loc"]
        key = loc[0] if loc else None
        if key in _LISTS and len(loc) > 1:
            index = loc[1]
            if isinstance(key, str) and isinstance(index, int) and index < len(data.get(key, [])):
                del data[key][index]
                if not data[key]:
                    del data[key]
                continue
        if key in ("summary", "severity", "graph_alert_expr") and isinstance(key, str):
            data.pop(key, None)
            continue
        if key == "title":
            data["title"] = "Imported playbook"
            continue
        raise ValueError(f"cannot build a valid playbook {data.get('name')!r}: {message}")
    return data
