"""Host actions: the policy's `host_templates` run on the hosts of clusters.yaml through a
transport (`bot.core.ports.HostTransport`: SSH, or the Docker Engine API).

The template's arguments are checked against their patterns before anything is sent; the
read-only `preview` argv runs at proposal time (the "before") and again right after the
command (the "after"), so the thread shows what changed. Which host: the one named (ad hoc,
undo), else the one whose `select` labels the alert carries.

Everything else (policy, approvals, exactly-once claim, audit, verification) is the same
machinery as the Kubernetes actions: `propose`, `execute` and `verify` call in here only for
the part that touches the host.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from bot.clients.kubernetes.results import ExecResult, Result
from bot.core.actions import ActionName, HostCommandParams
from bot.core.argv import HostTemplate
from bot.core.docker_ops import NOT_SUPPORTED, docker_operation
from bot.core.errors import IntegrationError, UserError
from bot.core.hosts import HostSpec, Transport, check_named, host_for
from bot.core.policy import Policy
from bot.core.ports import CommandOutput, HostTransport
from bot.core.runs import PreviewInfo

__all__ = ["HostActions", "host_template"]

# Lines of a preview's output kept for the proposal (each stored and shown in Slack).
PREVIEW_LINES = 12
PREVIEW_WIDTH = 200


def host_template(policy: Policy, params: HostCommandParams) -> tuple[HostTemplate, list[str]]:
    """The allow-listed template and its argv with the checked arguments (UserError: refused,
    before anything runs)."""
    template = policy.host_templates.get(params.template)
    if template is None:
        known = ", ".join(f"`{n}`" for n in sorted(policy.host_templates)) or "none are defined"
        raise UserError(f"host template `{params.template}` is not allow-listed in policy.yaml ({known}).")
    problems = template.arg_problems(params.args)
    if problems:
        raise UserError(f"host template `{params.template}`: " + "; ".join(problems))
    return template, template.command(params.args)


def _lines(output: CommandOutput) -> tuple[str, ...]:
    text = output.stdout if output.ok else (output.stderr or output.stdout)
    lines = [line[:PREVIEW_WIDTH] for line in text.splitlines() if line.strip()]
    if len(lines) > PREVIEW_LINES:
        lines = [*lines[:PREVIEW_LINES], f"… {len(lines) - PREVIEW_LINES} more line(s)"]
    return tuple(lines)


@dataclass(frozen=True, slots=True)
class HostActions:
    """The hosts of clusters.yaml and how each is reached (SSH or the Docker Engine API; a host
    given no transport is listed but cannot run anything)."""

    hosts: Mapping[str, HostSpec]
    transports: Mapping[str, HostTransport]
    policy: Policy

    def select(self, labels: Mapping[str, str] | None) -> str:
        return host_for(self.hosts, labels)

    def named(self, name: str) -> str:
        return check_named(self.hosts, name)

    def transport(self, name: str) -> HostTransport | None:
        return self.transports.get(name)

    def label(self, name: str) -> str:
        transport = self.transports.get(name)
        if transport is None:
            return f"host `{name}` (not reachable: no transport configured)"
        return f"host `{name}` ({transport.where})"

    def timeout(self, params: HostCommandParams) -> float:
        template = self.policy.host_templates.get(params.template)
        return float(template.timeout_seconds) if template is not None else 60.0

    async def preview(self, params: HostCommandParams) -> PreviewInfo:
        """What will run and, from the template's read-only preview, the state before."""
        template, argv = host_template(self.policy, params)
        label = self.label(params.host)
        lines = [f"runs `{shlex.join(argv)}` on {label}"]
        transport = self.transports.get(params.host)
        problem = self._unrunnable(params.host, argv)
        if transport is None or problem is not None:
            problem = problem or f"{label}: nothing can run there"
            return PreviewInfo(summary_lines=(*lines, problem), problem=problem, cluster=label)
        preview_argv = template.preview_command(params.args)
        if preview_argv is not None:
            try:
                before = await transport.run(preview_argv, timeout_s=self.timeout(params))
            except (IntegrationError, TimeoutError) as err:
                problem = f"could not preview: {_why(err)}"
                return PreviewInfo(summary_lines=(*lines, problem), problem=problem, cluster=label)
            lines.append(f"before (`{shlex.join(preview_argv)}`, exit {before.exit_status}):")
            lines += _lines(before)
            if template.undo is not None and before.ok:
                # `{previous}` of the undo: e.g. one line per container of a compose service.
                previous = len([line for line in before.stdout.splitlines() if line.strip()])
                return PreviewInfo(
                    summary_lines=tuple(lines),
                    dry_run_ok=True,
                    target_exists=True,
                    current_replicas=previous,
                    cluster=label,
                )
        return PreviewInfo(summary_lines=tuple(lines), dry_run_ok=True, target_exists=True, cluster=label)

    def _unrunnable(self, host: str, argv: list[str]) -> str | None:
        """Why `argv` cannot run on `host` whatever is approved (a Docker host has no equivalent of
        e.g. `compose up --scale`): said at proposal time, so nobody approves a certain failure."""
        spec = self.hosts.get(host)
        if spec is not None and spec.transport is Transport.DOCKER and docker_operation(argv) is None:
            return f"`{shlex.join(argv)}` {NOT_SUPPORTED} on host `{host}`: nothing can run there"
        return None

    def undo_of(self, params: HostCommandParams, previous: int | None) -> HostCommandParams | None:
        """The host command that puts back what `params` changed (the template's `undo`), or None."""
        template = self.policy.host_templates.get(params.template)
        args = template.undo_args(params.args, previous) if template is not None else None
        if template is None or template.undo is None or args is None:
            return None
        return HostCommandParams(host=params.host, template=template.undo.template, args=args)

    async def execute(self, params: HostCommandParams, target: str) -> Result:
        """Run the command once, then the preview again for the "after". Raises UserError
        (refused: nothing ran), IntegrationError (unreachable, host key: nothing ran) or
        TimeoutError (it may have started)."""
        template, argv = host_template(self.policy, params)
        transport = self.transports.get(params.host)
        if transport is None:
            raise UserError(f"{self.label(params.host)}: nothing can run there")
        output = await transport.run(argv, timeout_s=self.timeout(params))
        changes = [f"`{shlex.join(argv)}` exited with {output.exit_status}"]
        preview_argv = template.preview_command(params.args)
        if output.ok and preview_argv is not None:
            try:
                after = await transport.run(preview_argv, timeout_s=self.timeout(params))
                changes.append("after: " + (", ".join(_lines(after)) or "(no output)"))
            except (IntegrationError, TimeoutError) as err:
                changes.append(f"after: unknown ({_why(err)})")
        return Result(
            action=ActionName.HOST_COMMAND,
            target=target,
            changes=changes,
            complete=output.ok,
            exec_result=ExecResult(output.stdout, output.stderr, output.exit_status),
        )


def _why(err: IntegrationError | TimeoutError) -> str:
    return err.message if isinstance(err, IntegrationError) else "timed out"
