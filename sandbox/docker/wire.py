"""The engine's wire formats: JSON bodies, the multiplexed stream framing, query parameters and
the representations of containers and exec instances."""

from __future__ import annotations

import json
import re
import struct
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sandbox.docker.engine import (
    API_VERSION,
    MIN_API_VERSION,
    ZERO_TIME,
    Container,
    EngineError,
    ExecInstance,
    iso,
)

JSON = dict[str, Any]
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW_STREAM = "application/vnd.docker.raw-stream"
FILTER_KEYS = ("id", "label", "name", "status")
_VERSION = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


def json_response(body: object, status: int = 200) -> web.Response:
    # The engine sends exactly `application/json` (clients compare the header verbatim).
    return web.Response(
        body=(json.dumps(body) + "\n").encode(),
        status=status,
        headers={"Content-Type": "application/json", "Api-Version": API_VERSION},
    )


def error_response(err: EngineError) -> web.Response:
    return json_response({"message": err.message}, err.status)


def frame(stream: int, data: bytes) -> bytes:
    """One frame of the multiplexed stream: stream type, three zero bytes, big-endian length."""
    return struct.pack(">BxxxL", stream, len(data)) + data


def _version_tuple(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def strip_version(path: str) -> str:
    """``/v1.43/containers/json`` → ``/containers/json``; a version outside what this engine
    speaks is refused as the engine refuses it."""
    match = _VERSION.match(path)
    if match is None:
        return path
    asked = (int(match.group(1)), int(match.group(2)))
    text = f"{asked[0]}.{asked[1]}"
    if asked > _version_tuple(API_VERSION):
        raise EngineError(
            400, f"client version {text} is too new. Maximum supported API version is {API_VERSION}"
        )
    if asked < _version_tuple(MIN_API_VERSION):
        raise EngineError(
            400, f"client version {text} is too old. Minimum supported API version is {MIN_API_VERSION}"
        )
    return match.group(3)


def bool_param(request: web.Request, name: str, default: bool = False) -> bool:
    """The engine's boolean query values: absent → default; "", 0, no, false, none → false."""
    if name not in request.query:
        return default
    return request.query[name].strip().lower() not in ("", "0", "no", "false", "none")


def int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise EngineError(400, f'invalid value for "{name}": {raw!r} is not an integer') from None


def tail_param(request: web.Request) -> int | None:
    """``tail`` is a line count or ``all`` (None)."""
    raw = request.query.get("tail", "all")
    if raw == "all":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise EngineError(400, f"invalid value for tail: {raw!r}") from None
    return None if value < 0 else value


async def json_body(request: web.Request) -> JSON:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise EngineError(400, f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise EngineError(400, "invalid JSON: the body must be an object")
    return body


def parse_filters(raw: str | None) -> dict[str, list[str]]:
    """``{"label": ["k=v"]}`` or the older ``{"label": {"k=v": true}}``; unknown keys refused."""
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise EngineError(400, "invalid filter: the filters parameter is not JSON") from None
    if not isinstance(parsed, dict):
        raise EngineError(400, "invalid filter: the filters parameter must be a JSON object")
    filters: dict[str, list[str]] = {}
    for key, values in parsed.items():
        if key not in FILTER_KEYS:
            raise EngineError(400, f"invalid filter '{key}'")
        if isinstance(values, dict):
            filters[key] = [str(v) for v, on in values.items() if on]
        elif isinstance(values, list) and all(isinstance(v, str) for v in values):
            filters[key] = list(values)
        else:
            raise EngineError(400, f"invalid filter '{key}': values must be a list of strings")
    return filters


def _label_matches(labels: dict[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


def state_name(container: Container) -> str:
    return "running" if container.running else "exited"


def _one_matches(container: Container, key: str, value: str) -> bool:
    if key == "id":
        return container.id.startswith(value)
    if key == "status":
        return state_name(container) == value
    try:
        return re.search(value, container.name) is not None
    except re.error:
        raise EngineError(400, f"invalid filter 'name': bad regular expression {value!r}") from None


def matches(container: Container, filters: dict[str, list[str]]) -> bool:
    """Values of one key are alternatives (any); different keys all apply; labels all apply."""
    for key, values in filters.items():
        if key == "label":
            if not all(_label_matches(container.labels, v) for v in values):
                return False
        elif values and not any(_one_matches(container, key, v) for v in values):
            return False
    return True


def _ago(moment: datetime, now: datetime) -> str:
    seconds = int((now - moment).total_seconds())
    if seconds < 60:
        return "Less than a second" if seconds < 1 else f"{seconds} seconds"
    if seconds < 3600:
        return f"{seconds // 60} minutes"
    return f"{seconds // 3600} hours"


def summary(container: Container) -> JSON:
    now = datetime.now(UTC)
    if container.running:
        health = f" ({container.health})" if container.health else ""
        status = f"Up {_ago(container.started_at, now)}{health}"
    else:
        status = f"Exited ({container.exit_code}) {_ago(container.finished_at or now, now)} ago"
    return {
        "Id": container.id,
        "Names": [f"/{container.name}"],
        "Image": container.image,
        "ImageID": f"sha256:{container.id[::-1]}",
        "Command": " ".join(container.cmd),
        "Created": int(container.created.timestamp()),
        "Ports": [],
        "Labels": dict(container.labels),
        "State": state_name(container),
        "Status": status,
        "HostConfig": {"NetworkMode": "default"},
        "Mounts": [],
    }


def details(container: Container) -> JSON:
    state: JSON = {
        "Status": state_name(container),
        "Running": container.running,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": False,
        "Dead": False,
        "Pid": 4242 if container.running else 0,
        "ExitCode": container.exit_code,
        "Error": "",
        "StartedAt": iso(container.started_at),
        "FinishedAt": iso(container.finished_at) if container.finished_at else ZERO_TIME,
    }
    if container.health is not None:
        state["Health"] = {"Status": container.health, "FailingStreak": 0, "Log": []}
    return {
        "Id": container.id,
        "Created": iso(container.created),
        "Path": container.cmd[0],
        "Args": container.cmd[1:],
        "State": state,
        "Image": f"sha256:{container.id[::-1]}",
        "Name": f"/{container.name}",
        "RestartCount": container.restart_count,
        "HostConfig": {"RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0}},
        "Config": {
            "Hostname": container.id[:12],
            "User": "",
            "Tty": False,
            "Env": list(container.env),
            "Cmd": list(container.cmd),
            "Image": container.image,
            "Labels": dict(container.labels),
        },
    }


def exec_details(instance: ExecInstance) -> JSON:
    return {
        "ID": instance.id,
        "Running": instance.running,
        "ExitCode": instance.exit_code,
        "ProcessConfig": {
            "tty": instance.tty,
            "entrypoint": instance.argv[0],
            "arguments": instance.argv[1:],
            "privileged": False,
        },
        "OpenStdin": False,
        "OpenStderr": True,
        "OpenStdout": True,
        "CanRemove": False,
        "ContainerID": instance.container_id,
        "DetachKeys": "",
        "Pid": 4343 if instance.running else 0,
    }
