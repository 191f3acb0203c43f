"""Exec in a pod: WebSocket `pods/exec` (v4.channel.k8s.io) with an argv, never a shell string.

The argv comes from an allow-listed template (policy.yaml); exec has no dry run, so its
preview checks the pod and the container instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from bot.clients.kubernetes.api import KubeApi
from bot.clients.kubernetes.context import Expectation, Request, checked_preview, refuse_if_changed
from bot.clients.kubernetes.errors import SYSTEM, api_error, transport_error
from bot.clients.kubernetes.objects import JSON, dig, dig_dicts, pod_label, resource_version
from bot.clients.kubernetes.results import ExecResult, Preview, Result
from bot.clients.kubernetes.sdk import exec_stream
from bot.core.actions import ExecParams
from bot.core.errors import IntegrationError, UserError

STDOUT, STDERR, STATUS = 1, 2, 3  # v4.channel.k8s.io channel numbers
EXEC_TIMEOUT = 30.0  # seconds


def check_argv(argv: Sequence[str] | None) -> list[str]:
    if argv is None or isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
        raise UserError("exec needs an argv (a list of strings expanded from an allow-listed template)")
    return list(argv)


def argv_lines(argv: Sequence[str]) -> list[str]:
    """The command as a person reads it: one argument a line, as the program receives it (no
    shell quoting to decode; a line break inside an argument shown as ⏎)."""
    return [f"  argv[{n}]: {arg.replace(chr(10), '⏎')}" for n, arg in enumerate(argv)]


def _exec_container(pod: JSON, container: str | None) -> str:
    names = [str(c.get("name")) for c in dig_dicts(pod, "spec", "containers")]
    if container is not None:
        if container not in names:
            raise UserError(
                f"pod {pod_label(pod)} has no container {container!r} (containers: {', '.join(names)})"
            )
        return container
    if not names:
        raise UserError(f"pod {pod_label(pod)} has no containers")
    return names[0]  # kubectl's default: the first container


# --------------------------------------------------------------------------- the action


async def preview_exec(api: KubeApi, p: ExecParams, req: Request) -> Preview:
    command = check_argv(req.argv)
    pod = await api.read_pod(p.namespace, p.pod)
    container = _exec_container(pod, p.container)
    phase = dig(pod, "status", "phase")
    lines = [
        f"run in pod {p.namespace}/{p.pod} container {container} (template {p.template}), no shell:",
        *argv_lines(command),
        "exec has no dry run; the pod and container were checked",
    ]
    problem = None if phase == "Running" else f"pod {p.namespace}/{p.pod} is {phase}, not Running"
    return checked_preview(req.action, f"pod {p.namespace}/{p.pod}", "pod", pod, lines, problem)


async def exec_action(api: KubeApi, p: ExecParams, req: Request, expect: Expectation) -> Result:
    command = check_argv(req.argv)
    pod = await api.read_pod(p.namespace, p.pod)
    refuse_if_changed("pod", f"{p.namespace}/{p.pod}", pod, expect)
    result = await run_exec(api, p.namespace, p.pod, command, p.container, EXEC_TIMEOUT)
    return Result(
        req.action,
        f"pod {p.namespace}/{p.pod}",
        [
            f"ran {command[0]} (template {p.template}) in pod {p.namespace}/{p.pod}: exit code {result.exit_code}"
        ],
        resource_version=resource_version(pod),
        complete=result.ok,
        exec_result=result,
    )


# --------------------------------------------------------------------------- the stream


@dataclass(slots=True)
class _Output:
    stdout: list[bytes] = field(default_factory=list)
    stderr: list[bytes] = field(default_factory=list)
    status: JSON | None = None  # the Status on the error channel, sent last

    def add(self, data: bytes) -> None:
        if len(data) < 2:
            return
        channel, payload = data[0], data[1:]
        if channel == STDOUT:
            self.stdout.append(payload)
        elif channel == STDERR:
            self.stderr.append(payload)
        elif channel == STATUS:
            parsed: object = json.loads(payload)
            self.status = parsed if isinstance(parsed, dict) else {"message": str(parsed)}


async def _stream(
    api: KubeApi, namespace: str, pod: str, command: list[str], container: str, timeout: float
) -> _Output:
    what = f"exec in pod {namespace}/{pod}"
    output = _Output()
    ws_client = api.ws_factory()
    try:
        context = await exec_stream(client.CoreV1Api(api_client=ws_client)).connect_get_namespaced_pod_exec(
            pod,
            namespace,
            command=command,
            container=container,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        async with asyncio.timeout(timeout), context as ws:
            async for msg in ws:
                if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    break
                output.add(msg.data if isinstance(msg.data, bytes) else str(msg.data).encode())
    except ApiException as exc:
        raise api_error(what, exc) from exc
    except aiohttp.WSServerHandshakeError as exc:
        raise IntegrationError(
            SYSTEM, f"{what} failed ({exc.status}): {exc.message}", status=exc.status
        ) from exc
    except TimeoutError as exc:
        raise IntegrationError(SYSTEM, f"{what} timed out after {timeout:g}s") from exc
    except aiohttp.ClientError as exc:
        raise transport_error(what, exc) from exc
    finally:
        await ws_client.close()
    return output


def _exit_code(what: str, status: JSON | None) -> int:
    """The exit code in the Status the exec channel ended with (IntegrationError if none)."""
    if status is None:
        raise IntegrationError(SYSTEM, f"{what}: the connection closed without an exit status")
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for exit_cause in dig_dicts(status, "details", "causes"):
            if exit_cause.get("reason") == "ExitCode":
                return int(str(exit_cause.get("message", "1")))
    raise IntegrationError(SYSTEM, f"{what} failed: {status.get('message') or status}")


async def run_exec(
    api: KubeApi, namespace: str, pod: str, argv: Sequence[str], container: str | None, timeout: float
) -> ExecResult:
    """Run `argv` (never a shell string) in a pod over the v4.channel.k8s.io WebSocket."""
    command = check_argv(argv)
    label = f"{namespace}/{pod}"
    pod_obj = await api.read_pod(namespace, pod)
    chosen = _exec_container(pod_obj, container)
    if dig(pod_obj, "status", "phase") != "Running":
        raise UserError(f"pod {label} is {dig(pod_obj, 'status', 'phase')}, not Running")
    output = await _stream(api, namespace, pod, command, chosen, timeout)
    out = b"".join(output.stdout).decode(errors="replace")
    err = b"".join(output.stderr).decode(errors="replace")
    return ExecResult(out, err, _exit_code(f"exec in pod {label}", output.status))
