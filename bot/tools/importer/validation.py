"""The checks a draft must pass to be kept: the playbook models, and for remediations the
same rendering and policy checks `validate_dir` makes, so the output always validates."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bot.config.playbooks import DEFAULT_PLAYBOOKS_DIR
from bot.core.actions import ActionName
from bot.core.playbooks import Remediation
from bot.core.policy import Policy
from bot.core.templating import TemplateError, sample_label_sets


def is_valid(model: type[BaseModel], data: dict[str, Any]) -> bool:
    try:
        model.model_validate(data)
    except (ValidationError, TemplateError):
        return False
    return True


@functools.cache
def _bundled_policy() -> Policy | None:
    path = DEFAULT_PLAYBOOKS_DIR / "policy.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Policy.model_validate(data) if isinstance(data, dict) else None
    except (OSError, yaml.YAMLError, ValidationError):
        return None


def remediation_ok(data: dict[str, Any]) -> bool:
    """The same checks `validate_dir` makes: the model, and the parameters rendered with
    sample labels (and every default) against the action's model and the policy bounds."""
    try:
        rem = Remediation.model_validate(data)
        leaves = [v for v in _string_leaves(rem.params)]
        for labels in sample_label_sets(*leaves):
            rem.render_params(labels)
    except (ValidationError, TemplateError):
        return False
    policy = _bundled_policy()
    if rem.action is ActionName.SCALE and policy is not None:
        rule = policy.rule_for(rem.action, rem.approval)
        if rule.scale_violation(None, int(rem.params["replicas"])):
            return False
    return True


def _string_leaves(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _string_leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _string_leaves(item)
