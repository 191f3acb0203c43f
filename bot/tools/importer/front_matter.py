"""YAML front matter (``---`` ... ``---`` at the top of a runbook): title, system,
namespace, severity and the alerts the whole document is about."""

from __future__ import annotations

import re
from typing import Any

import yaml

from bot.tools.importer.text import IDENT

_FRONT = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_ALERT_KEYS = ("alert", "alerts", "alertname", "alert_name", "alertnames")


def front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(front matter with lower-case keys, the rest of the text); ({}, text) when there is
    none or it is not a YAML mapping."""
    m = _FRONT.match(text)
    if m is None:
        return {}, text
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return {}, text
    if not isinstance(data, dict):
        return {}, text
    return {str(k).lower(): v for k, v in data.items()}, text[m.end() :]


def fm_str(front: dict[str, Any], *keys: str) -> str | None:
    """The first of `keys` whose value is a non-empty scalar, as text."""
    for key in keys:
        value = front.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def fm_alerts(front: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for key in _ALERT_KEYS:
        value = front.get(key)
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str):
                parts = [p.strip().strip("`") for p in item.split(",")]
                names += [p for p in parts if IDENT.fullmatch(p)]
    return list(dict.fromkeys(names))
