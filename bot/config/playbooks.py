"""Load playbooks and policy.yaml from a playbook directory, reporting every problem with
``file:line``; the generated JSON Schemas. The whole directory (with the service catalog and
clusters.yaml) is validated, and the command line lives, in `bot.config.directory`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from bot.config.settings import BUNDLED_PLAYBOOKS
from bot.core.actions import HOST_ACTIONS, PARAMS_BY_ACTION, ActionName
from bot.core.catalog import CATALOG_FILES, CATALOG_SCHEMA_FILE, catalog_json_schema
from bot.core.correlation import CORRELATION_SCHEMA_FILE, correlation_json_schema
from bot.core.errors import ConfigError
from bot.core.playbooks import (
    Path_,
    Playbook,
    PlaybookSet,
    Remediation,
    dotted_location,
    error_message,
    playbook_json_schema,
    policy_json_schema,
    render_param,
    string_leaves,
)
from bot.core.policy import ExecTemplate, Policy
from bot.core.templating import (
    TemplateError,
    render_plain,
    sample_label_sets,
)

DEFAULT_PLAYBOOKS_DIR = BUNDLED_PLAYBOOKS
POLICY_FILE = "policy.yaml"
SCHEMA_FILE = "schema.json"
POLICY_SCHEMA_FILE = "policy.schema.json"
# Files of the directory that hold other settings than playbooks (see bot.config.clusters).
NOT_PLAYBOOKS = ("clusters.yaml", "clusters.yml", "correlation.yaml", "correlation.yml")


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_schemas(directory: Path = DEFAULT_PLAYBOOKS_DIR) -> list[Path]:
    written = []
    for name, schema in (
        (SCHEMA_FILE, playbook_json_schema()),
        (POLICY_SCHEMA_FILE, policy_json_schema()),
        (CATALOG_SCHEMA_FILE, catalog_json_schema()),
        (CORRELATION_SCHEMA_FILE, correlation_json_schema()),
    ):
        path = directory / name
        path.write_text(schema_text(schema), encoding="utf-8")
        written.append(path)
    return written


# --------------------------------------------------------------------------- problems and YAML with lines


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class PlaybookError(ConfigError):
    """The playbook directory is invalid; `problems` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(slots=True)
class _Document:
    data: Any
    lines: dict[Path_, int]
    line: int


def _convert(loader: yaml.SafeLoader, node: yaml.Node, path: Path_, doc: _Document, report: _Report) -> Any:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            key = (
                loader.construct_object(key_node, deep=True)
                if isinstance(key_node, yaml.ScalarNode)
                else None
            )
            if isinstance(key, bool) or not isinstance(key, str | int):
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "(complex key)"
                report.add(line, f"mapping key {shown!r} must be a string (quote it)")
                continue
            if key in result:
                report.add(line, f"duplicate key {key!r}")
            doc.lines[(*path, key)] = line
            result[key] = _convert(loader, value_node, (*path, key), doc, report)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, (*path, i), doc, report) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


class _Report:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def add(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))


