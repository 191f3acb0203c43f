"""``kubectl`` and ``oc`` commands as typed proposals: rollout restart/undo, scale, set env,
set resources, delete pod, cordon, uncordon, drain (``oc adm cordon``/``drain`` too) and
create job --from=cronjob become remediations; logs, rollout history, get pods/events and
describe pod become read-only diagnostics. Flags may come in any order, before or after the
verb (``-n ns``, ``-nns``, ``--namespace=ns``). Everything else (``exec``, unknown verbs,
names that are not valid after converting placeholders) stays text.

``delete pod -l app=x`` (every pod of an app) becomes a rolling restart of deployment ``x``:
there is no action that deletes by selector, and a rolling restart recreates the same pods
without taking them all down at once. The proposal says so, for the reviewer to check that
``x`` is the deployment owning those pods."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.core.actions import ActionName
from bot.core.playbooks import Diagnostic, parse_duration
from bot.core.templating import escape_template
from bot.tools.importer.placeholders import k8s_template
from bot.tools.importer.shell import SUBSTITUTED, mask_substitutions
from bot.tools.importer.text import DNS_LABEL, LABEL_NAME, word_set
from bot.tools.importer.validation import is_valid, remediation_ok

_VALUE_FLAGS = word_set(
    """
    -n --namespace -c --container --containers --replicas --to-revision --limits --requests --from
    --grace-period --timeout -l --selector --tail --context --kubeconfig --cluster --user -o
    --output --since -e --env --field-selector --sort-by --type --current-replicas
    --resource-version --revision --image --server --token --as --as-group --chunk-size
    --pod-running-timeout --max-log-requests --since-time --overrides --restart --schedule --port
    --filename --pod-selector --patch --for
    """
)
# Short flags whose value may be attached: `-nkube-system`, `-ojson`, `-lapp=web`.
_ATTACHED = frozenset({"-n", "-c", "-l", "-o", "-e"})
_COMMANDS = frozenset({"kubectl", "oc"})
DEPLOYMENT_KINDS = frozenset({"deployment", "deployments", "deploy", "deployment.apps", "deployments.apps"})
POD_KINDS = frozenset({"pod", "pods", "po"})
_CRONJOB_KINDS = frozenset({"cronjob", "cronjobs", "cj", "cronjob.batch"})
_NODE_ACTIONS = {"cordon": ActionName.CORDON, "uncordon": ActionName.UNCORDON, "drain": ActionName.DRAIN}
_ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*|[A-Za-z_][A-Za-z0-9_]*-")  # NAME=value, NAME-
_SEPARATORS = ("|", "||", "&&", ";", ">", ">>", "2>&1")


@dataclass
class Kubectl:
    positionals: list[str]
    flags: dict[str, str | bool]
    assignments: list[str]  # NAME=value and NAME- of `set env`


def kubectl_proposal(command: str, *, default_namespace: str = "default") -> dict[str, Any] | None:
    """The typed remediation (``action``/``title``/``params``) or read-only diagnostic
    (``kind``/``namespace``/``target``...) for one ``kubectl`` command, or None when it
    stays text (``exec``, unknown verbs, names that are not valid after converting
    placeholders, replicas above the bundled policy's maximum)."""
    cmd = parse_command(command)
    if cmd is None:
        return None
    default_ns = default_namespace if DNS_LABEL.fullmatch(default_namespace) else "default"
    pos = cmd.positionals
    if pos[:1] == ["adm"] and len(pos) > 1 and pos[1] in _NODE_ACTIONS:
        pos = pos[1:]  # oc adm cordon|uncordon|drain
    if not pos:
        return None
    namespace = _namespace(cmd, default_ns)
    if namespace is None:
        return None
    if pos[0] in ("logs", "get", "describe"):
        return _diagnostic(pos[0], pos[1:], cmd, namespace)
    result = _proposal(pos, cmd, namespace)
    if result is None or "kind" in result:
        return result
    return result if remediation_ok(result) else None


def parse_command(command: str) -> Kubectl | None:
    """The verb, arguments and flags of a ``kubectl``/``oc`` command (None for anything else)."""
    tokens = _command_tokens(command)
    if tokens is None or len(tokens) < 2 or tokens[0] not in _COMMANDS:
        return None
    return _parse_kubectl(tokens)


def _command_tokens(command: str) -> list[str] | None:
    """The words of the first simple command (None when the quoting is broken)."""
    try:
        tokens = shlex.split(mask_substitutions(command.strip()), comments=False)
    except ValueError:
        return None
    for sep in _SEPARATORS:
        if sep in tokens:
            tokens = tokens[: tokens.index(sep)]
    return tokens


def _parse_kubectl(tokens: list[str]) -> Kubectl:
    positionals: list[str] = []
    flags: dict[str, str | bool] = {}
    assignments: list[str] = []
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--":
            positionals += tokens[i:]
            break
        if tok.startswith("-") and len(tok) > 1:
            if "=" in tok and tok.startswith("--"):
                key, value = tok.split("=", 1)
                flags[key] = value
            elif re.fullmatch(r"-[a-zA-Z]=.+", tok):
                flags[tok[:2]] = tok[3:]
            elif tok[:2] in _ATTACHED and len(tok) > 2:
                flags[tok[:2]] = tok[2:]
            elif tok in _VALUE_FLAGS and i + 1 < len(tokens):
                flags[tok] = tokens[i + 1]
                i += 1
            else:
                # a switch, and so is -f: `logs -f` is --follow, not --filename
                flags[tok] = True
        elif positionals[:2] == ["set", "env"] and _ENV_ASSIGNMENT.fullmatch(tok):
            assignments.append(tok)
        else:
            positionals.append(tok)
        i += 1
    return Kubectl(positionals, flags, assignments)


def _flag(cmd: Kubectl, *names: str) -> str | bool | None:
    for name in names:
        if name in cmd.flags:
            return cmd.flags[name]
    return None


def _targets(args: Sequence[str], kinds: frozenset[str]) -> list[str] | None:
    """Object names from ``kind/name ...`` or ``kind name ...``; None when of another kind."""
    if not args:
        return None
    if "/" in args[0]:
        names = []
        for arg in args:
            kind, _, name = arg.partition("/")
            if kind.lower() not in kinds or not name:
                return None
            names.append(name)
        return names
    if args[0].lower() in kinds and len(args) > 1:
        return list(args[1:])
    return None


def _one_target(args: Sequence[str], kinds: frozenset[str]) -> str | None:
    """The only object named (as a valid template), else None."""
    names = _targets(args, kinds)
    return k8s_template(names[0]) if names and len(names) == 1 else None


def _namespace(cmd: Kubectl, default_ns: str) -> str | None:
    value = _flag(cmd, "-n", "--namespace")
    if value is None or value is True:
        return f"${{namespace:-{default_ns}}}"
    return k8s_template(str(value), dns_label=True)


def _int_value(value: str | bool | None, low: int, high: int) -> int | None:
    if isinstance(value, str) and re.fullmatch(r"\d{1,9}", value):
        number = int(value)
        return number if low <= number <= high else None
    return None


def _resources(value: str | bool | None) -> dict[str, str] | None:
    if not isinstance(value, str):
        return None
    spec: dict[str, str] = {}
    for part in value.split(","):
        key, _, quantity = part.partition("=")
        key = key.strip().lower()
        if key not in ("cpu", "memory") or not quantity.strip():
            return None
        spec[key] = quantity.strip()
    return spec or None


# --------------------------------------------------------------------------- remediations


def _proposal(pos: list[str], cmd: Kubectl, namespace: str) -> dict[str, Any] | None:
    """The remediation of a verb that changes something (or a rollout's history diagnostic)."""
    verb = pos[0]
    if verb == "rollout" and len(pos) >= 3:
        return _rollout(pos[1], pos[2:], cmd, namespace)
    if verb == "scale":
        return _scale(pos[1:], cmd, namespace)
    if verb == "set" and len(pos) >= 3 and pos[1] in ("env", "resources"):
        return _set(pos[1], pos[2:], cmd, namespace)
    if verb == "delete" and len(pos) >= 2:
        return _delete_pod(pos[1:], cmd, namespace)
    if verb in _NODE_ACTIONS and len(pos) == 2:
        return _node(verb, pos[1], cmd)
    if verb == "create" and len(pos) >= 3 and pos[1] == "job":
        return _create_job(pos[2], cmd, namespace)
    return None


def _rollout(sub: str, args: list[str], cmd: Kubectl, namespace: str) -> dict[str, Any] | None:
    if sub == "history":
        return _diagnostic("rollout-history", args, cmd, namespace)
    deployment = _one_target(args, DEPLOYMENT_KINDS)
    if sub not in ("restart", "undo") or deployment is None:
        return None
    params: dict[str, Any] = {"namespace": namespace, "deployment": deployment}
    if sub == "restart":
        return {
            "action": ActionName.ROLLOUT_RESTART.value,
            "title": f"Restart deployment {deployment}",
            "params": params,
        }
    revision = _flag(cmd, "--to-revision")
    title = f"Roll back deployment {deployment} to the previous revision"
    if revision is not None:
        number = _int_value(revision, 0, 1_000_000)
        if number is None:
            return None
        if number:  # revision 0 is the previous one
            params["to_revision"] = number
            title = f"Roll back deployment {deployment} to revision {number}"
    return {"action": ActionName.ROLLOUT_UNDO.value, "title": title, "params": params}


def _scale(args: list[str], cmd: Kubectl, namespace: str) -> dict[str, Any] | None:
    deployment = _one_target(args, DEPLOYMENT_KINDS)
    replicas = _int_value(_flag(cmd, "--replicas"), 0, 1000)
    if deployment is None or replicas is None or _flag(cmd, "--current-replicas", "-l", "--selector"):
        return None
    return {
        "action": ActionName.SCALE.value,
        "title": f"Scale deployment {deployment} to {replicas} replicas",
        "params": {"namespace": namespace, "deployment": deployment, "replicas": replicas},
    }


def _set(sub: str, args: list[str], cmd: Kubectl, namespace: str) -> dict[str, Any] | None:
    params = _set_target(args, cmd, namespace)
    if params is None:
        return None
    if sub == "env":
        return _set_env(cmd, params)
    return _set_resources(cmd, params)


def _set_target(args: list[str], cmd: Kubectl, namespace: str) -> dict[str, Any] | None:
    """The namespace, deployment and container parameters of ``kubectl set``: one
    deployment, not a selection."""
    deployment = _one_target(args[:2] if "/" not in args[0] else args[:1], DEPLOYMENT_KINDS)
    extra = args[2:] if "/" not in args[0] else args[1:]
    if deployment is None or extra or _flag(cmd, "-l", "--selector", "--all", "--from", "-f"):
        return None
    params: dict[str, Any] = {"namespace": namespace, "deployment": deployment}
    container = _flag(cmd, "-c", "--containers", "--container")
    if container is not None:
        if not isinstance(container, str) or "*" in container or "," in container:
            return None
        name = k8s_template(container, dns_label=True)
        if name is None:
            return None
        params["container"] = name
    return params


def _set_env(cmd: Kubectl, params: dict[str, Any]) -> dict[str, Any] | None:
    env: dict[str, str] = {}
    pairs = list(cmd.assignments)
    flag_env = _flag(cmd, "-e", "--env")
    if isinstance(flag_env, str):
        pairs.append(flag_env)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not LABEL_NAME.fullmatch(key):
            return None  # NAME- (unset) is not an action we have
        env[key] = escape_template(value.replace(SUBSTITUTED, "$(...)"))
    if not env:
        return None
    params["env"] = env
    return {
        "action": ActionName.SET_ENV.value,
        "title": f"Set {', '.join(env)} on deployment {params['deployment']}",
        "params": params,
    }


def _set_resources(cmd: Kubectl, params: dict[str, Any]) -> dict[str, Any] | None:
    limits, requests = _flag(cmd, "--limits"), _flag(cmd, "--requests")
    if limits is None and requests is None:
        return None
    for key, flag_value in (("limits", limits), ("requests", requests)):
        if flag_value is not None:
            spec = _resources(flag_value)
            if spec is None:
                return None
            params[key] = spec
    return {
        "action": ActionName.SET_RESOURCES.value,
        "title": f"Set the resources of deployment {params['deployment']}",
        "params": params,
    }


def selector_name(value: str | bool | None) -> str | None:
    """The name in a one-term equality selector (``app=web``, ``k8s-app==dns``), as a
    template; None for anything wider (several terms, sets, existence)."""
    if not isinstance(value, str):
        return None
    m = re.fullmatch(r"[A-Za-z0-9_./-]+==?([^,=!()\s]+)", value.strip())
    return k8s_template(m.group(1)) if m else None


def _delete_pod(args: list[str], cmd: Kubectl, namespace: str) -> dict[str, Any] | None:
    if _flag(cmd, "--all", "-A", "--all-namespaces"):
        return None
    selector = _flag(cmd, "-l", "--selector")
    if selector is not None:
        return _delete_selected(args, str(selector), namespace)
    pod = _one_target(args, POD_KINDS)
    if pod is None:
        return None
    params: dict[str, Any] = {"namespace": namespace, "pod": pod}
    grace = _flag(cmd, "--grace-period")
    if grace is not None:
        seconds = _int_value(grace, 0, 3600)
        if seconds is None:
            return None
        params["grace_period_seconds"] = seconds
    return {"action": ActionName.DELETE_POD.value, "title": f"Delete pod {pod}", "params": params}


def _delete_selected(args: list[str], selector: str, namespace: str) -> dict[str, Any] | None:
    """``delete pod -l app=x``: a rolling restart of deployment x (see the module's doc)."""
    deployment = selector_name(selector)
    if deployment is None or len(args) != 1 or args[0].lower() not in POD_KINDS:
        return None
    why = (
        f"The runbook deletes every pod labelled `{selector}`; a rolling restart of deployment "
        f"{deployment} recreates them without taking them all down at once. Check that it is "
        "the deployment owning those pods."
    )
    return {
        "action": ActionName.ROLLOUT_RESTART.value,
        "title": f"Restart deployment {deployment} (pods {selector})",
        "params": {"namespace": namespace, "deployment": deployment},
        "why": escape_template(why),
    }


def _node(verb: str, name: str, cmd: Kubectl) -> dict[str, Any] | None:
    if name.startswith("node/"):
        name = name[5:]
    node = k8s_template(name)
    if node is None or _flag(cmd, "-l", "--selector"):
        return None
    params: dict[str, Any] = {"node": node}
    if verb == "drain":
        params.update(_drain_params(cmd))
    action = _NODE_ACTIONS[verb]
    return {"action": action.value, "title": f"{verb.capitalize()} node {node}", "params": params}


def _drain_params(cmd: Kubectl) -> dict[str, Any]:
    """The drain options the action supports; values out of its bounds are left out."""
    params: dict[str, Any] = {}
    if _flag(cmd, "--ignore-daemonsets") is True:
        params["ignore_daemonsets"] = True
    if _flag(cmd, "--delete-emptydir-data", "--delete-local-data") is True:
        params["delete_emptydir_data"] = True
    grace = _flag(cmd, "--grace-period")
    if grace is not None:
        seconds = _int_value(grace, 0, 3600)
        if seconds is not None:
            params["grace_period_seconds"] = seconds
    timeout = _flag(cmd, "--timeout")
    if isinstance(timeout, str):
        try:
            seconds_f = parse_duration(timeout) if not timeout.isdigit() else float(timeout)
        except ValueError:
            seconds_f = -1
        if 10 <= seconds_f <= 3600:
            params["timeout_seconds"] = int(seconds_f)
    return params


def _create_job(name: str, cmd: Kubectl, namespace: str) -> dict[str, Any] | None:
    source = _flag(cmd, "--from")
    if not isinstance(source, str):
        return None
    kind, _, cronjob_name = source.partition("/")
    if kind.lower() not in _CRONJOB_KINDS or not cronjob_name:
        return None
    cronjob = k8s_template(cronjob_name)
    if cronjob is None:
        return None
    params: dict[str, Any] = {"namespace": namespace, "cronjob": cronjob}
    job_name = k8s_template(name)
    if job_name is not None:
        params["job_name"] = job_name
    return {
        "action": ActionName.CREATE_JOB_FROM_CRONJOB.value,
        "title": f"Run cronjob {cronjob} now",
        "params": params,
    }


# --------------------------------------------------------------------------- diagnostics


def _diagnostic(verb: str, args: list[str], cmd: Kubectl, namespace: str) -> dict[str, Any] | None:
    fields = _diagnostic_fields(verb, args, cmd)
    if fields is None:
        return None
    data: dict[str, Any] = {"namespace": namespace, **fields}
    return data if is_valid(Diagnostic, data) else None


def _diagnostic_fields(verb: str, args: list[str], cmd: Kubectl) -> dict[str, Any] | None:
    if verb == "rollout-history":
        target = _one_target(args, DEPLOYMENT_KINDS)
        return None if target is None else {"kind": "rollout_history", "target": target}
    if verb == "logs":
        return _logs_fields(args, cmd)
    if not args:
        return None
    kind, _, name = args[0].lower().partition("/")
    names = [name] if name else [a for a in args[1:]]
    if verb == "get" and kind in POD_KINDS:
        return {"kind": "pods"}  # one pod or all: the namespace's pods show it
    if verb == "get" and kind in ("events", "event", "ev"):
        return {"kind": "events"}
    if verb == "describe" and kind in POD_KINDS and len(names) == 1:
        target = k8s_template(args[0][len(kind) + 1 :] if name else names[0])
        return None if target is None else {"kind": "events", "target": target, "target_kind": "pod"}
    return None


def _logs_fields(args: list[str], cmd: Kubectl) -> dict[str, Any] | None:
    selector = _flag(cmd, "-l", "--selector")
    if selector is not None:
        target, kind = (selector_name(selector), "deployment") if not args else (None, "")
    elif args:
        target, kind = _logs_target(args[0])
    else:
        return None
    if target is None:
        return None
    data: dict[str, Any] = {"kind": "logs", "target": target}
    if kind == "pod":
        data["target_kind"] = "pod"
    tail = _int_value(_flag(cmd, "--tail"), 1, 5000)
    if tail is not None:
        data["tail_lines"] = tail
    container = _flag(cmd, "-c", "--container")
    if isinstance(container, str):
        name = k8s_template(container, dns_label=True)
        if name is not None:
            data["container"] = name
    return data


def _logs_target(arg: str) -> tuple[str | None, str]:
    """(name template, ``deployment`` or ``pod``) of the object whose logs are read."""
    names = _targets([arg], DEPLOYMENT_KINDS)
    if names:
        return k8s_template(names[0]), "deployment"
    if "/" in arg:
        pod_kind, _, pod_name = arg.partition("/")
        return (k8s_template(pod_name) if pod_kind in POD_KINDS else None), "pod"
    return k8s_template(arg), "pod"
