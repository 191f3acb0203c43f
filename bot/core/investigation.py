"""The investigator's domain, pure: what a tool call recorded, the findings the model returns
and the rules code (not the model) applies to them, and redaction of everything sent out.

A finding stands only on tool calls that ran and answered: a finding citing none of them is
dropped; one that rests only on context (playbook text, timeline, past incidents) has its
confidence capped; when nothing survives the answer is "not enough evidence", shown as such.
Suggested actions must name an action of our typed vocabulary with valid parameters; the
investigator never runs them, they become ordinary proposals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from bot.core.actions import PARAMS_BY_ACTION, ActionName, ActionParams, action_params

# Confidence of a finding that rests only on indirect evidence (context, not observation).
INDIRECT_CONFIDENCE_CAP = 0.5
MAX_FINDINGS = 8
MAX_ACTIONS = 3
MAX_CLAIM = 600
# The investigator may suggest these; `exec` (commands) and `set_env` (values that may be
# secrets) stay with people.
SUGGESTIBLE: frozenset[ActionName] = frozenset(ActionName) - {ActionName.EXEC, ActionName.SET_ENV}


class Evidence(StrEnum):
    """How close a tool's output is to the system: observations, or context about it."""

    DIRECT = "direct"
    INDIRECT = "indirect"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call as run and recorded: `id` is ours ("c1", "c2", ...), what findings cite."""

    id: str
    tool: str
    arguments: Mapping[str, Any]
    output: str
    ok: bool
    evidence: Evidence
    elapsed_ms: int = 0


@dataclass(frozen=True, slots=True)
class Finding:
    claim: str
    citations: tuple[str, ...]
    confidence: float
    capped: bool = False


@dataclass(frozen=True, slots=True)
class SuggestedAction:
    action: ActionName
    params: ActionParams
    why: str
    citations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What is shown: the findings and suggestions that passed the rules, and what was dropped."""

    findings: tuple[Finding, ...]
    actions: tuple[SuggestedAction, ...]
    not_enough_evidence: bool
    dropped: tuple[str, ...] = ()
    summary: str = ""

    @property
    def abstained(self) -> bool:
        return self.not_enough_evidence or not self.findings


class AnswerError(ValueError):
    """The model's final answer is not the structured JSON asked for."""


