"""The engine's state: containers, exec instances, logs, the recording of mutating calls, and the
test hooks (scripts, stop, wait_for). No HTTP here; ``app`` answers requests from it."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sandbox.docker.seed import SEED, ContainerSeed, ExecScript, LogLine

JSON = dict[str, Any]
T = TypeVar("T")

API_VERSION = "1.43"
MIN_API_VERSION = "1.24"
ENGINE_VERSION = "24.0.7"
ZERO_TIME = "0001-01-01T00:00:00Z"


class EngineError(Exception):
    """An error the engine answers as ``{"message": ...}`` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def no_such_container(ref: str) -> EngineError:
    return EngineError(404, f"No such container: {ref}")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


@dataclass
class Container:
    id: str
    name: str
    image: str
    cmd: list[str]
    labels: dict[str, str]
    env: list[str]
    health: str | None
    created: datetime
    started_at: datetime
    finished_at: datetime | None = None
    running: bool = True
    exit_code: int = 0
    restart_count: int = 0  # restarts by the restart policy only, as the real engine counts
    scripts: dict[tuple[str, ...], ExecScript] = field(default_factory=dict)
    logs: list[LogLine] = field(default_factory=list)


@dataclass
class ExecInstance:
    id: str
    container_id: str
    argv: list[str]
    tty: bool
    running: bool = False
    started: bool = False
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """A mutating call the engine received (restart, start, stop, exec start), in order."""

    action: str  # "restart" | "start" | "stop" | "exec"
    container: str  # the container's name, without the leading slash
    argv: tuple[str, ...] = ()
    stop_timeout: int | None = None


class Engine:
    """In-memory Docker engine state; every change wakes :meth:`wait_for`."""

    def __init__(self, seed: Sequence[ContainerSeed] = SEED) -> None:
        now = datetime.now(UTC)
        self.containers: dict[str, Container] = {}
        self.execs: dict[str, ExecInstance] = {}
        self.calls: list[RecordedCall] = []
        self.restarts: Counter[str] = Counter()
        # Containers whose restart never returns (until the server stops): for timeouts.
        self.held_restarts: set[str] = set()
        self._cond = asyncio.Condition()
        self._release = asyncio.Event()  # lets hanging exec scripts finish when the server stops
        for item in seed:
            cid = hashlib.sha256(item.name.encode()).hexdigest()
            self.containers[cid] = Container(
                id=cid,
                name=item.name,
                image=item.image,
                cmd=list(item.cmd),
                labels=dict(item.labels),
                env=list(item.env),
                health=item.health,
                created=now,
                started_at=now,
                scripts=dict(item.scripts),
                logs=list(item.logs),
            )

    # -- lookups -----------------------------------------------------------------------------

    def find(self, ref: str) -> Container:
        """By full id, name (with or without the leading slash) or unique id prefix, like the
        engine; anything else is ``No such container``."""
        if ref in self.containers:
            return self.containers[ref]
        name = ref.removeprefix("/")
        for container in self.containers.values():
            if container.name == name:
                return container
        matches = [c for c in self.containers.values() if ref and c.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        raise no_such_container(ref)

    def exec_instance(self, exec_id: str) -> ExecInstance:
        found = self.execs.get(exec_id)
        if found is None:
            raise EngineError(404, f"No such exec instance: {exec_id}")
        return found

    # -- test hooks --------------------------------------------------------------------------

    def script(self, container: str, argv: Sequence[str], script: ExecScript) -> None:
        """What ``argv`` prints and exits with inside ``container`` from now on."""
        self.find(container).scripts[tuple(argv)] = script

    def stop_container(self, container: str, exit_code: int = 0) -> None:
        """The container exits (as if it crashed or was stopped outside the bot)."""
        self._stop(self.find(container), exit_code)

    def log(self, container: str, stream: int, text: str) -> None:
        self.find(container).logs.append(LogLine(stream, iso(datetime.now(UTC)), text))

    def restart_count(self, container: str) -> int:
        return self.restarts[container]

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Wait until ``predicate()`` is truthy (re-checked on every state change); return it."""
        async with asyncio.timeout(timeout), self._cond:
            return await self._cond.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    # -- changes -----------------------------------------------------------------------------

    def _stop(self, container: Container, exit_code: int) -> None:
        container.running = False
        container.exit_code = exit_code
        container.finished_at = datetime.now(UTC)

    def _start(self, container: Container) -> None:
        container.running = True
        container.exit_code = 0
        container.started_at = datetime.now(UTC)

    async def container_restart(self, ref: str, stop_timeout: int | None) -> None:
        container = self.find(ref)
        self.calls.append(RecordedCall("restart", container.name, stop_timeout=stop_timeout))
        await self._notify()
        if container.name in self.held_restarts:
            await self.hang()
        if container.running:
            self._stop(container, 0)
        self._start(container)
        self.restarts[container.name] += 1
        await self._notify()

    async def container_start(self, ref: str) -> bool:
        """False when it was running already (the engine's 304)."""
        container = self.find(ref)
        if container.running:
            return False
        self._start(container)
        self.calls.append(RecordedCall("start", container.name))
        await self._notify()
        return True

    async def container_stop(self, ref: str, stop_timeout: int | None) -> bool:
        """False when it was stopped already (the engine's 304)."""
        container = self.find(ref)
        if not container.running:
            return False
        self._stop(container, 0)
        self.calls.append(RecordedCall("stop", container.name, stop_timeout=stop_timeout))
        await self._notify()
        return True

    def create_exec(self, ref: str, argv: list[str], tty: bool) -> ExecInstance:
        container = self.find(ref)
        if not container.running:
            raise EngineError(409, f"container {container.id} is not running")
        instance = ExecInstance(secrets.token_hex(32), container.id, argv, tty)
        self.execs[instance.id] = instance
        return instance

    async def begin_exec(self, instance: ExecInstance) -> tuple[Container, ExecScript]:
        """Mark the exec started and return what it prints; 409 if it cannot start."""
        container = self.containers[instance.container_id]
        if instance.started:
            raise EngineError(409, f"Exec {instance.id} has already been started")
        if not container.running:
            raise EngineError(409, f"container {container.id} is not running")
        instance.started = instance.running = True
        self.calls.append(RecordedCall("exec", container.name, argv=tuple(instance.argv)))
        await self._notify()
        return container, container.scripts.get(tuple(instance.argv)) or not_found_script(instance.argv)

    async def finish_exec(self, instance: ExecInstance, exit_code: int) -> None:
        instance.running = False
        instance.exit_code = exit_code
        await self._notify()

    async def hang(self) -> None:
        """Block a hanging script until the server stops (it never finishes on its own)."""
        await self._release.wait()

    def release(self) -> None:
        self._release.set()


def not_found_script(argv: Sequence[str]) -> ExecScript:
    """What runc reports when the program does not exist in the container."""
    message = (
        "OCI runtime exec failed: exec failed: unable to start container process: "
        f'exec: "{argv[0]}": executable file not found in $PATH: unknown\r\n'
    )
    return ExecScript(stdout=message, exit_code=126)
