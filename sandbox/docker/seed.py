"""Seed containers: OnQuota's compose project and SkillMeat's API container, as the seed runbooks
describe them, with the labels Docker Compose v2 puts on every container it creates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

STDOUT, STDERR = 1, 2  # stream numbers of the engine's multiplexed framing

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
NUMBER = "com.docker.compose.container-number"

BACKUP_SCRIPT = "/scripts/backup/backup-postgres.sh"
VERIFY_SCRIPT = "/scripts/backup/verify-backups.sh"


@dataclass(frozen=True, slots=True)
class ExecScript:
    """What a command prints (stdout, then stderr) and its exit code. ``hang`` never finishes
    (until the server stops): for timeouts."""

    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    hang: bool = False


@dataclass(frozen=True, slots=True)
class LogLine:
    stream: int
    timestamp: str  # RFC 3339 with nanoseconds, as `docker logs --timestamps` prints it
    text: str


@dataclass(frozen=True, slots=True)
class ContainerSeed:
    name: str
    image: str
    cmd: tuple[str, ...]
    labels: Mapping[str, str]
    env: tuple[str, ...] = ()
    health: str | None = None
    scripts: Mapping[tuple[str, ...], ExecScript] = field(default_factory=dict)
    logs: tuple[LogLine, ...] = ()


def compose_labels(project: str, service: str, number: int, workdir: str) -> dict[str, str]:
    return {
        PROJECT: project,
        SERVICE: service,
        NUMBER: str(number),
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.project.working_dir": workdir,
        "com.docker.compose.project.config_files": f"{workdir}/docker-compose.yml",
        "com.docker.compose.config-hash": f"{project}-{service}-config",
        "com.docker.compose.version": "2.21.0",
    }


def _onquota(
    name: str,
    service: str,
    number: int = 1,
    *,
    image: str,
    cmd: tuple[str, ...],
    env: tuple[str, ...] = (),
    health: str | None = None,
    scripts: Mapping[tuple[str, ...], ExecScript] | None = None,
    logs: tuple[LogLine, ...] = (),
) -> ContainerSeed:
    return ContainerSeed(
        name=name,
        image=image,
        cmd=cmd,
        labels=compose_labels("onquota", service, number, "/opt/onquota"),
        env=env,
        health=health,
        scripts=scripts or {},
        logs=logs,
    )


BACKUP_OUTPUT = (
    "Starting PostgreSQL backup of onquota_db\n"
    "pg_dump: dumping contents of 42 tables\n"
    "Backup written: /backups/postgres/onquota_backup_latest.sql.gz (12.4M)\n"
    "Checksum written: /backups/postgres/onquota_backup_latest.sql.gz.md5\n"
    "Backup completed successfully\n"
)
VERIFY_OUTPUT = (
    "Verifying /backups/postgres/onquota_backup_latest.sql.gz\n"
    "md5sum: OK\n"
    "gzip integrity: OK\n"
    "All backups verified\n"
)
_T = "2026-01-01T00:00:00.000000000Z"

SEED: tuple[ContainerSeed, ...] = (
    _onquota(
        "onquota_backend",
        "backend",
        image="onquota-backend:latest",
        cmd=("uvicorn", "main:app", "--host", "0.0.0.0", "--port", "8000"),
        env=("DATABASE_URL=postgresql://onquota_user:s3cr3t-db@postgres:5432/onquota_db", "LOG_LEVEL=info"),
        health="healthy",
        logs=(
            LogLine(STDOUT, _T, "INFO:     Started server process [1]"),
            LogLine(STDOUT, _T, "INFO:     Application startup complete."),
            LogLine(STDERR, _T, "WARNING:  slow query: 2.31s SELECT * FROM quotas"),
            LogLine(STDOUT, _T, 'INFO:     10.0.0.7:51234 - "GET /health HTTP/1.1" 200 OK'),
        ),
    ),
    _onquota(
        "onquota-celery_worker-1",
        "celery_worker",
        1,
        image="onquota-backend:latest",
        cmd=("celery", "-A", "core.celery", "worker", "--loglevel=info"),
        env=("CELERY_BROKER_URL=redis://:r3dis-pass@redis:6379/0",),
    ),
    _onquota(
        "onquota-celery_worker-2",
        "celery_worker",
        2,
        image="onquota-backend:latest",
        cmd=("celery", "-A", "core.celery", "worker", "--loglevel=info"),
        env=("CELERY_BROKER_URL=redis://:r3dis-pass@redis:6379/0",),
    ),
    _onquota(
        "onquota_celery_beat",
        "celery_beat",
        image="onquota-backend:latest",
        cmd=("celery", "-A", "core.celery", "beat", "--loglevel=info"),
    ),
    _onquota(
        "onquota_postgres",
        "postgres",
        image="postgres:15-alpine",
        cmd=("postgres",),
        env=("POSTGRES_USER=onquota_user", "POSTGRES_PASSWORD=s3cr3t-db", "POSTGRES_DB=onquota_db"),
        health="healthy",
    ),
    _onquota(
        "onquota_redis",
        "redis",
        image="redis:7-alpine",
        cmd=("redis-server", "--requirepass", "r3dis-pass"),
        health="healthy",
    ),
    _onquota(
        "onquota_backup",
        "backup",
        image="onquota-backup:latest",
        cmd=("crond", "-f"),
        env=("PGPASSWORD=s3cr3t-db", "S3_BUCKET=onquota-backups"),
        scripts={
            (BACKUP_SCRIPT,): ExecScript(stdout=BACKUP_OUTPUT),
            (VERIFY_SCRIPT,): ExecScript(stdout=VERIFY_OUTPUT),
        },
    ),
    ContainerSeed(
        name="skillmeat-api",
        image="skillmeat/api:1.8.2",
        cmd=("skillmeat", "serve", "--port", "8080"),
        labels=compose_labels("skillmeat", "api", 1, "/srv/skillmeat"),
        env=("SKILLMEAT_API_KEY=sk-live-do-not-leak", "SKILLMEAT_LOG_FORMAT=json"),
        health="healthy",
        logs=(
            LogLine(STDOUT, _T, '{"level": "INFO", "msg": "server started", "port": 8080}'),
            LogLine(STDOUT, _T, '{"level": "ERROR", "msg": "mcp server timeout", "trace_id": "t-1"}'),
        ),
    ),
)
