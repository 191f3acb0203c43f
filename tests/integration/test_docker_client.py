"""The Docker adapter (real aiodocker) against the sandbox engine over its Unix socket and over
TCP with TLS client certificates: compose labels, restarts, exec, logs, errors, timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from bot.clients.docker import OUTPUT_LIMIT, DockerClient
from bot.core.errors import ConfigError, IntegrationError, UserError
from sandbox.docker import BACKUP_SCRIPT, VERIFY_SCRIPT, DockerSandbox, ExecScript, RecordedCall

HOST = "onquota-prod"


@pytest.fixture
async def engine() -> AsyncIterator[DockerSandbox]:
    async with DockerSandbox() as sandbox:
        yield sandbox


@pytest.fixture
async def docker(engine: DockerSandbox) -> AsyncIterator[DockerClient]:
    async with DockerClient(HOST, engine.unix_url) as client:
        yield client


# -- reads ---------------------------------------------------------------------------------


async def test_lists_a_compose_project_and_one_service_by_labels(
    engine: DockerSandbox, docker: DockerClient
) -> None:
    project = await docker.containers("onquota")
    assert {c.service for c in project} == {
        "backend",
        "celery_worker",
        "celery_beat",
        "postgres",
        "redis",
        "backup",
    }
    workers = await docker.containers("onquota", "celery_worker")
    assert [(c.name, c.number, c.state) for c in workers] == [
        ("onquota-celery_worker-1", 1, "running"),
        ("onquota-celery_worker-2", 2, "running"),
    ]
    skillmeat = await docker.containers("skillmeat", "api")
    assert [c.name for c in skillmeat] == ["skillmeat-api"]
    # Stopped containers are still part of the service (compose restarts them too).
    engine.stop_container("onquota-celery_worker-2", exit_code=137)
    states = {c.name: c.state for c in await docker.containers("onquota", "celery_worker")}
    assert states["onquota-celery_worker-2"] == "exited"
    assert await docker.containers("nosuchproject") == []
    assert engine.calls == []  # reading changed nothing


async def test_inspect_gives_state_and_health_but_no_environment_values(docker: DockerClient) -> None:
    info = await docker.inspect("onquota_postgres")
    assert (info.name, info.state, info.running, info.health) == (
        "onquota_postgres",
        "running",
        True,
        "healthy",
    )
    assert (info.project, info.service, info.restart_count) == ("onquota", "postgres", 0)
    assert isinstance(info.started_at, datetime)
    assert info.finished_at is None
    assert info.env_names == ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")
    assert "s3cr3t-db" not in repr(info)
    api = await docker.inspect("skillmeat-api")
    assert "sk-live-do-not-leak" not in repr(api)
    assert api.env_names == ("SKILLMEAT_API_KEY", "SKILLMEAT_LOG_FORMAT")


async def test_logs_tail(engine: DockerSandbox, docker: DockerClient) -> None:
    assert await docker.logs_tail("onquota_backend", 2) == [
        "WARNING:  slow query: 2.31s SELECT * FROM quotas",
        'INFO:     10.0.0.7:51234 - "GET /health HTTP/1.1" 200 OK',
    ]
    engine.log("onquota_backend", 2, "ERROR: database is locked")
    stamped = await docker.logs_tail("onquota_backend", 1, timestamps=True)
    assert len(stamped) == 1
    assert stamped[0].endswith("Z ERROR: database is locked")
    assert len(await docker.logs_tail("onquota_backend", 1000)) == 5
    with pytest.raises(UserError, match="between 1 and 1000"):
        await docker.logs_tail("onquota_backend", 0)


# -- restarts ------------------------------------------------------------------------------


async def test_restart_a_compose_service_restarts_each_container_once(
    engine: DockerSandbox, docker: DockerClient
) -> None:
    before = {c: (await docker.inspect(c)).started_at for c in ("onquota-celery_worker-1", "onquota_backend")}
    engine.stop_container("onquota-celery_worker-2")
    restarted = await docker.restart_service("onquota", "celery_worker", timeout=5)
    assert restarted == ["onquota-celery_worker-1", "onquota-celery_worker-2"]
    assert engine.calls == [
        RecordedCall("restart", "onquota-celery_worker-1", stop_timeout=5),
        RecordedCall("restart", "onquota-celery_worker-2", stop_timeout=5),
    ]
    assert dict(engine.restarts) == {"onquota-celery_worker-1": 1, "onquota-celery_worker-2": 1}
    worker = await docker.inspect("onquota-celery_worker-1")
    stopped_one = await docker.inspect("onquota-celery_worker-2")
    assert stopped_one.running
    assert worker.started_at is not None and before["onquota-celery_worker-1"] is not None
    assert worker.started_at > before["onquota-celery_worker-1"]
    # The other services were not touched.
    assert (await docker.inspect("onquota_backend")).started_at == before["onquota_backend"]


async def test_restart_one_container_by_name(engine: DockerSandbox, docker: DockerClient) -> None:
    await docker.restart_container("skillmeat-api", timeout=10)
    assert engine.calls == [RecordedCall("restart", "skillmeat-api", stop_timeout=10)]


async def test_restart_of_a_service_without_containers_is_an_error_and_restarts_nothing(
    engine: DockerSandbox, docker: DockerClient
) -> None:
    with pytest.raises(IntegrationError) as caught:
        await docker.restart_service("onquota", "flower")
    assert caught.value.status == 404
    assert "no containers of compose service onquota/flower" in caught.value.message
    assert engine.calls == []
    assert not [r for r in engine.requests if r.method == "POST"]
    # Positive control: the same call for a service that exists restarts it.
    assert await docker.restart_service("onquota", "backend") == ["onquota_backend"]
    assert engine.restarts["onquota_backend"] == 1


async def test_unknown_container_is_a_clear_404(engine: DockerSandbox, docker: DockerClient) -> None:
    for call in (
        docker.inspect("onquota_nope"),
        docker.restart_container("onquota_nope"),
        docker.exec("onquota_nope", [BACKUP_SCRIPT], timeout=5),
        docker.logs_tail("onquota_nope", 10),
    ):
        with pytest.raises(IntegrationError) as caught:
            await call
        assert caught.value.status == 404
        assert caught.value.message.endswith("(not found): No such container: onquota_nope")
        assert caught.value.message.startswith(f"{HOST}: ")
    assert engine.calls == []


# -- exec ----------------------------------------------------------------------------------


async def test_exec_the_backup_scripts(engine: DockerSandbox, docker: DockerClient) -> None:
    backup = await docker.exec("onquota_backup", [BACKUP_SCRIPT], timeout=10)
    assert backup.exit_code == 0
    assert "Backup completed successfully" in backup.output
    assert not backup.truncated
    verify = await docker.exec("onquota_backup", [VERIFY_SCRIPT], timeout=10)
    assert (verify.exit_code, verify.output.splitlines()[-1]) == (0, "All backups verified")
    assert [(c.action, c.container, c.argv) for c in engine.calls] == [
        ("exec", "onquota_backup", (BACKUP_SCRIPT,)),
        ("exec", "onquota_backup", (VERIFY_SCRIPT,)),
    ]


async def test_exec_reports_failure_exit_codes_and_both_streams(
    engine: DockerSandbox, docker: DockerClient
) -> None:
    engine.script(
        "onquota_backup",
        [VERIFY_SCRIPT],
        ExecScript(stdout="Verifying latest\n", stderr="md5sum: FAILED\n", exit_code=2),
    )
    result = await docker.exec("onquota_backup", [VERIFY_SCRIPT], timeout=10)
    assert (result.exit_code, result.output) == (2, "Verifying latest\nmd5sum: FAILED\n")
    missing = await docker.exec("onquota_backup", ["/scripts/nope.sh"], timeout=10)
    assert missing.exit_code == 126
    assert "executable file not found" in missing.output


async def test_exec_output_is_capped_to_its_end(engine: DockerSandbox, docker: DockerClient) -> None:
    engine.script("onquota_backup", [BACKUP_SCRIPT], ExecScript(stdout="x" * (OUTPUT_LIMIT * 2) + "END\n"))
    result = await docker.exec("onquota_backup", [BACKUP_SCRIPT], timeout=10)
    assert result.truncated
    assert len(result.output) == OUTPUT_LIMIT
    assert result.output.endswith("END\n")


async def test_exec_in_a_stopped_container_is_a_409_and_runs_nothing(
    engine: DockerSandbox, docker: DockerClient
) -> None:
    engine.stop_container("onquota_backup")
    with pytest.raises(IntegrationError) as caught:
        await docker.exec("onquota_backup", [BACKUP_SCRIPT], timeout=5)
    assert caught.value.status == 409
    assert "(conflict): container " in caught.value.message
    assert caught.value.message.endswith("is not running")
    assert engine.calls == []
    assert engine.execs == {}


async def test_exec_takes_an_argv_never_a_shell_string(engine: DockerSandbox, docker: DockerClient) -> None:
    for bad in (f"{BACKUP_SCRIPT}; rm -rf /", [], ["a\0b"]):
        with pytest.raises(UserError, match="argv"):
            await docker.exec("onquota_backup", bad, timeout=5)
    assert engine.requests == []  # refused before anything reached the engine
    # Positive control: the same call with an argv reaches it.
    assert (await docker.exec("onquota_backup", [BACKUP_SCRIPT], timeout=5)).exit_code == 0
    assert engine.requests


async def test_exec_timeout_is_reported_as_maybe_applied(engine: DockerSandbox, docker: DockerClient) -> None:
    engine.script("onquota_backup", [BACKUP_SCRIPT], ExecScript(stdout="starting\n", hang=True))
    with pytest.raises(IntegrationError) as caught:
        await docker.exec("onquota_backup", [BACKUP_SCRIPT], timeout=0.5)
    assert caught.value.maybe_applied
    assert caught.value.status is None
    assert "timed out after 0.5s; it may still be running" in caught.value.message
    assert [c.argv for c in engine.calls] == [(BACKUP_SCRIPT,)]
    # The client is still usable afterwards.
    assert (await docker.exec("onquota_backup", [VERIFY_SCRIPT], timeout=5)).exit_code == 0


async def test_restart_timeout_is_reported_as_maybe_applied(engine: DockerSandbox) -> None:
    engine.held_restarts.add("onquota_backend")
    async with DockerClient(HOST, engine.unix_url, request_timeout=0.5) as client:
        with pytest.raises(IntegrationError) as caught:
            await client.restart_container("onquota_backend", timeout=0)
        assert caught.value.maybe_applied
        assert caught.value.message == (
            f"{HOST}: restart onquota_backend timed out after 0.5s; it may still be running on the host"
        )


async def test_a_service_restart_failing_part_way_names_what_was_restarted(engine: DockerSandbox) -> None:
    engine.held_restarts.add("onquota-celery_worker-2")
    async with DockerClient(HOST, engine.unix_url, request_timeout=0.5) as client:
        with pytest.raises(IntegrationError) as caught:
            await client.restart_service("onquota", "celery_worker", timeout=0)
    assert caught.value.maybe_applied
    assert caught.value.message.endswith("(already restarted: onquota-celery_worker-1)")
    assert engine.restarts["onquota-celery_worker-1"] == 1
    assert [c.container for c in engine.calls] == ["onquota-celery_worker-1", "onquota-celery_worker-2"]


# -- transport -----------------------------------------------------------------------------


async def test_unreachable_engine_is_a_clear_error(engine: DockerSandbox) -> None:
    path = engine.socket_path + ".missing"
    async with DockerClient(HOST, f"unix://{path}") as client:
        with pytest.raises(IntegrationError) as caught:
            await client.containers("onquota")
    assert caught.value.status is None
    assert f"Docker engine at unix://{path} is unreachable" in caught.value.message


async def test_tls_with_client_certificate() -> None:
    async with DockerSandbox(tls=True) as engine:
        files = {name: engine.tls_file(f"{name}.pem") for name in ("ca", "cert", "key")}
        async with DockerClient(
            HOST, engine.tcp_url, ca_file=files["ca"], cert_file=files["cert"], key_file=files["key"]
        ) as client:
            assert await client.ping() == "24.0.7"
            await client.restart_container("onquota_backend")
        assert engine.restarts["onquota_backend"] == 1
        # Without a client certificate the engine does not answer.
        async with DockerClient(HOST, engine.tcp_url, ca_file=files["ca"]) as anonymous:
            with pytest.raises(IntegrationError, match="unreachable"):
                await anonymous.restart_container("onquota_backend")
        assert engine.restarts["onquota_backend"] == 1


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("docker.sock", {}, "unix:///path or tcp://host:port"),
        ("unix://relative.sock", {}, "absolute path"),
        ("unix:///run/docker.sock", {"ca_file": "/x"}, "need a tcp:// address"),
        ("tcp://10.0.0.5:2376", {"cert_file": "/x"}, "both a client certificate and its key"),
        ("tcp://10.0.0.5:2376", {"ca_file": "/nonexistent/ca.pem"}, "unusable"),
    ],
)
async def test_bad_addresses_stop_start_up(url: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DockerClient(HOST, url, **kwargs)


# -- the sandbox's own strictness ----------------------------------------------------------


async def test_sandbox_answers_like_the_engine(engine: DockerSandbox) -> None:
    connector = aiohttp.UnixConnector(path=engine.socket_path)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def call(method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
            async with http.request(method, f"http://docker{path}", **kwargs) as response:
                body = await response.read()
                if response.headers.get("Content-Type") == "application/json":
                    return response.status, (await response.json())
                return response.status, body

        assert await call("GET", "/_ping") == (200, b"OK")
        assert await call("GET", "/v1.99/version") == (
            400,
            {"message": "client version 1.99 is too new. Maximum supported API version is 1.43"},
        )
        assert await call("GET", "/v1.43/containers/x/json") == (404, {"message": "No such container: x"})
        assert await call("GET", "/v1.43/nothing") == (404, {"message": "page not found"})
        assert (await call("GET", "/containers/json", params={"filters": "{bad"}))[0] == 400
        assert await call("GET", "/containers/json", params={"filters": '{"colour": ["red"]}'}) == (
            400,
            {"message": "invalid filter 'colour'"},
        )
        assert await call("GET", "/containers/onquota_backend/logs") == (
            400,
            {"message": "Bad parameters: you must choose at least one stream"},
        )
        assert (await call("POST", "/containers/onquota_backend/restart", params={"t": "soon"}))[0] == 400
        assert await call("POST", "/containers/onquota_backend/exec", json={"Cmd": []}) == (
            400,
            {"message": "No exec command specified"},
        )
        assert await call("POST", "/containers/onquota_backend/start") == (304, b"")
        assert await call("POST", "/v1.43/containers/onquota_redis/stop", params={"t": "1"}) == (204, b"")
        assert await call("POST", "/containers/onquota_redis/stop") == (304, b"")
        assert await call("POST", "/containers/onquota_redis/start") == (204, b"")
        # An exec instance runs once: a second start is a conflict.
        status, created = await call("POST", "/containers/onquota_backup/exec", json={"Cmd": [VERIFY_SCRIPT]})
        assert status == 201 and isinstance(created, dict)
        start = f"/exec/{created['Id']}/start"
        assert (await call("POST", start, json={"Detach": True}))[0] == 200
        assert (await call("POST", start, json={"Detach": True}))[0] == 409
        assert (await call("GET", f"/exec/{created['Id']}/json"))[1]["ExitCode"] == 0
        assert (await call("GET", "/containers/json", params={"filters": '{"status": ["exited"]}'}))[1] == []
    assert engine.calls == [
        RecordedCall("stop", "onquota_redis", stop_timeout=1),
        RecordedCall("start", "onquota_redis"),
        RecordedCall("exec", "onquota_backup", argv=(VERIFY_SCRIPT,)),
    ]
