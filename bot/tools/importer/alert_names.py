"""Alert names (and severities, expressions) a runbook gives in text: headings naming an
alert (``### HighErrorRate``, ``## Alert: X``, ``#### 1. ServiceDown (P0)``) and
``**Alert**: Name`` / ``Severity: P1`` lines or two-column table rows."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from bot.core.incident import Severity
from bot.core.policy import map_severity
from bot.tools.importer.markdown import Block
from bot.tools.importer.promql import promql_like
from bot.tools.importer.text import camel_words, strip_emphasis, word_set

# CamelCase product names that are not alert names
_DENY_CAMEL = word_set(
    """
    postgresql postgres mysql mongodb github gitlab rabbitmq pagerduty opsgenie opensearch
    elasticsearch javascript typescript devops fastapi graphql oauth launchdarkly cloudwatch
    elasticache memorystore alertmanager grafana prometheus kubernetes openai openfeature argocd
    redis nodejs linkedin youtube iphone macos ios dynamodb bigquery cloudflare jenkins circleci
    sonarqube statuspage servicenow victoriametrics cockroachdb clickhouse
    """
)
_ALERT_LINE = re.compile(
    r"^(?:alert(?:\s*name)?|alertname|alert\s+rule|prometheus\s+alert|alerts)\s*[:：]\s*(?P<value>.+)$",
    re.IGNORECASE,
)
_SEVERITY_LINE = re.compile(r"^(?:severity|priority|sev)\s*[:：]\s*(?P<value>.+)$", re.IGNORECASE)
_TABLE_RULE = re.compile(r":?-+:?")


@dataclass
class AlertInfo:
    names: list[str] = field(default_factory=list)
    severity: Severity | None = None
    expressions: list[str] = field(default_factory=list)
    descriptions: list[str] = field(default_factory=list)


def camel_alert(name: str) -> bool:
    """A name that looks like an alert's: ``HighErrorRate``, ``disk_full``."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or len(name) < 5:
        return False
    if name.lower() in _DENY_CAMEL or not re.search(r"[a-z]", name):
        return False
    if "_" in name:
        return len([p for p in name.split("_") if p]) >= 2
    return len(camel_words(name)) >= 2 and re.search(r"[A-Z]", name[1:]) is not None


def _names_in(value: str, *, explicit: bool) -> list[str]:
    """Alert names in a heading/line value: one name or a comma/slash separated list."""
    parts = [p.strip().strip("`*_\"'").strip() for p in re.split(r"\s*(?:,|/|\bor\b|\band\b|&)\s*", value)]
    parts = [p for p in parts if p]
    if not parts:
        return []
    ok = all(
        (camel_alert(p) or (explicit and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_:.-]{2,}", p) is not None))
        for p in parts
    )
    return list(dict.fromkeys(parts)) if ok else []


def severity_of(value: str) -> Severity | None:
    """The first word of `value` that names a severity (``critical``, ``P1``, ``SEV2`` ...)."""
    for word in re.split(r"[\s|,;()/]+", strip_emphasis(value).replace("`", " ")):
        if not word or word == "-":
            continue
        found = map_severity(word)
        if found is not None:
            return found
    return None


def heading_alert(title: str) -> AlertInfo:
    """The alert names (and a severity in trailing parentheses) of a heading."""
    info = AlertInfo()
    text = strip_emphasis(title)
    paren = re.search(r"\(([^()]*)\)\s*$", text)
    if paren:
        info.severity = severity_of(paren.group(1))
        text = text[: paren.start()].strip()
    text = re.sub(r"^(?:\d+(?:\.\d+)*[.)]?)\s+", "", text).strip()
    prefixed = re.match(r"^(?:alert(?:\s*name)?|alertname)\s*[:\-–—]\s*(.+)$", text, re.IGNORECASE)
    if prefixed:
        info.names = _names_in(prefixed.group(1), explicit=True)
    else:
        candidate = text.strip().strip("`").strip()
        if camel_alert(candidate):
            info.names = [candidate]
    return info


def _text_lines(blocks: Iterable[Block]) -> Iterator[str]:
    """Every text line of paragraphs and list items (recursively), not code; the rows of
    two-column (key | value) tables as ``key: value``."""
    for block in blocks:
        if block.kind == "para":
            yield from block.text.splitlines()
        elif block.kind == "list":
            for item in block.items:
                yield from _text_lines(item.blocks)
        elif block.kind == "table":
            yield from _table_pairs(block)


def _table_pairs(table: Block) -> Iterator[str]:
    rows = [[c.strip() for c in row.strip().strip("|").split("|")] for row in table.text.splitlines()]
    header = len(rows) > 1 and all(_TABLE_RULE.fullmatch(c) for c in rows[1])
    for row in rows[2:] if header else rows:
        if len(row) == 2 and row[0] and not _TABLE_RULE.fullmatch(row[0]):
            yield f"{row[0]}: {row[1]}"


def _meta_line(line: str) -> str:
    s = re.sub(r"^(?:[-*+•]|\d+[.)])\s+", "", line.strip())
    return s.replace("**", "").replace("__", "").strip()


def line_alerts(blocks: Iterable[Block]) -> AlertInfo:
    """What ``Alert: ...`` and ``Severity: ...`` lines of the blocks say. An alert line whose
    value is a query rather than names gives an expression."""
    info = AlertInfo()
    for raw in _text_lines(blocks):
        for line in re.split(r"\s+\|\s+", _meta_line(raw)):
            m = _ALERT_LINE.match(line.strip())
            if m:
                _add_alert_value(info, m["value"].strip())
                continue
            s = _SEVERITY_LINE.match(line.strip())
            if s and info.severity is None:
                info.severity = severity_of(s["value"])
    return info


def _add_alert_value(info: AlertInfo, value: str) -> None:
    inner = value[1:-1] if value.startswith("`") and value.endswith("`") else value
    names = _names_in(value, explicit=True) if "`" not in inner else []
    if names:
        info.names += [x for x in names if x not in info.names]
    elif promql_like(inner):
        info.expressions.append(inner.strip())
        info.descriptions.append(value)
    else:
        info.descriptions.append(value)
