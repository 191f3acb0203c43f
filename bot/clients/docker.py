"""Docker Engine API adapter: a Docker host's containers through ``aiodocker``.

One client per Docker host, reached over ``unix:///path/docker.sock`` or ``tcp://host:port``
(TLS with a client certificate when a CA or certificate is given, as ``dockerd --tlsverify``
requires). The API version is negotiated from ``GET /version``, so engines that dropped old
versions still answer.

Compose services are found by the labels Docker Compose puts on every container it creates
(``com.docker.compose.project``/``service``), so no compose file or CLI is needed on the host.

Every SDK or transport failure becomes ``IntegrationError(system="docker")`` whose message
names the host and the engine's own words (``No such container: x``); ``status`` is the
engine's HTTP status (404 unknown container, 409 container not running) or None when the engine
did not answer (unreachable, timed out). A write that timed out is ``maybe_applied``.

Access to the Docker API is root-equivalent on that host: point this at a socket proxy that
allows only the container endpoints (see README, "Docker hosts").
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import ssl
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self, TypeVar, assert_never

import aiodocker
import aiohttp
from aiodocker.containers import DockerContainer

from bot.core.docker_ops import (
    NOT_SUPPORTED,
    DockerOperation,
    Exec,
    ListService,
    RestartContainer,
    RestartService,
    docker_operation,
)
from bot.core.errors import ConfigError, IntegrationError, UserError
from bot.core.hosts import DockerAccess
from bot.core.ports import CommandOutput
from bot.obs import logs

__all__ = ["ContainerInfo", "ContainerSummary", "DockerClient", "DockerHost", "ExecOutput"]

log = logs.logger(logs.Component.DOCKER)

SYSTEM = "docker"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
ONEOFF_LABEL = "com.docker.compose.oneoff"
OUTPUT_LIMIT = 64 * 1024  # bytes of exec output kept (the end: where a script says what failed)
MAX_LOG_LINES = 1000
UNREACHABLE = 900  # aiodocker's status for "Cannot connect to Docker Engine"
T = TypeVar("T")
_FRACTION = re.compile(r"(\.\d{6})\d+")
_LISTED = ("Id", "Names", "Labels", "State", "Status")


@dataclass(frozen=True, slots=True)
class ContainerSummary:
    """A container as listed: its compose identity and state (``running``, ``exited``, ...)."""

    id: str
    name: str
    project: str | None
    service: str | None
    number: int | None
    state: str
    status: str  # the engine's words, e.g. "Up 2 hours (healthy)"


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """A container inspected, without secrets: environment variable names only.

    ``restart_count`` counts restarts made by the restart policy (the engine's count; a manual
    restart does not change it): a restart shows as a new ``started_at``."""

    id: str
    name: str
    image: str
    state: str
    running: bool
    exit_code: int
    restart_count: int
    started_at: datetime | None
    finished_at: datetime | None
    health: str | None
    project: str | None
    service: str | None
    env_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExecOutput:
    exit_code: int
    output: str  # stdout and stderr in the order they came, the last OUTPUT_LIMIT bytes
    truncated: bool


def _engine_url(url: str, tls: bool) -> str:
    if url.startswith("unix://"):
        if tls:
            raise ConfigError(f"Docker TLS settings need a tcp:// address, not {url!r}")
        if not url.removeprefix("unix://").startswith("/"):
            raise ConfigError(f"Docker socket must be an absolute path: {url!r}")
        return url
    match = re.fullmatch(r"tcp://([^/:]+|\[[0-9a-fA-F:]+\]):(\d{1,5})", url)
    if match is None:
        raise ConfigError(f"Docker address must be unix:///path or tcp://host:port, got {url!r}")
    return f"{'https' if tls else 'http'}://{match.group(1)}:{match.group(2)}"


def _tls_context(ca_file: str | None, cert_file: str | None, key_file: str | None) -> ssl.SSLContext | None:
    if ca_file is None and cert_file is None and key_file is None:
        return None
    if (cert_file is None) != (key_file is None):
        raise ConfigError("Docker TLS needs both a client certificate and its key")
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
        if cert_file is not None and key_file is not None:
            ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(f for f in (ca_file, cert_file, key_file) if f is not None)
        raise ConfigError(f"Docker TLS files ({files}) are unusable: {exc}") from exc
    return ctx


def _time(value: object) -> datetime | None:
    """The engine's RFC 3339 times carry nanoseconds; ``0001-01-01`` means never."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", value))
    except ValueError:
        return None


