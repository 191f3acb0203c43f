"""Prometheus alerting rules (``- alert: Name`` with ``expr``, ``for``, ``labels``,
``annotations``) wherever a runbook quotes them, fenced or not."""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from bot.tools.importer.markdown import FENCE_OPEN, Block
from bot.tools.importer.text import dedent_lines, indent_width

_RULE_START = re.compile(r"^(?P<indent>[ ]*)(?P<dash>-[ ]+)?alert:[ \t]*(?P<name>\S.*?)[ \t]*$")


@dataclass
class Rule:
    name: str
    expr: str
    duration: str
    severity: str
    annotations: dict[str, str]


def alert_rules(lines: list[str]) -> list[Rule]:
    rules: list[Rule] = []
    for i, line in enumerate(lines):
        m = _RULE_START.match(line)
        if m is None:
            continue
        rule = _rule(_rule_lines(lines, i, m))
        if rule is not None:
            rules.append(rule)
    return rules


def _rule_lines(lines: list[str], i: int, m: re.Match[str]) -> list[str]:
    """The YAML of the rule whose ``alert:`` key is on line `i`: up to the next rule or the
    first line indented less than its keys."""
    key_col = len(m["indent"]) + (len(m["dash"]) if m["dash"] else 0)
    body = [" " * key_col + lines[i][key_col:]]
    for cur in lines[i + 1 :]:
        if cur.strip():
            if indent_width(cur) < key_col or FENCE_OPEN.match(cur):
                break
            if indent_width(cur) == key_col and re.match(r"\s*(?:alert|record):", cur):
                break
        body.append(cur)
    return body


def _rule(body: list[str]) -> Rule | None:
    try:
        data = yaml.safe_load("\n".join(dedent_lines(body)))
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        return None
    name = str(data.get("alert", "")).strip().strip("\"'")
    if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_:.-]*", name):
        return None
    labels = data.get("labels") if isinstance(data.get("labels"), dict) else {}
    annotations = data.get("annotations") if isinstance(data.get("annotations"), dict) else {}
    assert isinstance(labels, dict) and isinstance(annotations, dict)
    return Rule(
        name=name,
        expr=str(data.get("expr", "") or "").strip(),
        duration=str(data.get("for", "") or "").strip(),
        severity=str(labels.get("severity", "") or "").strip(),
        annotations={str(k): str(v) for k, v in annotations.items() if v is not None},
    )


def is_rule_code(block: Block) -> bool:
    return block.kind == "code" and re.search(r"^\s*-?\s*alert:\s*\S", block.text, re.MULTILINE) is not None


def rule_summary(rule: Rule) -> str:
    """The rule's expression and duration, and its summary/description annotations."""
    parts = []
    expr = re.sub(r"\s+", " ", rule.expr)
    if expr:
        parts.append(
            f"Rule `{rule.name}`: `{expr}`" + (f" for {rule.duration}" if rule.duration else "") + "."
        )
    for key in ("summary", "description", "message"):
        value = rule.annotations.get(key, "").strip()
        if value:
            parts.append(value)
    return "\n".join(parts)