def _read_documents(path: Path, report: _Report) -> list[_Document]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        report.add(1, f"cannot read file: {exc}")
        return []
    docs: list[_Document] = []
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            doc = _Document(data=None, lines={}, line=node.start_mark.line + 1)
            doc.data = _convert(loader, node, (), doc, report)
            if doc.data is not None:
                docs.append(doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = str(exc.problem or exc)
        if exc.context and exc.context_mark is not None:
            detail += f" ({exc.context} at line {exc.context_mark.line + 1})"
        report.add(mark.line + 1 if mark else 1, f"YAML syntax error: {detail}")
    except yaml.YAMLError as exc:
        report.add(1, f"YAML error: {exc}")
    finally:
        loader.dispose()
    return docs


def _line_for(lines: Mapping[Path_, int], path: Sequence[str | int], fallback: int) -> int:
    for n in range(len(path), -1, -1):
        line = lines.get(tuple(path[:n]))
        if line is not None:
            return line
    return fallback


def _where(loc: Sequence[str | int], message: str) -> str:
    return f"{dotted_location(loc)}: {message}" if loc else message


def _data_loc(data: Any, loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """The part of a pydantic error location that names places in the data (drops the
    union/validator tags pydantic inserts, keeps a final missing/extra key)."""
    out: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        in_dict = isinstance(current, dict) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            out.append(part)
            current = current[part]
        elif (
            i == len(loc) - 1
            and isinstance(current, dict)
            and isinstance(part, str)
            and not part.startswith("[")
        ):
            out.append(part)
    return tuple(out)


def _validation_problems(exc: ValidationError, data: Any) -> list[tuple[Path_, str]]:
    found: dict[tuple[Path_, str], None] = {}
    for error in exc.errors():
        loc = _data_loc(data, error["loc"])
        found[(loc, error_message(error))] = None
    return list(found)


# --------------------------------------------------------------------------- semantic checks


def _param_problems(rem: Remediation) -> list[tuple[Path_, str]]:
    """Params rendered with sample values must satisfy the action's model."""
    found: dict[tuple[Path_, str], None] = {}
    model = PARAMS_BY_ACTION[rem.action]
    leaves = list(string_leaves(rem.params, ("params",)))
    try:
        label_sets = sample_label_sets(*(text for _, text in leaves))
    except TemplateError as exc:
        return [(("params",), str(exc))]
    for labels in label_sets:
        rendered: dict[str, Any] = {}
        failed = False
        for key, value in rem.params.items():
            try:
                rendered[key] = render_param(value, key, labels)
            except TemplateError as exc:
                found[(("params", key), str(exc))] = None
                failed = True
        if failed:
            continue
        if rem.action in HOST_ACTIONS:
            # Without `host`, the alert's labels select it (clusters.yaml `select`) when proposed.
            rendered.setdefault("host", "selected-by-labels")
        try:
            model.model_validate(rendered)
        except ValidationError as exc:
            for error in exc.errors():
                loc = ("params", *_data_loc(rendered, error["loc"]))
                found[(loc, f"{error_message(error)} ({rem.action.value})")] = None
    return list(found)


def _policy_problems(rem: Remediation, policy: Policy) -> list[tuple[Path_, str]]:
    """Exec templates and approval rules must exist in the policy, within its bounds."""
    found: list[tuple[Path_, str]] = []
    if rem.approval != "default" and rem.approval not in policy.approvals:
        found.append((("approval",), f"approval rule {rem.approval!r} is not defined in {POLICY_FILE}"))
    if rem.action is ActionName.EXEC:
        found += _exec_problems(rem, policy.exec_templates, "exec")
    if rem.action is ActionName.HOST_COMMAND:
        found += _exec_problems(rem, policy.host_templates, "host")
    if rem.action is ActionName.SCALE and isinstance(rem.params.get("replicas"), int):
        rule = policy.rule_for(rem.action, rem.approval)
        problem = rule.scale_violation(None, rem.params["replicas"])
        if problem:
            found.append((("params", "replicas"), f"{problem} ({POLICY_FILE})"))
    return found


def _target_problems(rem: Remediation) -> list[tuple[Path_, str]]:
    """Each `targets` entry names a parameter of the remediation, and what the playbook itself
    fills in (a literal, or the default of ``${label:-default}``) is inside it."""
    found: list[tuple[Path_, str]] = []
    for key in rem.targets:
        value = rem.params.get(key)
        if not isinstance(value, str):
            found.append((("targets", key), f"the remediation has no {key} parameter to constrain"))
            continue
        try:
            fallback = render_param(value, key, {})
        except TemplateError:
            continue  # only an alert label fills it in: checked for each alert
        problem = rem.target_problem({key: fallback}, {})
        if problem:
            found.append((("targets", key), f"{key} {fallback!r} (without the alert's labels) is outside it"))
    return found


def _remediation_problems(rem: Remediation, policy: Policy | None) -> list[tuple[Path_, str]]:
    """Parameter and target problems, then policy problems (skipped when the policy is invalid)."""
    found = dict.fromkeys(_param_problems(rem) + _target_problems(rem))
    if policy is not None:
        found.update(dict.fromkeys(_policy_problems(rem, policy)))
    return list(found)


def _exec_problems(
    rem: Remediation, templates: Mapping[str, ExecTemplate], kind: str
) -> list[tuple[Path_, str]]:
    name = rem.params.get("template")
    if not isinstance(name, str):
        return []
    template = templates.get(name)
    if template is None:
        known = ", ".join(sorted(templates)) or "none defined"
        return [(("params", "template"), f"{kind} template {name!r} is not in {POLICY_FILE} ({known})")]
    args = rem.params.get("args", {})
    if not isinstance(args, dict):
        return []
    found: list[tuple[Path_, str]] = []
    for labels in sample_label_sets(*(v for v in args.values() if isinstance(v, str))):
        try:
            rendered = {k: render_plain(v, labels) if isinstance(v, str) else v for k, v in args.items()}
        except TemplateError as exc:
            return [(("params", "args"), str(exc))]
        found += [
            (("params", "args"), f"{p} ({kind} template {name!r})") for p in template.arg_problems(rendered)
        ]
    return list(dict.fromkeys(found))


def _playbook_problems(pb: Playbook, policy: Policy | None) -> list[tuple[Path_, str]]:
    found: list[tuple[Path_, str]] = []
    if pb.on_demand and not pb.match.is_empty:
        found.append((("match",), "on-demand playbooks are never matched against alerts; remove match"))
    if not pb.on_demand and pb.match.is_empty:
        found.append(((), "needs a match (alertname and/or labels), or on_demand: true"))
    for i, diag in enumerate(pb.diagnostics):
        if diag.kind in ("logs", "rollout_history") and diag.target is None:
            found.append((("diagnostics", i), f"{diag.kind} needs a target"))
        if diag.kind == "rollout_history" and diag.target_kind != "deployment":
            found.append((("diagnostics", i, "target_kind"), "rollout_history needs a deployment"))
        if diag.kind != "logs" and ({"tail_lines", "container"} & diag.model_fields_set):
            found.append((("diagnostics", i), "tail_lines/container apply to logs only"))
    for i, rem in enumerate(pb.remediations):
        found += [(("remediations", i, *path), msg) for path, msg in _remediation_problems(rem, policy)]
    return found


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True, slots=True)
class _Loaded:
    playbook: Playbook
    file: str
    line: int


def _load_policy(directory: Path, problems: list[Problem]) -> tuple[Policy, bool]:
    """The policy and whether it is valid (an invalid one is replaced by the safe default)."""
    path = directory / POLICY_FILE
    if not path.exists():
        return Policy(), True
    report = _Report(str(path))
    docs = _read_documents(path, report)
    policy: Policy | None = None
    if len(docs) > 1:
        report.add(docs[1].line, f"{POLICY_FILE} must be a single YAML document")
    if docs:
        doc = docs[0]
        if not isinstance(doc.data, dict):
            report.add(doc.line, f"{POLICY_FILE} must be a mapping")
        else:
            try:
                policy = Policy.model_validate(doc.data)
            except ValidationError as exc:
                for loc, msg in _validation_problems(exc, doc.data):
                    report.add(_line_for(doc.lines, loc, doc.line), _where(loc, msg))
            if policy is not None:
                for loc, msg in [*policy.problems(), *policy.lifecycle.problems(policy.roles)]:
                    report.add(_line_for(doc.lines, loc, doc.line), _where(loc, msg))
    elif not report.problems:
        policy = Policy()
    problems += report.problems
    ok = policy is not None and not report.problems
    return (policy if policy is not None else Policy()), ok


def _playbook_files(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file()
        and p.suffix in (".yaml", ".yml")
        and p.name not in (POLICY_FILE, "policy.yml", *CATALOG_FILES)
        and p.name not in NOT_PLAYBOOKS
    )


def _load_file(path: Path, policy: Policy | None, problems: list[Problem]) -> list[_Loaded]:
    report = _Report(str(path))
    loaded: list[_Loaded] = []
    for doc in _read_documents(path, report):
        if isinstance(doc.data, dict):
            items: list[tuple[Path_, Any]] = [((), doc.data)]
        elif isinstance(doc.data, list):
            items = [((i,), item) for i, item in enumerate(doc.data)]
        else:
            report.add(doc.line, "expected a playbook (a mapping) or a list of playbooks")
            continue
        for prefix, raw in items:
            start = _line_for(doc.lines, prefix, doc.line)
            if not isinstance(raw, dict):
                report.add(start, "expected a playbook (a mapping)")
                continue
            label = f"playbook {raw['name']!r}" if isinstance(raw.get("name"), str) else "playbook"
            try:
                pb = Playbook.model_validate(raw)
            except ValidationError as exc:
                for loc, msg in _validation_problems(exc, raw):
                    report.add(_line_for(doc.lines, (*prefix, *loc), start), f"{label}: {_where(loc, msg)}")
                # Still check the remediations that are valid on their own.
                for i, rem_raw in enumerate(raw.get("remediations") or []):
                    try:
                        rem = Remediation.model_validate(rem_raw)
                    except ValidationError:
                        continue
                    for loc, msg in _remediation_problems(rem, policy):
                        full = ("remediations", i, *loc)
                        report.add(
                            _line_for(doc.lines, (*prefix, *full), start), f"{label}: {_where(full, msg)}"
                        )
                continue
            for loc, msg in _playbook_problems(pb, policy):
                report.add(_line_for(doc.lines, (*prefix, *loc), start), f"{label}: {_where(loc, msg)}")
            loaded.append(_Loaded(pb, str(path), start))
    problems += report.problems
    return loaded


def load_with_problems(directory: Path) -> tuple[PlaybookSet, list[Problem]]:
    directory = Path(directory)
    problems: list[Problem] = []
    if not directory.is_dir():
        return PlaybookSet([]), [Problem(str(directory), 0, "playbook directory not found")]
    policy, policy_ok = _load_policy(directory, problems)
    loaded: list[_Loaded] = []
    for path in _playbook_files(directory):
        loaded += _load_file(path, policy if policy_ok else None, problems)
    first: dict[str, _Loaded] = {}
    same_match: dict[tuple[object, ...], _Loaded] = {}
    unique: list[Playbook] = []
    for item in loaded:
        pb = item.playbook
        earlier = first.get(pb.name)
        if earlier is not None:
            problems.append(
                Problem(
                    item.file,
                    item.line,
                    f"duplicate playbook name {pb.name!r} (first at {earlier.file}:{earlier.line})",
                )
            )
            continue
        first[pb.name] = item
        unique.append(pb)
        if pb.on_demand or pb.match.is_empty:
            continue
        key = pb.match.identity()
        shadow = same_match.get(key)
        if shadow is not None:
            problems.append(
                Problem(
                    item.file,
                    item.line,
                    f"playbook {pb.name!r} has the same matchers as {shadow.playbook.name!r} "
                    f"({shadow.file}:{shadow.line}), which always wins",
                )
            )
        else:
            same_match[key] = item
    return PlaybookSet(unique, policy), sorted(problems)


def load_playbooks(directory: Path | str = DEFAULT_PLAYBOOKS_DIR) -> PlaybookSet:
    """Load and validate a playbook directory; raises PlaybookError listing every problem."""
    playbooks, problems = load_with_problems(Path(directory))
    if problems:
        raise PlaybookError(problems)
    return playbooks


# --------------------------------------------------------------------------- the set and matching