def _number(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _summary(raw: dict[str, Any]) -> ContainerSummary:
    labels: dict[str, str] = raw.get("Labels") or {}
    names: list[str] = raw.get("Names") or []
    return ContainerSummary(
        id=str(raw.get("Id", "")),
        name=(names[0] if names else str(raw.get("Id", ""))[:12]).removeprefix("/"),
        project=labels.get(PROJECT_LABEL),
        service=labels.get(SERVICE_LABEL),
        number=_number(labels.get(NUMBER_LABEL)),
        state=str(raw.get("State", "")),
        status=str(raw.get("Status", "")),
    )


def _info(raw: dict[str, Any]) -> ContainerInfo:
    state: dict[str, Any] = raw.get("State") or {}
    config: dict[str, Any] = raw.get("Config") or {}
    labels: dict[str, str] = config.get("Labels") or {}
    health = state.get("Health")
    return ContainerInfo(
        id=str(raw.get("Id", "")),
        name=str(raw.get("Name", "")).removeprefix("/"),
        image=str(config.get("Image", "")),
        state=str(state.get("Status", "")),
        running=bool(state.get("Running")),
        exit_code=int(state.get("ExitCode") or 0),
        restart_count=int(raw.get("RestartCount") or 0),
        started_at=_time(state.get("StartedAt")),
        finished_at=_time(state.get("FinishedAt")),
        health=str(health["Status"]) if isinstance(health, dict) and "Status" in health else None,
        project=labels.get(PROJECT_LABEL),
        service=labels.get(SERVICE_LABEL),
        # Values are dropped here, at the edge: they hold passwords and tokens.
        env_names=tuple(str(e).partition("=")[0] for e in config.get("Env") or ()),
    )


def check_argv(argv: Sequence[str]) -> list[str]:
    if isinstance(argv, str) or not argv or not all(isinstance(a, str) and "\0" not in a for a in argv):
        raise UserError("exec needs an argv (a list of strings expanded from an allow-listed template)")
    return list(argv)


class DockerClient:
    """The containers of one Docker host. Build it inside the running event loop; close it."""

    def __init__(
        self,
        host: str,
        url: str,
        *,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        request_timeout: float = 10.0,
    ) -> None:
        engine_url = _engine_url(url, tls=any(f is not None for f in (ca_file, cert_file, key_file)))
        tls = _tls_context(ca_file, cert_file, key_file)
        self.host = host
        self._url = url
        self._timeout = request_timeout
        self._docker = aiodocker.Docker(url=engine_url, ssl_context=tls)

    async def close(self) -> None:
        await self._docker.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- reads -------------------------------------------------------------------------------

    async def ping(self) -> str:
        """The engine's version (a reachability check)."""
        raw = await self._call("version", self._docker.version(), self._timeout)
        return str(raw.get("Version", ""))

    async def containers(self, project: str, service: str | None = None) -> list[ContainerSummary]:
        """Containers (running or not) of a compose project, or of one of its services."""
        labels = [f"{PROJECT_LABEL}={project}", f"{ONEOFF_LABEL}=False"]
        if service is not None:
            labels.append(f"{SERVICE_LABEL}={service}")
        what = f"list containers of {project}{'/' + service if service else ''}"
        found = await self._call(
            what, self._docker.containers.list(all=True, filters={"label": labels}), self._timeout
        )
        listed = [{key: c[key] for key in _LISTED if key in c} for c in found]
        return sorted(map(_summary, listed), key=lambda c: (c.service or "", c.number or 0))

    async def inspect(self, container: str) -> ContainerInfo:
        raw = await self._call(f"inspect {container}", self._container(container).show(), self._timeout)
        return _info(raw)

    async def logs_tail(self, container: str, lines: int = 100, *, timestamps: bool = False) -> list[str]:
        """The last ``lines`` lines (1 to 1000) of stdout and stderr."""
        if not 1 <= lines <= MAX_LOG_LINES:
            raise UserError(f"logs: lines must be between 1 and {MAX_LOG_LINES}, got {lines}")
        pieces = await self._call(
            f"logs of {container}",
            self._container(container).log(stdout=True, stderr=True, tail=lines, timestamps=timestamps),
            self._timeout,
        )
        return "".join(pieces).splitlines()[-lines:]

    # -- writes ------------------------------------------------------------------------------

    async def restart_container(self, container: str, timeout: int = 10) -> None:
        """``docker restart -t timeout``: stop (SIGKILL after ``timeout`` seconds), start."""
        if timeout < 0:
            raise UserError(f"restart: the stop timeout must not be negative, got {timeout}")
        await self._call(
            f"restart {container}",
            self._container(container).restart(t=timeout),
            timeout + self._timeout,
            write=True,
        )
        log.info("docker.restarted", extra={"host": self.host, "container": container})

    async def restart_service(self, project: str, service: str, timeout: int = 10) -> list[str]:
        """Restart every container of a compose service, one at a time (so some keep serving);
        return their names. No such container is an error, never a silent success."""
        found = await self.containers(project, service)
        if not found:
            raise IntegrationError(
                SYSTEM,
                f"{self.host}: no containers of compose service {project}/{service} "
                f"(labels {PROJECT_LABEL}={project}, {SERVICE_LABEL}={service})",
                status=404,
            )
        done: list[str] = []
        for item in found:
            try:
                await self.restart_container(item.name, timeout)
            except IntegrationError as exc:
                if not done:
                    raise
                raise IntegrationError(
                    SYSTEM,
                    f"{exc.message} (already restarted: {', '.join(done)})",
                    status=exc.status,
                    maybe_applied=True,
                ) from exc
            done.append(item.name)
        return done

    async def exec(self, container: str, argv: Sequence[str], timeout: float) -> ExecOutput:
        """Run ``argv`` (no shell) in a running container; wait at most ``timeout`` seconds."""
        command = check_argv(argv)
        what = f"exec {command[0]} in {container}"
        result = await self._call(what, self._exec(container, command), timeout, write=True)
        log.info(
            "docker.exec",
            extra={"host": self.host, "container": container, "argv": command, "exit_code": result.exit_code},
        )
        return result

    async def _exec(self, container: str, argv: list[str]) -> ExecOutput:
        instance = await self._container(container).exec(argv, stdout=True, stderr=True, tty=False)
        output = bytearray()
        truncated = False
        async with instance.start(detach=False) as stream:
            while (message := await stream.read_out()) is not None:
                output += message.data
                if len(output) > OUTPUT_LIMIT:
                    del output[: len(output) - OUTPUT_LIMIT]
                    truncated = True
        exit_code = (await instance.inspect()).get("ExitCode")
        if not isinstance(exit_code, int):
            raise IntegrationError(SYSTEM, f"{self.host}: the engine reported no exit code for {argv[0]}")
        return ExecOutput(exit_code, output.decode(errors="replace"), truncated)

    # -- plumbing ----------------------------------------------------------------------------

    def _container(self, name: str) -> DockerContainer:
        if not name or "/" in name:
            raise UserError(f"not a container name: {name!r}")
        return self._docker.containers.container(name)

    async def _call(self, what: str, call: Awaitable[T], timeout: float, *, write: bool = False) -> T:
        try:
            async with asyncio.timeout(timeout):
                return await call
        except TimeoutError as exc:
            raise IntegrationError(
                SYSTEM,
                f"{self.host}: {what} timed out after {timeout:g}s"
                + ("; it may still be running on the host" if write else ""),
                maybe_applied=write,
            ) from exc
        except aiodocker.DockerError as exc:
            raise self._engine_error(what, exc, write) from exc
        except aiohttp.ClientError as exc:
            raise IntegrationError(
                SYSTEM, f"{self.host}: {what} failed: {type(exc).__name__}: {exc}", maybe_applied=write
            ) from exc

    def _engine_error(self, what: str, exc: aiodocker.DockerError, write: bool) -> IntegrationError:
        status = int(exc.status)
        if status == UNREACHABLE:
            return IntegrationError(
                SYSTEM,
                f"{self.host}: {what} failed: Docker engine at {self._url} is unreachable: {exc.message}",
            )
        kind = {404: "not found", 409: "conflict"}.get(status, f"HTTP {status}")
        return IntegrationError(
            SYSTEM,
            f"{self.host}: {what} failed ({kind}): {exc.message}",
            status=status,
            maybe_applied=write and status >= 500,
        )


# -- the host transport ----------------------------------------------------------------------

UNSUPPORTED = 127  # the shell's "command not found": the argv has no Engine API equivalent
# An exec's own deadline lies past the template's, so the template's timeout is what fires.
_EXEC_GRACE_S = 5.0


def _ps_line(c: ContainerSummary) -> str:
    """One container as `docker compose ps --format json` prints it (one JSON object a line)."""
    fields = {"ID": c.id[:12], "Name": c.name, "Project": c.project, "Service": c.service}
    return json.dumps({**fields, "State": c.state, "Status": c.status}) + "\n"


class DockerHost:
    """One host of clusters.yaml reached through its Docker Engine API
    (`bot.core.ports.HostTransport`): the policy's `docker ...` templates run as the Engine API
    operations they stand for (`bot.core.docker_ops`), never through a CLI or a shell.

    Only containers of the host's `projects` are touched: a container named in a template is
    inspected first, and one of another project (or named by an id prefix) is refused with
    nothing run. A client per command, as SSH opens a connection per command: host actions are
    rare, nothing stays open between them, and rotated TLS files are picked up."""

    def __init__(self, name: str, access: DockerAccess, *, request_timeout: float = 10.0) -> None:
        self.name = name
        self.access = access
        self._request_timeout = request_timeout
        # An unusable address or TLS file stops start-up, not the first approved action.
        tls = (access.tls_ca, access.tls_cert, access.tls_key)
        _engine_url(access.url, tls=any(f is not None for f in tls))
        _tls_context(*tls)

    @property
    def where(self) -> str:
        return f"docker {self.access.url}"

    async def run(self, argv: Sequence[str], *, timeout_s: float) -> CommandOutput:
        """Run `argv` as its Engine API operation; raises IntegrationError (engine unreachable,
        or a container outside the host's projects: nothing ran) or TimeoutError (it may have
        started). An engine's refusal (no such container, not running) is exit status 1 with
        the engine's words, as the docker CLI reports it."""
        operation = docker_operation(argv)
        if operation is None:
            return CommandOutput(UNSUPPORTED, "", f"`{shlex.join(argv)}` {NOT_SUPPORTED}; nothing was run")
        a = self.access
        async with asyncio.timeout(timeout_s):
            client = DockerClient(
                self.name,
                a.url,
                ca_file=a.tls_ca,
                cert_file=a.tls_cert,
                key_file=a.tls_key,
                request_timeout=self._request_timeout,
            )
            try:
                output = await self._perform(client, operation, timeout_s)
            finally:
                await client.close()
        log.info(
            "docker.ran", extra={"host": self.name, "command": list(argv), "exit_status": output.exit_status}
        )
        return output

    async def _perform(self, client: DockerClient, op: DockerOperation, timeout_s: float) -> CommandOutput:
        try:
            match op:
                case ListService(project, service):
                    self._check_project(project)
                    found = await client.containers(project, service)
                    return CommandOutput(0, "".join(map(_ps_line, found)), "")
                case RestartService(project, service):
                    self._check_project(project)
                    done = await client.restart_service(project, service)
                    return CommandOutput(0, "".join(f"restarted {n}\n" for n in done), "")
                case RestartContainer(container):
                    await self._check_container(client, container)
                    await client.restart_container(container)
                    return CommandOutput(0, f"restarted {container}\n", "")
                case Exec(container, command):
                    await self._check_container(client, container)
                    result = await client.exec(container, command, timeout_s + _EXEC_GRACE_S)
                    return CommandOutput(result.exit_code, result.output, "", truncated=result.truncated)
                case _:
                    assert_never(op)
        except IntegrationError as err:
            if err.status is None:  # the engine did not answer, or we refused: nothing to report as a run
                raise
            return CommandOutput(1, "", err.message)

    def _check_project(self, project: str | None) -> None:
        if project not in self.access.projects:
            allowed = ", ".join(self.access.projects)
            raise IntegrationError(
                SYSTEM,
                f"{self.name}: compose project `{project}` is not one of this host's projects ({allowed}); "
                "nothing was run",
            )

    async def _check_container(self, client: DockerClient, container: str) -> None:
        info = await client.inspect(container)
        if info.name != container:
            raise IntegrationError(
                SYSTEM,
                f"{self.name}: `{container}` is not a container's name (it is {info.name}); nothing was run",
            )
        self._check_project(info.project)
