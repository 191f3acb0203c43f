"""Allow-listed command templates (policy.yaml `exec_templates` and `host_templates`): an argv
with ``{arg}`` placeholders, each argument constrained by a full-match regular expression.

A template is never a shell line: every placeholder fills one argv element, or part of one, with
a value that fully matched its pattern; the command is run as that argv (a pod's exec, or an
SSH command line the client builds by quoting each element). A value that does not match is
refused before anything runs.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    model_validator,
)

__all__ = ["ArgName", "ExecArg", "ExecTemplate", "HostTemplate", "TemplateName"]

ArgName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
TemplateName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


def _compile_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
    return pattern


Regex = Annotated[str, AfterValidator(_compile_regex)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ExecArg(_Model):
    pattern: Regex = Field(description="full-match regular expression every value must satisfy")
    description: str = ""


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([a-z][a-z0-9_]*)\}|[{}]")


def _placeholders(part: str) -> list[str]:
    names: list[str] = []
    for m in _PLACEHOLDER.finditer(part):
        token = m.group(0)
        if token in ("{{", "}}"):
            continue
        if m.group(1) is None:
            raise ValueError(
                f"stray {token!r} in {part!r}: write {{name}} for an argument, {{{{ or }}}} for a brace"
            )
        names.append(m.group(1))
    return names


class ExecTemplate(_Model):
    argv: list[str] = Field(min_length=1, max_length=64, description="command and arguments; never a shell")
    args: dict[ArgName, ExecArg] = Field(default_factory=dict, max_length=10)
    description: str = ""

    _compiled: dict[str, re.Pattern[str]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `name: [argv...]` is shorthand for a template without arguments.
        return {"argv": data} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _check_placeholders(self) -> ExecTemplate:
        if not self.argv[0].strip():
            raise ValueError("argv[0] (the command) must not be empty")
        used = {name for part in self.argv for name in _placeholders(part)}
        undeclared = sorted(used - set(self.args))
        if undeclared:
            raise ValueError(
                f"argv uses undeclared argument(s) {', '.join(undeclared)}; declare them under args"
            )
        unused = sorted(set(self.args) - used)
        if unused:
            raise ValueError(f"argument(s) {', '.join(unused)} declared but not used in argv")
        return self

    def model_post_init(self, __context: Any) -> None:
        self._compiled = {name: re.compile(arg.pattern) for name, arg in self.args.items()}

    def arg_problems(self, args: Mapping[str, str]) -> list[str]:
        """Why these argument values cannot be used (empty list: they can)."""
        problems = [f"missing argument {name!r}" for name in self.args if name not in args]
        problems += [f"unknown argument {name!r}" for name in args if name not in self.args]
        for name, value in args.items():
            pattern = self._compiled.get(name)
            if pattern is None:
                continue
            if not isinstance(value, str):
                problems.append(f"argument {name!r} must be a string")
            elif "\x00" in value or pattern.fullmatch(value) is None:
                problems.append(f"argument {name!r} = {value!r} does not match {pattern.pattern!r}")
        return problems

    def render(self, args: Mapping[str, str]) -> list[str]:
        """The argv to execute with `args` filled in; raises ValueError on any bad argument."""
        problems = self.arg_problems(args)
        if problems:
            raise ValueError("; ".join(problems))

        return _fill(self.argv, args)


def _fill(argv: list[str], args: Mapping[str, str]) -> list[str]:
    def fill(m: re.Match[str]) -> str:
        token = m.group(0)
        if token in ("{{", "}}"):
            return token[0]
        return args[m.group(1)]

    return [_PLACEHOLDER.sub(fill, part) for part in argv]


PREVIOUS = "previous"


class HostUndo(_Model):
    """What puts a host template's change back: another template, its arguments filled from
    this one's (`{arg}`) and `{previous}`, the number of lines the preview printed before the
    change (one per container for `docker compose ps --format json`)."""

    template: TemplateName
    args: dict[ArgName, str] = Field(default_factory=dict, max_length=10)


class HostTemplate(ExecTemplate):
    """A command a host action may run (over SSH now): the argv, a read-only `preview` that
    shows the state before (and after, for the verification), and whether it runs through
    `sudo -n` (the dedicated account's sudoers allows exactly these argvs: `incidentbot
    sudoers`)."""

    preview: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="read-only argv (same placeholders) run before and after, e.g. systemctl show",
    )
    sudo: bool = Field(
        default=False, description="run as `sudo -n <argv>` (the account's sudoers allows exactly it)"
    )
    timeout_seconds: int = Field(default=60, ge=1, le=3600, description="the command's time limit")
    undo: HostUndo | None = Field(
        default=None, description="the template (and arguments) that undoes it, e.g. scale back"
    )

    @model_validator(mode="after")
    def _check_preview(self) -> HostTemplate:
        if self.preview is None:
            return self
        used = {name for part in self.preview for name in _placeholders(part)}
        undeclared = sorted(used - set(self.args))
        if undeclared:
            raise ValueError(f"preview uses undeclared argument(s) {', '.join(undeclared)}")
        return self

    @model_validator(mode="after")
    def _check_undo(self) -> HostTemplate:
        if self.undo is None:
            return self
        used = {name for value in self.undo.args.values() for name in _placeholders(value)}
        undeclared = sorted(used - set(self.args) - {PREVIOUS})
        if undeclared:
            raise ValueError(f"undo uses undeclared argument(s) {', '.join(undeclared)}")
        if PREVIOUS in used and self.preview is None:
            raise ValueError("undo uses {previous}, which needs a preview")
        return self

    def undo_args(self, args: Mapping[str, str], previous: int | None) -> dict[str, str] | None:
        """The undo template's arguments for a run with `args`; None without an undo, or when
        it needs `{previous}` and the preview counted nothing."""
        if self.undo is None:
            return None
        values = {**args, PREVIOUS: str(previous) if previous is not None else ""}
        used = {name for value in self.undo.args.values() for name in _placeholders(value)}
        if PREVIOUS in used and previous is None:
            return None
        return {key: _fill([value], values)[0] for key, value in self.undo.args.items()}

    def command(self, args: Mapping[str, str]) -> list[str]:
        """The argv to run (with `sudo -n` in front when the template says so)."""
        argv = self.render(args)
        return ["sudo", "-n", *argv] if self.sudo else argv

    def preview_command(self, args: Mapping[str, str]) -> list[str] | None:
        """The read-only argv, or None; raises ValueError on any bad argument."""
        if self.preview is None:
            return None
        problems = self.arg_problems(args)
        if problems:
            raise ValueError("; ".join(problems))
        argv = _fill(self.preview, args)
        return ["sudo", "-n", *argv] if self.sudo else argv
