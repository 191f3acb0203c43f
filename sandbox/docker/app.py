"""The HTTP side of the fake engine: a Unix socket (and TCP on 127.0.0.1, optionally TLS with
client certificates) answering the Engine API under ``/v1.NN/`` and unversioned, the exec
stream hijack as the real engine does it, request recording and the lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import trustme
from aiohttp import web

from sandbox.docker.engine import API_VERSION, ENGINE_VERSION, MIN_API_VERSION, Engine, EngineError
from sandbox.docker.seed import STDERR, STDOUT
from sandbox.docker.wire import (
    MULTIPLEXED,
    RAW_STREAM,
    bool_param,
    details,
    error_response,
    exec_details,
    frame,
    int_param,
    json_body,
    json_response,
    matches,
    parse_filters,
    strip_version,
    summary,
    tail_param,
)

HOST = "127.0.0.1"
Handler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str  # as sent, with its version prefix
    query: dict[str, str]
    status: int


class DockerSandbox(Engine):
    """A fake Docker engine. ``async with DockerSandbox(tls=...) as docker:``; reach it at
    :attr:`unix_url` or :attr:`tcp_url` (TLS with client certificates when ``tls``)."""

    def __init__(self, *, tls: bool = False) -> None:
        super().__init__()
        self.tls = tls
        self.requests: list[RecordedRequest] = []
        self._runner: web.AppRunner | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._port: int | None = None
        self._ca = trustme.CA()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("GET", re.compile(r"/_ping"), self._ping),
            ("HEAD", re.compile(r"/_ping"), self._ping),
            ("GET", re.compile(r"/version"), self._version),
            ("GET", re.compile(r"/containers/json"), self._list),
            ("GET", re.compile(r"/containers/([^/]+)/json"), self._inspect),
            ("GET", re.compile(r"/containers/([^/]+)/logs"), self._logs),
            ("POST", re.compile(r"/containers/([^/]+)/restart"), self._restart),
            ("POST", re.compile(r"/containers/([^/]+)/start"), self._start_container),
            ("POST", re.compile(r"/containers/([^/]+)/stop"), self._stop_container),
            ("POST", re.compile(r"/containers/([^/]+)/exec"), self._exec_create),
            ("POST", re.compile(r"/exec/([^/]+)/start"), self._exec_start),
            ("GET", re.compile(r"/exec/([^/]+)/json"), self._exec_inspect),
        ]

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._start_server()
        except BaseException:
            await self.close()
            raise

    async def _start_server(self) -> None:
        self._tmpdir = tempfile.TemporaryDirectory(prefix="docker-sandbox-")
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.UnixSite(self._runner, self.socket_path).start()
        site = web.TCPSite(self._runner, HOST, 0, ssl_context=self._server_tls())
        await site.start()
        for address in self._runner.addresses:
            if isinstance(address, tuple):
                self._port = int(address[1])

    def _server_tls(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        directory = Path(self._dir())
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert(HOST, "localhost").configure_cert(ctx)
        self._ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED  # dockerd --tlsverify: no client certificate, no answer
        self._ca.cert_pem.write_to_path(str(directory / "ca.pem"))
        client = self._ca.issue_cert("incidentbot")
        client.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
        client.private_key_pem.write_to_path(str(directory / "key.pem"))
        return ctx

    async def close(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _dir(self) -> str:
        if self._tmpdir is None:
            raise RuntimeError("DockerSandbox is not started")
        return self._tmpdir.name

    @property
    def socket_path(self) -> str:
        return str(Path(self._dir()) / "docker.sock")

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def tcp_url(self) -> str:
        if self._port is None:
            raise RuntimeError("DockerSandbox is not started")
        return f"tcp://{HOST}:{self._port}"

    def tls_file(self, name: str) -> str:
        """``ca.pem``, ``cert.pem`` or ``key.pem`` (the client's) of a TLS sandbox."""
        path = Path(self._dir()) / name
        if not self.tls or not path.exists():
            raise RuntimeError(f"no {name}: the sandbox was not started with tls=True")
        return str(path)

    # -- HTTP plumbing -----------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except EngineError as err:
            response = error_response(err)
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.query), response.status)
        )
        await self._notify()
        return response

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = strip_version(request.path)
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is not None and method == request.method:
                return await handler(request, match.group(1) if match.groups() else "")
        raise EngineError(404, "page not found")

    # -- system ------------------------------------------------------------------------------

    async def _ping(self, request: web.Request, _: str) -> web.StreamResponse:
        return web.Response(
            text="OK" if request.method == "GET" else "",
            headers={"Api-Version": API_VERSION, "Content-Type": "text/plain; charset=utf-8"},
        )

    async def _version(self, request: web.Request, _: str) -> web.StreamResponse:
        return json_response(
            {
                "Version": ENGINE_VERSION,
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": "amd64",
                "KernelVersion": "6.1.0-sandbox",
                "Components": [{"Name": "Engine", "Version": ENGINE_VERSION}],
            }
        )

    # -- containers --------------------------------------------------------------------------

    async def _list(self, request: web.Request, _: str) -> web.StreamResponse:
        filters = parse_filters(request.query.get("filters"))
        everything = bool_param(request, "all") or "status" in filters
        found = [
            summary(c) for c in self.containers.values() if (everything or c.running) and matches(c, filters)
        ]
        return json_response(found)

    async def _inspect(self, request: web.Request, ref: str) -> web.StreamResponse:
        return json_response(details(self.find(ref)))

    async def _restart(self, request: web.Request, ref: str) -> web.StreamResponse:
        await self.container_restart(ref, int_param(request, "t"))
        return web.Response(status=204)

    async def _start_container(self, request: web.Request, ref: str) -> web.StreamResponse:
        return web.Response(status=204 if await self.container_start(ref) else 304)

    async def _stop_container(self, request: web.Request, ref: str) -> web.StreamResponse:
        return web.Response(status=204 if await self.container_stop(ref, int_param(request, "t")) else 304)

    async def _logs(self, request: web.Request, ref: str) -> web.StreamResponse:
        container = self.find(ref)
        stdout, stderr = bool_param(request, "stdout"), bool_param(request, "stderr")
        if not (stdout or stderr):
            raise EngineError(400, "Bad parameters: you must choose at least one stream")
        tail = tail_param(request)
        wanted = {STDOUT} if not stderr else {STDERR} if not stdout else {STDOUT, STDERR}
        lines = [line for line in container.logs if line.stream in wanted]
        if tail is not None:
            lines = lines[len(lines) - tail :] if tail else []
        stamp = bool_param(request, "timestamps")
        body = b"".join(
            frame(line.stream, f"{line.timestamp + ' ' if stamp else ''}{line.text}\n".encode())
            for line in lines
        )
        return web.Response(body=body, headers={"Content-Type": MULTIPLEXED, "Api-Version": API_VERSION})

    # -- exec --------------------------------------------------------------------------------

    async def _exec_create(self, request: web.Request, ref: str) -> web.StreamResponse:
        self.find(ref)  # 404 before the body is looked at, as the engine does
        body = await json_body(request)
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not isinstance(cmd, list) or not cmd or not all(isinstance(a, str) for a in cmd):
            raise EngineError(400, "No exec command specified")
        instance = self.create_exec(ref, cmd, bool(body.get("Tty")))
        return json_response({"Id": instance.id}, 201)

    async def _exec_inspect(self, request: web.Request, exec_id: str) -> web.StreamResponse:
        return json_response(exec_details(self.exec_instance(exec_id)))

    async def _exec_start(self, request: web.Request, exec_id: str) -> web.StreamResponse:
        instance = self.exec_instance(exec_id)
        body = await json_body(request)
        _, script = await self.begin_exec(instance)
        if body.get("Detach"):
            await self.finish_exec(instance, script.exit_code)
            return web.Response(status=200)
        tty = bool(body.get("Tty", instance.tty))
        upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
        # The engine hijacks the connection: 101 when the client asked to upgrade, else 200;
        # then the process's output until it exits, then the connection closes.
        response = web.StreamResponse(
            status=101 if upgrade else 200,
            reason="UPGRADED" if upgrade else "OK",
            headers={"Content-Type": RAW_STREAM if tty else MULTIPLEXED, "Api-Version": API_VERSION},
        )
        if upgrade:
            response.headers.update({"Connection": "Upgrade", "Upgrade": "tcp"})
        response.force_close()
        await response.prepare(request)
        request.writer.send_headers()
        transport = request.transport
        assert transport is not None
        for stream, text in ((STDOUT, script.stdout), (STDERR, script.stderr)):
            if text:
                transport.write(text.encode() if tty else frame(stream, text.encode()))
        if script.hang:
            with contextlib.suppress(asyncio.CancelledError):
                await self.hang()
        await self.finish_exec(instance, script.exit_code)
        transport.close()
        return response
