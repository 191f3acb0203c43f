"""A fake Docker Engine API that the real aiodocker client talks to (no engine runs here).

It speaks the calls the bot makes, under ``/v1.NN/`` (1.24 to 1.43) and unversioned, strictly
like the engine: ``GET /_ping``, ``GET /version``, ``GET /containers/json`` (``all``,
``filters`` with ``id``, ``label``, ``name`` and ``status``), ``GET /containers/{id}/json``,
``POST /containers/{id}/restart|start|stop`` (``t``), ``POST /containers/{id}/exec`` then
``POST /exec/{id}/start`` (the connection is hijacked and the output sent in the multiplexed
framing when there is no TTY) and ``GET /exec/{id}/json`` (``ExitCode``), and ``GET
/containers/{id}/logs`` (``stdout``, ``stderr``, ``tail``, ``timestamps``; multiplexed).

Errors are the engine's ``{"message": ...}``: 404 ``No such container: x`` for an unknown id or
name, 409 for an exec in a stopped container or an exec started twice, 400 for bad parameters
or an unsupported API version, 404 ``page not found`` for any other path.

It listens on a Unix socket (:attr:`DockerSandbox.unix_url`) and on TCP at 127.0.0.1
(:attr:`DockerSandbox.tcp_url`), with TLS and required client certificates when started with
``tls=True`` (:meth:`DockerSandbox.tls_file` gives ``ca.pem``, ``cert.pem``, ``key.pem``).

Seed: OnQuota's compose project ``onquota`` (backend, celery_worker x2, celery_beat, postgres,
redis and onquota_backup, whose ``/scripts/backup/backup-postgres.sh`` and
``verify-backups.sh`` print scripted output) and SkillMeat's ``skillmeat-api`` (project
``skillmeat``, service ``api``), each with Docker Compose v2's labels.

Tests read :attr:`calls` (every restart, start, stop and exec with its argv), :attr:`restarts`
(per container name) and :attr:`requests`, script commands with :meth:`script` (an
``ExecScript`` with ``hang=True`` never finishes, nor does a restart while
its container is in :attr:`held_restarts`: for timeouts), stop containers with
:meth:`stop_container` and wait with :meth:`wait_for`, which wakes on every change.

The package splits it by concern: ``seed`` (the containers), ``engine`` (state, recording,
hooks), ``wire`` (JSON shapes, framing, parameters) and ``app`` (HTTP, sockets, lifecycle).
"""

from sandbox.docker.app import DockerSandbox, RecordedRequest
from sandbox.docker.engine import EngineError, RecordedCall
from sandbox.docker.seed import BACKUP_SCRIPT, VERIFY_SCRIPT, ExecScript

__all__ = [
    "BACKUP_SCRIPT",
    "VERIFY_SCRIPT",
    "DockerSandbox",
    "EngineError",
    "ExecScript",
    "RecordedCall",
    "RecordedRequest",
]
