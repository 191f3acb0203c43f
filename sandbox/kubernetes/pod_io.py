"""Pod logs and ``exec`` over the v4.channel.k8s.io WebSocket protocol."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from aiohttp import web

from sandbox.kubernetes.errors import bad_request, not_found
from sandbox.kubernetes.objects import meta_of, truthy, utc_now
from sandbox.kubernetes.resources import RESOURCES, Route
from sandbox.kubernetes.store import RECORD, ExecReply, ObjectStore

JSON = dict[str, Any]


class PodIO(ObjectStore):
    """``pods/log`` (registered lines or canned JSON logs) and ``pods/exec`` (registered replies or
    a few built-in programs)."""

    def _container_for(self, pod: JSON, container: str | None) -> str:
        names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        pod_name = meta_of(pod)["name"]
        if container:
            if container not in names:
                raise bad_request(f"container {container} is not valid for pod {pod_name}")
            return container
        if len(names) != 1:
            raise bad_request(
                f"a container name must be specified for pod {pod_name}, choose one of: [{' '.join(map(str, names))}]"
            )
        return str(names[0])

    def _log_handler(self, request: web.Request, route: Route) -> web.Response:
        assert route.name is not None
        pod = self._obj("pods", route.namespace, route.name)
        if pod is None:
            raise not_found(RESOURCES["pods"], route.name)
        container = self._container_for(pod, request.query.get("container"))
        if (pod.get("status") or {}).get("phase") == "Pending":
            raise bad_request(
                f'container "{container}" in pod "{route.name}" is waiting to start: ContainerCreating'
            )
        lines = self._logs.get((route.namespace or "", route.name)) or self._canned_logs(pod, container)
        tail = request.query.get("tailLines")
        if tail is not None:
            count = int(tail)
            lines = lines[-count:] if count > 0 else []
        if truthy(request.query.get("timestamps")):
            start = utc_now() - timedelta(seconds=len(lines))
            lines = [
                f"{(start + timedelta(seconds=i)).strftime('%Y-%m-%dT%H:%M:%S.%f')}000Z {line}"
                for i, line in enumerate(lines)
            ]
        text = "".join(f"{line}\n" for line in lines)
        return web.Response(text=text, content_type="text/plain")

    @staticmethod
    def _canned_logs(pod: JSON, container: str) -> list[str]:
        name = meta_of(pod)["name"]
        lines = []
        for i in range(60):
            if i % 17 == 16:
                lines.append(
                    json.dumps(
                        {
                            "level": "error",
                            "msg": "upstream request failed",
                            "error": "context deadline exceeded",
                            "pod": name,
                            "container": container,
                            "seq": i,
                        }
                    )
                )
            elif i % 9 == 8:
                lines.append(
                    json.dumps(
                        {"level": "warn", "msg": "slow query", "duration_ms": 1200 + i, "pod": name, "seq": i}
                    )
                )
            else:
                lines.append(
                    json.dumps(
                        {"level": "info", "msg": "request handled", "status": 200, "pod": name, "seq": i}
                    )
                )
        return lines

    def _exec_reply(self, argv: tuple[str, ...]) -> ExecReply | None:
        """A registered reply, else the built-in programs' canned output; None: not found in $PATH."""
        if argv in self._exec:
            return self._exec[argv]
        if not argv:
            return None
        program = argv[0].rsplit("/", 1)[-1]
        if program == "echo":
            return ExecReply(stdout=" ".join(argv[1:]) + "\n")
        if program == "true":
            return ExecReply()
        if program == "false":
            return ExecReply(exit_code=1)
        if program == "psql":
            return _psql(argv)
        if program == "redis-cli":
            return ExecReply(
                stdout="# Memory\nused_memory:104857600\nused_memory_human:100.00M\nmaxmemory:0\n"
            )
        return None

    async def _exec_handler(self, request: web.Request, route: Route) -> web.StreamResponse:
        assert route.name is not None
        pod = self._obj("pods", route.namespace, route.name)
        if pod is None:
            raise not_found(RESOURCES["pods"], route.name)
        container = self._container_for(pod, request.query.get("container"))
        if (pod.get("status") or {}).get("phase") != "Running":
            raise bad_request(f'unable to upgrade connection: container not found ("{container}")')
        argv = tuple(request.query.getall("command", []))
        if not argv:
            raise bad_request("you must specify at least 1 command")
        ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"))
        if not ws.can_prepare(request).ok:
            raise bad_request("Upgrade request required")
        await ws.prepare(request)
        request[RECORD].status = 101
        self._notify()
        self._websockets.add(ws)
        try:
            reply = self._exec_reply(argv)
            if reply is not None:
                # Channel 1 is stdout, 2 stderr, 3 the final Status (v4.channel.k8s.io).
                if reply.stdout and truthy(request.query.get("stdout", "true")):
                    await ws.send_bytes(b"\x01" + reply.stdout.encode())
                if reply.stderr and truthy(request.query.get("stderr", "true")):
                    await ws.send_bytes(b"\x02" + reply.stderr.encode())
            await ws.send_bytes(b"\x03" + json.dumps(_exec_status(argv, reply)).encode())
            await ws.close()
        finally:
            self._websockets.discard(ws)
        return ws


def _psql(argv: tuple[str, ...]) -> ExecReply:
    """``psql -c <query>`` against the demo databases: connections, counts, terminations."""
    query = argv[argv.index("-c") + 1] if "-c" in argv[:-1] else ""
    lowered = query.lower()
    if "pg_terminate_backend" in lowered:
        return ExecReply(stdout=" pg_terminate_backend \n----------------------\n t\n t\n(2 rows)\n\n")
    if "count(*)" in lowered and "pg_stat_activity" in lowered:
        return ExecReply(stdout=" count \n-------\n    87\n(1 row)\n\n")
    if "pg_stat_activity" in lowered:
        return ExecReply(
            stdout=" pid  |    duration     | state  | query\n"
            "------+-----------------+--------+------------------------------\n"
            " 4312 | 00:07:12.004211 | active | SELECT * FROM quests WHERE ...\n"
            " 4377 | 00:02:40.918273 | active | UPDATE users SET xp = xp + ...\n"
            "(2 rows)\n\n"
        )
    if query:
        return ExecReply(
            stderr=f'ERROR:  relation "{query.split()[-1].rstrip(";")}" does not exist\n', exit_code=1
        )
    return ExecReply(stderr="psql: error: no query given (interactive psql needs a TTY)\n", exit_code=2)


def _exec_status(argv: tuple[str, ...], reply: ExecReply | None) -> JSON:
    """The Status sent on channel 3: success, a non-zero exit code, or the program was not found."""
    if reply is None:
        message = (
            "Internal error occurred: error executing command in container: failed to exec in container: "
            f"failed to start exec: OCI runtime exec failed: exec failed: unable to start container "
            f'process: exec: "{argv[0]}": executable file not found in $PATH: unknown'
        )
        return {
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "details": {"causes": [{"message": message}]},
            "code": 500,
        }
    if reply.exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
        f"[{' '.join(argv)}], exit code {reply.exit_code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(reply.exit_code)}]},
    }
