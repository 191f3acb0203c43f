"""What a playbook's steps mention besides their text: graphs of PromQL queries,
remediation proposals and diagnostics from ``kubectl`` commands, and links, each checked
against its model, deduplicated and capped."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.core.playbooks import Diagnostic, Graph, Link, split_threshold
from bot.core.templating import escape_template
from bot.tools.importer.kubectl import kubectl_proposal
from bot.tools.importer.placeholders import fill_parameters, promql_template
from bot.tools.importer.promql import PROMQL_LANGS, guess_unit, promql_like, promql_queries
from bot.tools.importer.shell import SHELL_LANGS, is_command, shell_commands
from bot.tools.importer.steps import StepDraft, step_sources
from bot.tools.importer.text import clean_title, fit_template, fit_title, shorten
from bot.tools.importer.validation import is_valid

MAX_GRAPHS = 12
MAX_REMEDIATIONS = 15
MAX_DIAGNOSTICS = 10
MAX_LINKS = 10


@dataclass
class Collector:
    """Graphs, remediations and diagnostics of one playbook, deduplicated."""

    default_ns: str
    graphs: list[dict[str, Any]] = field(default_factory=list)
    remediations: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def _once(self, kind: str, key: Any) -> bool:
        token = kind + json.dumps(key, sort_keys=True, default=str)
        if token in self._seen:
            return False
        self._seen.add(token)
        return True

    def graph(self, title: str, query: str) -> bool:
        """Add a graph of `query` (a trailing ``> number`` becomes the threshold); False when
        it is not a safe PromQL template, a duplicate, or over the limit."""
        if len(self.graphs) >= MAX_GRAPHS:
            return False
        expr, threshold = split_threshold(query.strip())
        template = promql_template(expr)
        if template is None or ("graph" + template) in self._seen:
            return False
        data: dict[str, Any] = {"title": fit_title(title or "Graph"), "query": template}
        unit = guess_unit(template)
        if unit:
            data["unit"] = unit
        if threshold is not None:
            data["threshold"] = threshold
        if not is_valid(Graph, data):
            return False
        self._seen.add("graph" + template)
        self.graphs.append(data)
        return True

    def remediation(self, data: dict[str, Any]) -> None:
        if len(self.remediations) < MAX_REMEDIATIONS and self._once("rem", (data["action"], data["params"])):
            self.remediations.append(data)

    def diagnostic(self, data: dict[str, Any]) -> None:
        key = (data["kind"], data["namespace"], data.get("target"))
        if len(self.diagnostics) < MAX_DIAGNOSTICS and is_valid(Diagnostic, data) and self._once("diag", key):
            self.diagnostics.append(data)

    def link(self, title: str, url: str) -> None:
        data = {"title": fit_title(title), "url": escape_template(url)}
        if len(self.links) < MAX_LINKS and is_valid(Link, data) and self._once("link", url):
            self.links.append(data)

    def scan_step(self, step: StepDraft) -> None:
        """Graphs from the step's PromQL, proposals from its kubectl commands."""
        codes, inline = step_sources(step)
        promql_seen = 0
        for lang, body in codes:
            language = lang.lower()
            if _is_promql_code(language, body):
                queries = promql_queries(body)
                for comment, query in queries:
                    promql_seen += 1
                    title = comment or step.title
                    if not comment and len(queries) > 1:
                        title = f"{step.title} ({promql_seen})"
                    self.graph(title, query)
            elif language in SHELL_LANGS:
                for command in shell_commands(body):
                    self.command(command, step.title)
        for span in inline:
            if span.startswith(("kubectl ", "oc ")):
                self.command(span, step.title)
            elif promql_like(span):
                self.graph(step.title, span)

    def command(self, command: str, context: str) -> None:
        result = kubectl_proposal(command, default_namespace=self.default_ns)
        if result is None:
            return
        if result.get("kind"):
            self.diagnostic(result)
            return
        why = fit_template(
            f"From the runbook ({shorten(clean_title(context), 80)}): `{' '.join(command.split())}`.", 2000
        )
        fill = [p for v in result["params"].values() if isinstance(v, str) for p in fill_parameters(v)]
        notes = [str(result.get("why") or "")]
        if fill:
            names = ", ".join("$" + name for name in dict.fromkeys(fill))
            notes.append(
                escape_template(
                    f"Fill in before use: {names} (the runbook left these to the operator; no alert label has that name)."
                )
            )
        result["why"] = " ".join([why, *(n for n in notes if n)])
        self.remediation(result)


def _is_promql_code(language: str, body: str) -> bool:
    """A PromQL block: labelled so, or unlabelled (or labelled shell, as runbooks often
    label whatever is pasted into a console) with queries and no commands."""
    if language in PROMQL_LANGS:
        return True
    lines = [x for x in body.splitlines() if x.strip() and not x.strip().startswith("#")]
    return (
        language in SHELL_LANGS
        and bool(lines)
        and all(promql_like(x) or not is_command(x) for x in lines)
        and any(promql_like(x) for x in lines)
    )