def _json_object(text: str) -> dict[str, Any]:
    """The JSON object in a model's answer, tolerating a fenced code block around it."""
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end <= start:
        raise AnswerError("the answer holds no JSON object")
    try:
        value = json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise AnswerError(f"the answer is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise AnswerError("the answer is not a JSON object")
    return value


def _citations(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(dict.fromkeys(str(c) for c in raw if isinstance(c, str | int)))


def _confidence(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return 0.0
    return min(max(float(raw), 0.0), 1.0)


def _finding(raw: object, calls: Mapping[str, ToolCall]) -> Finding | str:
    """A checked finding, or why it was dropped."""
    if not isinstance(raw, dict) or not isinstance(raw.get("claim"), str) or not raw["claim"].strip():
        return "a finding without a claim"
    claim = raw["claim"].strip()[:MAX_CLAIM]
    cited = tuple(c for c in _citations(raw.get("citations")) if c in calls and calls[c].ok)
    if not cited:
        return f"uncited: {claim[:80]}"
    confidence = _confidence(raw.get("confidence"))
    direct = any(calls[c].evidence is Evidence.DIRECT for c in cited)
    capped = not direct and confidence > INDIRECT_CONFIDENCE_CAP
    if capped:
        confidence = INDIRECT_CONFIDENCE_CAP
    return Finding(claim, cited, confidence, capped)


def _action(raw: object, calls: Mapping[str, ToolCall]) -> SuggestedAction | str:
    if not isinstance(raw, dict):
        return "a suggested action that is not an object"
    try:
        action = ActionName(str(raw.get("action")))
    except ValueError:
        return f"unknown action {str(raw.get('action'))[:40]!r}"
    if action not in SUGGESTIBLE:
        return f"{action.value} is never suggested by the investigator"
    cited = tuple(c for c in _citations(raw.get("citations")) if c in calls and calls[c].ok)
    if not cited:
        return f"uncited action {action.value}"
    try:
        params = PARAMS_BY_ACTION[action].model_validate(raw.get("params") or {})
    except ValidationError as exc:
        return f"invalid parameters for {action.value}: {exc.error_count()} problem(s)"
    why = str(raw.get("why") or "")[:MAX_CLAIM]
    return SuggestedAction(action, action_params(params), why, cited)


def judge(answer: str, calls: Sequence[ToolCall]) -> Verdict:
    """Apply the rules to a model's final answer (AnswerError when it is not structured)."""
    data = _json_object(answer)
    by_id = {c.id: c for c in calls}
    findings: list[Finding] = []
    actions: list[SuggestedAction] = []
    dropped: list[str] = []
    raw_findings = data.get("findings")
    for raw in (raw_findings if isinstance(raw_findings, list) else [])[:MAX_FINDINGS]:
        checked = _finding(raw, by_id)
        if isinstance(checked, str):
            dropped.append(checked)
        else:
            findings.append(checked)
    raw_actions = data.get("actions")
    for raw in (raw_actions if isinstance(raw_actions, list) else [])[:MAX_ACTIONS]:
        suggested = _action(raw, by_id)
        if isinstance(suggested, str):
            dropped.append(suggested)
        else:
            actions.append(suggested)
    said_not_enough = data.get("not_enough_evidence") is True
    # No finding left: nothing supports an action either.
    not_enough = said_not_enough or not findings
    summary = str(data.get("summary") or "")[:MAX_CLAIM]
    return Verdict(tuple(findings), () if not_enough else tuple(actions), not_enough, tuple(dropped), summary)


# --------------------------------------------------------------------------- redaction

REDACTED = "[redacted]"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), REDACTED),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}"), REDACTED),
    (re.compile(r"\bxapp-[A-Za-z0-9-]{8,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"), REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}\b"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    # key=value / key: value where the key names a secret.
    (
        re.compile(
            r"(?i)\b([\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
            r"private[_-]?key|credential|auth)[\w.-]*)(\"?\s*[:=]\s*\"?)([^\s\"',;&]+)"
        ),
        r"\1\2" + REDACTED,
    ),
    # user:password@host in URLs (database DSNs).
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/\s@]+:)[^@\s]+@"), r"\1" + REDACTED + "@"),
    # Environment assignments (NAME=value, as in `env` output or a container spec dump).
    (re.compile(r"\b([A-Z][A-Z0-9_]{2,})=(\S+)"), r"\1=" + REDACTED),
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")


@dataclass(frozen=True, slots=True)
class Redactor:
    """Scrubs secrets from text before it leaves for the model. `known` are literal values
    (our own tokens and keys) removed wherever they appear, whatever they look like."""

    known: tuple[str, ...] = ()
    emails: bool = True
    extra: tuple[re.Pattern[str], ...] = field(default_factory=tuple)

    @classmethod
    def with_secrets(cls, values: Iterable[str], *, emails: bool = True) -> Redactor:
        # Only values long enough not to erase ordinary words.
        known = tuple(sorted({v for v in values if len(v) >= 8}, key=len, reverse=True))
        return cls(known, emails)

    def __call__(self, text: str) -> str:
        for value in self.known:
            text = text.replace(value, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        for pattern in self.extra:
            text = pattern.sub(REDACTED, text)
        if self.emails:
            text = _EMAIL.sub("[email]", text)
        return text


def clip_output(text: str, limit: int) -> str:
    """A tool's output within `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    kept = text[: max(limit - 40, 0)]
    return f"{kept}\n… [{len(text) - len(kept)} characters cut]"
