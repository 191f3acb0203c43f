"""Label selectors (string and LabelSelector objects) and field selectors."""

from __future__ import annotations

import re
from typing import Any

from sandbox.kubernetes.errors import bad_request

JSON = dict[str, Any]


def _lookup(obj: Any, dotted: str) -> Any:
    node = obj
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def field_selector_matches(obj: JSON, selector: str | None) -> bool:
    if not selector:
        return True
    for raw_term in selector.split(","):
        term = raw_term.strip()
        if not term:
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            negate = True
        elif "==" in term:
            key, value = term.split("==", 1)
            negate = False
        elif "=" in term:
            key, value = term.split("=", 1)
            negate = False
        else:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        actual = _lookup(obj, key.strip())
        actual_text = (
            "" if actual is None else str(actual).lower() if isinstance(actual, bool) else str(actual)
        )
        if (actual_text == value.strip()) == negate:
            return False
    return True


def _split_selector(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def label_selector_matches(labels: dict[str, str] | None, selector: str | None) -> bool:
    if not selector:
        return True
    labels = labels or {}
    for term in _split_selector(selector):
        match = re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term)
        if match:
            key, op, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
            if (op == "in") != (labels.get(key) in values):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def selector_matches(selector: JSON | None, labels: dict[str, str] | None) -> bool:
    """A LabelSelector object (matchLabels + matchExpressions) against labels."""
    if not selector:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def selector_to_string(selector: JSON | None) -> str:
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = expr.get("operator")
        if op == "In":
            parts.append(f"{expr['key']} in ({','.join(expr.get('values') or [])})")
        elif op == "NotIn":
            parts.append(f"{expr['key']} notin ({','.join(expr.get('values') or [])})")
        elif op == "Exists":
            parts.append(expr["key"])
        elif op == "DoesNotExist":
            parts.append(f"!{expr['key']}")
    return ",".join(parts)
