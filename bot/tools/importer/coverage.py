"""How much of a runbook the importer turns into typed parts: the share of mappable
``kubectl``/``oc`` commands that became a proposal or diagnostic in the imported
playbooks, and the share of known PromQL expressions that became a graph. Used by
``bench/importer.py`` and the corpus test.

A command is *mappable* when a typed action or diagnostic exists for what it does
(`mappable_family`): restart/undo/history/scale/set of a deployment, delete of pods (by
name or selector), cordon/uncordon/drain, create job --from=cronjob, logs, get pods/events,
describe pod. Everything else (exec, patch, edit, other kinds) is listed with the reason
it has no typed counterpart. A mappable command counts as *mapped* only if its proposal
is in the imported playbooks, so parts of a runbook the importer skips count against it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bot.tools.importer.document import parse_document
from bot.tools.importer.kubectl import DEPLOYMENT_KINDS, POD_KINDS, kubectl_proposal, parse_command
from bot.tools.importer.markdown import Block, parse_blocks
from bot.tools.importer.playbooks import import_playbooks
from bot.tools.importer.shell import SHELL_LANGS, SUBSTITUTED, shell_commands
from bot.tools.importer.text import INLINE_CODE

_IN_CONTAINER = frozenset({"exec", "rsh", "debug", "attach", "cp", "port-forward", "rsync"})
_FREE_FORM = frozenset({"edit", "patch", "apply", "annotate", "label", "replace", "create", "set", "expose"})
_NODE_VERBS = frozenset({"cordon", "uncordon", "drain"})


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    command: str
    family: str | None  # what it does, when a typed action or diagnostic exists for it
    mapped: bool
    reason: str  # why it is not mappable, or why it was not mapped


@dataclass(frozen=True, slots=True)
class QueryOutcome:
    query: str
    recognised: bool


@dataclass(frozen=True, slots=True)
class Coverage:
    commands: list[CommandOutcome]
    queries: list[QueryOutcome]
    extra_graphs: list[str]  # graphs of text that is not a labelled expression

    @property
    def mappable(self) -> list[CommandOutcome]:
        return [c for c in self.commands if c.family is not None]


def _walk(blocks: list[Block]) -> Iterator[Block]:
    for block in blocks:
        yield block
        for item in block.items:
            yield from _walk(item.blocks)


def runbook_commands(markdown: str) -> list[str]:
    """The ``kubectl``/``oc`` simple commands of a runbook: in shell code blocks and in
    inline code."""
    found: list[str] = []
    for block in _walk(parse_blocks(markdown.replace("\r\n", "\n").splitlines())):
        if block.kind == "code" and block.lang.lower() in SHELL_LANGS:
            found += shell_commands(block.text)
        elif block.kind in ("para", "table", "quote"):
            found += [m.group(2).strip() for m in INLINE_CODE.finditer(block.text)]
    return [c for c in found if c.split(" ", 1)[0] in ("kubectl", "oc")]


def mappable_family(command: str) -> tuple[str | None, str]:
    """(what the command does, "") when a typed action or diagnostic exists for it, else
    (None, why not)."""
    cmd = parse_command(command)
    if cmd is None or not cmd.positionals:
        return None, "not a command line (quoting) or no verb"
    pos = cmd.positionals[1:] if cmd.positionals[:1] == ["adm"] else cmd.positionals
    verb, args = pos[0], pos[1:]
    kind = args[0].lower().partition("/")[0] if args else ""
    if verb in _NODE_VERBS:
        return f"{verb} node", ""
    if verb in ("logs", "get", "describe"):
        return _read_family(verb, kind)
    if verb == "delete":
        if kind in POD_KINDS:
            return "delete pod", ""
        return None, f"deletes {kind or 'an object'}: no typed action (only pods)"
    if verb in ("rollout", "scale", "set"):
        return _deployment_family(verb, args)
    if verb == "create" and kind == "job" and ("--from" in cmd.flags):
        return "create job from cronjob", ""
    if verb in _IN_CONTAINER:
        return None, f"`{verb}` runs commands in a container or node: only policy-listed exec templates"
    if verb in _FREE_FORM:
        return None, f"`{verb}` is a free-form change: no typed action"
    return None, f"`{verb}`: no typed action or diagnostic"


def _read_family(verb: str, kind: str) -> tuple[str | None, str]:
    if verb == "logs":
        return "logs", ""
    if kind in POD_KINDS:
        return f"{verb} pods", ""
    if verb == "get" and kind in ("events", "event", "ev"):
        return "get events", ""
    return None, f"{verb} {kind or 'something'}: no diagnostic of that kind"


def _deployment_family(verb: str, args: list[str]) -> tuple[str | None, str]:
    sub = args[0] if verb in ("rollout", "set") and args else ""
    target = args[1:] if sub else args
    kind = target[0].lower().partition("/")[0] if target else ""
    name = f"{verb} {sub}".strip()
    if verb == "rollout" and sub not in ("restart", "undo", "history"):
        return None, f"`rollout {sub}`: no typed action"
    if verb == "set" and sub not in ("env", "resources"):
        return None, f"`set {sub}`: no typed action"
    if kind not in DEPLOYMENT_KINDS:
        return None, f"{name} of {kind or 'an object'}: actions take deployments only"
    return f"{name} deployment", ""


def _norm(query: str) -> str:
    """A query without spaces, its placeholders (``$x``, ``${x}``, ``<x>``) as ``?``."""
    q = re.sub(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|<[A-Za-z][\w .-]*>", "?", query)
    return re.sub(r"\s+", "", q)


def _graph_matches(graph: dict[str, Any], expected: str) -> bool:
    query, want = _norm(graph["query"]), _norm(expected)
    if query == want:
        return True
    threshold = graph.get("threshold")
    return (
        threshold is not None
        and re.fullmatch(re.escape(query) + r"(?:[<>]=?|[=!]=)-?[0-9.e+]+", want) is not None
    )


def _proposal_key(data: dict[str, Any]) -> tuple[Any, ...]:
    if "action" in data:
        return ("rem", data["action"], tuple(sorted((k, str(v)) for k, v in data["params"].items())))
    return ("diag", data["kind"], data["namespace"], data.get("target"))


def measure(markdown: str, source_name: str, expected_queries: list[str]) -> Coverage:
    """The coverage of one runbook against the PromQL expressions it is known to hold."""
    playbooks = import_playbooks(markdown, source_name)
    default_ns = parse_document(markdown, source_name).default_ns
    produced = {_proposal_key(r) for pb in playbooks for r in pb.get("remediations", [])}
    produced |= {_proposal_key(d) for pb in playbooks for d in pb.get("diagnostics", [])}
    commands = [_command_outcome(c, default_ns, produced) for c in runbook_commands(markdown)]
    graphs = [g for pb in playbooks for g in pb.get("graphs", [])]
    queries = [QueryOutcome(q, any(_graph_matches(g, q) for g in graphs)) for q in expected_queries]
    extra = [g["query"] for g in graphs if not any(_graph_matches(g, q) for q in expected_queries)]
    return Coverage(commands, queries, extra)


def _command_outcome(command: str, default_ns: str, produced: set[tuple[Any, ...]]) -> CommandOutcome:
    family, reason = mappable_family(command)
    shown = command.replace(SUBSTITUTED, "$(…)")
    if family is None:
        return CommandOutcome(shown, None, False, reason)
    proposal = kubectl_proposal(command, default_namespace=default_ns)
    if proposal is None:
        return CommandOutcome(shown, family, False, _refusal(command))
    if _proposal_key(proposal) not in produced:
        return CommandOutcome(shown, family, False, "mapped, but not in the imported playbooks")
    return CommandOutcome(shown, family, True, "")


def _refusal(command: str) -> str:
    """Why a mappable command gave no proposal (for the report)."""
    cmd = parse_command(command)
    if cmd is not None and (len(cmd.positionals) < 2 or "..." in cmd.positionals):
        return "an incomplete command: no object named"
    if "$(" in command or "`" in command or SUBSTITUTED in command:
        return "a name computed by a command substitution"
    if re.search(r"--replicas[= ](?!\d)", command):
        return "the replica count is a placeholder; a number is needed"
    if re.search(r"\s(?:-A|--all-namespaces|--all)\b", command):
        return "all namespaces or all objects: too wide for one proposal"
    if re.search(r"\s(?:-l|--selector)[= ]?\S*[,!]", command):
        return "a selector with several terms or a negation"
    if re.search(r"\s(?:-l|--selector)", command):
        return "a selector and a name together (kubectl refuses that too)"
    return "a name or value that is not valid after converting placeholders, or several targets"
