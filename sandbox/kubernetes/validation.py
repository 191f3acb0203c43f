"""What the apiserver refuses with 422 Invalid: names, replicas, pod specs, resource quantities."""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.kubernetes.errors import invalid
from sandbox.kubernetes.objects import meta_of
from sandbox.kubernetes.resources import ResourceInfo
from sandbox.kubernetes.selectors import selector_matches

JSON = dict[str, Any]


DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
QUANTITY = re.compile(r"^([+-]?[0-9.]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+)?$")
_SUFFIX = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def parse_quantity(text: str) -> Decimal | None:
    match = QUANTITY.fullmatch(text.strip())
    if not match:
        return None
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        return None
    suffix = match.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return number * (Decimal(10) ** int(suffix[1:]))
    return number * _SUFFIX[suffix]


def check_replicas(info: ResourceInfo, name: str, value: Any, path: str, kind: str | None = None) -> None:
    """A replica count must be a non-negative integer (``kind="Scale"``: said of the Scale)."""
    if value is None:
        return
    target = ResourceInfo(info.plural, kind or info.kind, "autoscaling" if kind else info.group, "v1", True)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(target, name, [(path, f"Invalid value: {json.dumps(value)}: must be an integer")])
    if value < 0:
        raise invalid(target, name, [(path, f"Invalid value: {value}: must be greater than or equal to 0")])


def validate(info: ResourceInfo, obj: JSON, *, creating: bool) -> None:
    """Raise 422 Invalid with every cause the apiserver would list."""
    name = meta_of(obj).get("name", "")
    causes: list[tuple[str, str]] = []
    if creating:
        causes += _name_causes(info, name)
    spec = obj.get("spec") or {}
    if info.plural == "deployments":
        check_replicas(info, name, spec.get("replicas"), "spec.replicas")
        causes += _deployment_causes(spec)
    elif info.plural == "jobs":
        causes += _job_causes(spec)
    elif info.plural == "cronjobs":
        template_spec = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get(
            "spec"
        ) or {}
        causes += validate_pod_spec(template_spec, "spec.jobTemplate.spec.template.spec")
    elif info.plural == "nodes" and not isinstance(spec.get("unschedulable", False), bool):
        causes.append(("spec.unschedulable", "Invalid value: must be a boolean"))
    if causes:
        raise invalid(info, name, causes)


def _name_causes(info: ResourceInfo, name: str) -> list[tuple[str, str]]:
    pattern = DNS1123_LABEL if info.plural in ("namespaces",) else DNS1123_SUBDOMAIN
    limit = 63 if info.plural in ("namespaces", "jobs", "cronjobs") else 253
    if pattern.fullmatch(name) and len(name) <= limit:
        return []
    return [
        (
            "metadata.name",
            f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
            f"character (must be no more than {limit} characters)",
        )
    ]


def _deployment_causes(spec: JSON) -> list[tuple[str, str]]:
    causes = validate_pod_spec(((spec.get("template") or {}).get("spec")) or {}, "spec.template.spec")
    if not spec.get("selector"):
        causes.append(("spec.selector", "Required value"))
    elif not selector_matches(
        spec["selector"], ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    ):
        causes.append(
            (
                "spec.template.metadata.labels",
                "Invalid value: `selector` does not match template `labels`",
            )
        )
    return causes


def _job_causes(spec: JSON) -> list[tuple[str, str]]:
    template_spec = ((spec.get("template") or {}).get("spec")) or {}
    causes = validate_pod_spec(template_spec, "spec.template.spec")
    if template_spec.get("restartPolicy") not in ("Never", "OnFailure"):
        causes.append(
            (
                "spec.template.spec.restartPolicy",
                f'Unsupported value: "{template_spec.get("restartPolicy", "Always")}": '
                'supported values: "OnFailure", "Never"',
            )
        )
    return causes


def validate_pod_spec(pod_spec: JSON, path: str) -> list[tuple[str, str]]:
    causes: list[tuple[str, str]] = []
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [(f"{path}.containers", "Required value")]
    seen: set[str] = set()
    for i, container in enumerate(containers):
        where = f"{path}.containers[{i}]"
        cname = container.get("name", "")
        if not isinstance(cname, str) or not DNS1123_LABEL.fullmatch(cname):
            causes.append(
                (
                    f"{where}.name",
                    f'Invalid value: "{cname}": a lowercase RFC 1123 label must consist '
                    "of lower case alphanumeric characters or '-'",
                )
            )
        if cname in seen:
            causes.append((f"{where}.name", f'Duplicate value: "{cname}"'))
        seen.add(cname)
        if not container.get("image"):
            causes.append((f"{where}.image", "Required value"))
        causes += _env_causes(container.get("env") or [], where)
        causes += _resource_causes(container.get("resources") or {}, where)
    return causes


def _env_causes(env_list: list[JSON], where: str) -> list[tuple[str, str]]:
    causes: list[tuple[str, str]] = []
    for j, env in enumerate(env_list):
        env_name = env.get("name", "")
        if not isinstance(env_name, str) or not ENV_NAME.fullmatch(env_name):
            causes.append(
                (
                    f"{where}.env[{j}].name",
                    f'Invalid value: "{env_name}": a valid environment '
                    "variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
                    "and must not start with a digit",
                )
            )
        if "value" in env and "valueFrom" in env:
            causes.append(
                (
                    f"{where}.env[{j}].valueFrom",
                    'Invalid value: "": may not be specified when `value` is not empty',
                )
            )
    return causes


def _resource_causes(resources: JSON, where: str) -> list[tuple[str, str]]:
    """Requests and limits must be valid, non-negative quantities, and no request above its limit."""
    causes: list[tuple[str, str]] = []
    parsed: dict[str, dict[str, Decimal]] = {}
    for kind in ("requests", "limits"):
        for res_name, quantity in (resources.get(kind) or {}).items():
            value = parse_quantity(str(quantity))
            if value is None:
                causes.append(
                    (
                        f"{where}.resources.{kind}[{res_name}]",
                        f'Invalid value: "{quantity}": quantities must match the regular '
                        "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    )
                )
            elif value < 0:
                causes.append(
                    (
                        f"{where}.resources.{kind}[{res_name}]",
                        f'Invalid value: "{quantity}": must be greater than or equal to 0',
                    )
                )
            else:
                parsed.setdefault(kind, {})[res_name] = value
    for res_name, request in parsed.get("requests", {}).items():
        limit = parsed.get("limits", {}).get(res_name)
        if limit is not None and request > limit:
            causes.append(
                (
                    f"{where}.resources.requests",
                    f'Invalid value: "{resources["requests"][res_name]}": must be less than or '
                    f"equal to {res_name} limit of {resources['limits'][res_name]}",
                )
            )
    return causes
