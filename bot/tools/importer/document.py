"""A runbook parsed once: front matter, alerting rules, the section tree (plain text
converted to markdown first), the system its playbooks belong to and the default
namespace of its commands."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.tools.importer.alert_names import heading_alert
from bot.tools.importer.front_matter import fm_str, front_matter
from bot.tools.importer.markdown import parse_blocks
from bot.tools.importer.plaintext import is_markdown, plain_to_markdown
from bot.tools.importer.rules import Rule, alert_rules
from bot.tools.importer.sections import Section, build_sections, first_heading
from bot.tools.importer.text import (
    DNS_LABEL,
    WORD,
    camel_words,
    clean_title,
    slugify,
    strip_emphasis,
    word_set,
)

_GENERIC_WORDS = word_set(
    """
    runbook runbooks operations operational ops manual guide monitoring playbook playbooks handbook
    documentation docs the sre oncall on call procedures procedure alert alerts alerting incident
    response troubleshooting complete for and of md txt markdown readme
    """
)


@dataclass
class Document:
    source_name: str
    front: dict[str, Any]
    root: Section
    system: str
    default_ns: str
    rules: list[Rule]


def parse_document(markdown: str, source_name: str) -> Document:
    front, body = front_matter(markdown.replace("\r\n", "\n"))
    body = body.expandtabs(4)
    rules = alert_rules(body.splitlines())
    if not is_markdown(body) and not front:
        body = plain_to_markdown(body)
    root = build_sections(parse_blocks(body.splitlines()))
    ns = fm_str(front, "namespace", "k8s_namespace", "kubernetes_namespace")
    default_ns = ns.lower() if ns and DNS_LABEL.fullmatch(ns.lower()) and len(ns) <= 63 else "default"
    system = _system_slug(front, root, source_name, body)
    return Document(source_name, front, root, system, default_ns, rules)


def doc_title(doc: Document) -> str:
    title = fm_str(doc.front, "title", "name")
    if title:
        return title
    first = first_heading(doc.root)
    return clean_title(first) if first else Path(doc.source_name).stem


def _system_slug(front: dict[str, Any], root: Section, source_name: str, body: str) -> str:
    """From the front matter, else the first heading without generic words ("SkillMeat
    Monitoring Runbook" -> skillmeat), else the common prefix of the deployments the
    runbook names (birthday-scheduler-api/-worker -> birthday-scheduler), else the file name."""
    candidates = [fm_str(front, "system", "service", "app", "application", "component", "product")]
    first = first_heading(root)
    if first and heading_alert(first).names:
        words = camel_words(heading_alert(first).names[0])
        first = words[0] if words else None  # "# KubePodCrashLooping" -> kube
    candidates.append(first)
    deployments = re.findall(
        r"\b(?:deployments?|deploy)(?:\.apps)?[/ ]+([a-z0-9][a-z0-9.-]*[a-z0-9])\b", body
    )
    prefixes = Counter(d.rsplit("-", 1)[0] for d in deployments if "-" in d)
    if prefixes and prefixes.most_common(1)[0][1] >= 2:
        candidates.append(prefixes.most_common(1)[0][0])
    candidates.append(Path(source_name).stem)
    for candidate in candidates:
        slug = _candidate_slug(candidate) if candidate else ""
        if slug:
            return slug
    return "runbook"


def _candidate_slug(candidate: str) -> str:
    """Up to four words of `candidate` that are neither generic, numbers nor hashes."""
    words = [
        w
        for w in WORD.findall(strip_emphasis(candidate).lower())
        if w not in _GENERIC_WORDS and not (w.isdigit() or (len(w) >= 8 and re.fullmatch(r"[0-9a-f]+", w)))
    ]
    return slugify("-".join(words[:4]))
