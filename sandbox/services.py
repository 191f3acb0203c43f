"""Real PostgreSQL, Redis, Prometheus and Alertmanager processes on 127.0.0.1.

Used by the pytest session fixtures (tests/conftest.py) and by ``incidentbot sandbox``.
Everything here is synchronous; from async code call ``start`` through ``asyncio.to_thread``.

Each service gets its own fresh working directory ``<base_dir>/<name>-XXXX`` (config, data and the
process log ``<name>.log``), so several services can share one ``base_dir``.
Processes run in their own session, are stopped by ``stop()`` / the context manager, by an
``atexit`` hook, and (when started from the main thread and ``setpriv`` exists) receive a signal
if the Python process dies without running ``atexit``.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Self

import yaml

__all__ = [
    "AlertmanagerServer",
    "PostgresServer",
    "PrometheusServer",
    "RedisServer",
    "ServiceError",
    "free_port",
]

HOST = "127.0.0.1"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
PG_VERSION = "15"
PG_SUPERUSER = "postgres"
PG_OS_USER = "postgres"

_DB_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class ServiceError(RuntimeError):
    """A service binary is missing, or a service failed to start or answer."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _missing(binary: str, package: str) -> ServiceError:
    return ServiceError(f"{binary} not found: install the Debian package {package} (make test provisions it)")


def _which(names: Sequence[str], package: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise _missing(names[0], package)


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status: int = resp.status
            return status == 200
    except (OSError, urllib.error.URLError):
        return False


# ---------------------------------------------------------------------------------------------
# process bookkeeping

_LIVE: set[_Service] = set()
_TEMP_DIRS: list[Path] = []
_LOCK = threading.Lock()
_SETPRIV = shutil.which("setpriv")


def _cleanup_all() -> None:
    with _LOCK:
        services = list(_LIVE)
    for service in services:
        with contextlib.suppress(Exception):
            service.stop()
    with _LOCK:
        dirs = list(_TEMP_DIRS)
        _TEMP_DIRS.clear()
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)


atexit.register(_cleanup_all)


class _User(NamedTuple):
    name: str
    uid: int
    gid: int


class _Service(abc.ABC):
    """Common process handling: spawn with a log file, readiness polling, stop and kill."""

    name: ClassVar[str] = "service"
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.log_path = workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._argv: list[str] = []
        self._user: _User | None = None
        self._cwd: Path = workdir

    # -- public ---------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Graceful shutdown (SIGKILL after a timeout). Idempotent."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, self.stop_signal)
                try:
                    proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self._killpg(proc)
            # children (postgres backends) share the process group; make sure none survive
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            self._proc = None
        with _LOCK:
            _LIVE.discard(self)

    def kill(self) -> None:
        """SIGKILL the process and its process group (simulates a crash). Idempotent."""
        proc = self._proc
        if proc is not None:
            self._killpg(proc)

    def restart(self) -> None:
        """Start the process again on the same data, port and config (e.g. after ``kill()``)."""
        if self._proc is not None:
            self.stop()
        self._launch()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} port={self.port} pid={self.pid} workdir={self.workdir}>"

    # -- internals ------------------------------------------------------------------------------

    @staticmethod
    def _make_workdir(base_dir: Path, name: str) -> Path:
        base_dir = Path(base_dir).resolve()
        base_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base_dir))

    def _killpg(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT)

    def _spawn(self, argv: list[str], *, user: _User | None = None, cwd: Path | None = None) -> None:
        self._argv = argv
        self._user = user
        self._cwd = cwd or self.workdir
        self._launch()

    def _launch(self) -> None:
        cmd = list(self._argv)
        if _SETPRIV and threading.current_thread() is threading.main_thread():
            # PR_SET_PDEATHSIG fires when the spawning *thread* exits, so only use it from main.
            cmd = [_SETPRIV, f"--pdeathsig={self.stop_signal.name.removeprefix('SIG')}", "--", *cmd]
        user_kw: dict[str, Any] = {}
        if self._user is not None:
            user_kw = {"user": self._user.uid, "group": self._user.gid, "extra_groups": []}
        with self.log_path.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._cwd,
                    start_new_session=True,
                    **user_kw,
                )
            except OSError as exc:
                raise ServiceError(f"{self.name}: cannot run {cmd[0]}: {exc}") from exc
        with _LOCK:
            _LIVE.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    @abc.abstractmethod
    def _ready(self) -> bool:
        """True once the service answers."""

    def _wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = proc.returncode if proc is not None else None
                raise ServiceError(
                    f"{self.name} exited with code {code} during startup; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if self._ready():
                    return
            except Exception:
                pass
            if time.monotonic() >= deadline:
                raise ServiceError(
                    f"{self.name} not ready after {timeout:.0f}s; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)


# ---------------------------------------------------------------------------------------------
# PostgreSQL


def _pg_bindir() -> Path:
    root = Path("/usr/lib/postgresql")
    candidates = [root / PG_VERSION / "bin"]
    if root.is_dir():
        versions = sorted(
            (p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True
        )
        candidates += [p / "bin" for p in versions]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if all((bindir / b).is_file() for b in ("initdb", "postgres", "psql")):
            return bindir
    raise _missing("postgres", "postgresql")


def _pg_os_user() -> _User | None:
    """The unprivileged user to run PostgreSQL as when we are root (None when not root)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_OS_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        result = subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                PG_OS_USER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode not in (0, 9):  # 9: created concurrently
            raise ServiceError(f"useradd {PG_OS_USER} failed: {result.stderr.strip()}") from None
        entry = pwd.getpwnam(PG_OS_USER)
    return _User(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _private_tmpdir(prefix: str, user: _User | None) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # short path: unix socket limit
    if user is not None:
        os.chown(path, user.uid, user.gid)
    with _LOCK:
        _TEMP_DIRS.append(path)
    return path


def _usable_by(path: Path, user: _User) -> bool:
    result = subprocess.run(
        ["test", "-w", str(path), "-a", "-x", str(path)],
        user=user.uid,
        group=user.gid,
        extra_groups=[],
        check=False,
    )
    return result.returncode == 0


class PostgresServer(_Service):
    """PostgreSQL (Debian ``postgresql`` package), trust auth on 127.0.0.1 only."""

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown

    def __init__(self, workdir: Path, port: int, bindir: Path, datadir: Path, sockdir: Path) -> None:
        super().__init__(workdir, port)
        self.bindir = bindir
        self.datadir = datadir
        self.sockdir = sockdir
        self.user = PG_SUPERUSER

    @classmethod
    def start(cls, base_dir: Path) -> PostgresServer:
        bindir = _pg_bindir()
        os_user = _pg_os_user()
        workdir = cls._make_workdir(base_dir, cls.name)
        data_parent = workdir
        if os_user is not None:
            os.chown(workdir, os_user.uid, os_user.gid)
            if not _usable_by(workdir, os_user):
                # e.g. pytest's /tmp/pytest-of-root is 0700: keep the cluster in /tmp instead
                data_parent = _private_tmpdir("incidentbot-pg-", os_user)
                (workdir / "data").symlink_to(data_parent / "data")
        datadir = data_parent / "data"
        sockdir = _private_tmpdir("incidentbot-pgsock-", os_user)
        server = cls(workdir, free_port(), bindir, datadir, sockdir)
        server._initdb(os_user)
        server._spawn(
            [
                str(bindir / "postgres"),
                "-D",
                str(datadir),
                "-c",
                f"listen_addresses={HOST}",
                "-c",
                f"port={server.port}",
                "-c",
                f"unix_socket_directories={sockdir}",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=32MB",
                "-c",
                "logging_collector=off",
            ],
            user=os_user,
            cwd=data_parent,
        )
        return server

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{self.user}@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database (copy of template1) and return its DSN."""
        self._check_name(name)
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its sessions. Missing databases are ignored."""
        self._check_name(name)
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through ``psql`` (synchronous, no event loop needed); returns stdout."""
        result = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                HOST,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PGCONNECT_TIMEOUT": "5", "PGAPPNAME": "incidentbot-sandbox"},
        )
        if result.returncode != 0:
            raise ServiceError(f"psql failed ({result.returncode}) for {sql!r}: {result.stderr.strip()}")
        return result.stdout

    # -- internals ------------------------------------------------------------------------------

    @staticmethod
    def _check_name(name: str) -> None:
        if not _DB_NAME_RE.fullmatch(name):
            raise ValueError(f"invalid database name {name!r}")

    def _initdb(self, os_user: _User | None) -> None:
        user_kw: dict[str, Any] = {}
        if os_user is not None:
            user_kw = {"user": os_user.uid, "group": os_user.gid, "extra_groups": []}
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    PG_SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.datadir.parent,
                timeout=120,
                check=False,
                **user_kw,
            )
        if result.returncode != 0:
            raise ServiceError(
                f"initdb failed with code {result.returncode}; log {self.log_path}:\n{self.log_tail()}"
            )
        (self.datadir / "pg_hba.conf").write_text(
            "# written by sandbox/services.py\n"
            "local all all trust\n"
            f"host all all {HOST}/32 trust\n"
            "host replication all 127.0.0.1/32 trust\n"
        )

    def _ready(self) -> bool:
        with socket.create_connection((HOST, self.port), timeout=1):
            pass
        self.psql("SELECT 1")
        return True


# ---------------------------------------------------------------------------------------------
# Redis


def _redis_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RedisServer(_Service):
    """redis-server with AOF (``appendonly yes``, ``appendfsync everysec``), bound to 127.0.0.1."""

    name = "redis"
    stop_signal = signal.SIGTERM

    @classmethod
    def start(cls, base_dir: Path) -> RedisServer:
        binary = _which(["redis-server"], "redis-server")
        workdir = cls._make_workdir(base_dir, cls.name)
        server = cls(workdir, free_port())
        conf = workdir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    f"bind {HOST}",
                    f"port {server.port}",
                    "protected-mode no",
                    "daemonize no",
                    'logfile ""',
                    f"dir {_redis_quote(str(workdir))}",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "databases 16",
                    "",
                ]
            )
        )
        server._spawn([binary, str(conf)])
        return server

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def command(self, *args: str) -> bytes:
        """Send one command over a raw RESP connection and return the raw first reply line."""
        payload = f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
        )
        with socket.create_connection((HOST, self.port), timeout=5) as sock:
            sock.sendall(payload)
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        return reply.strip()

    def _ready(self) -> bool:
        return self.command("PING") == b"+PONG"


# ---------------------------------------------------------------------------------------------
# Prometheus


def _split_target(target: str) -> tuple[str, str, str]:
    """'host:port' or 'http://host:port/path' -> (scheme, host:port, metrics_path)."""
    if "://" not in target:
        return "http", target, "/metrics"
    parsed = urllib.parse.urlsplit(target)
    return parsed.scheme or "http", parsed.netloc, parsed.path or "/metrics"


class PrometheusServer(_Service):
    """Prometheus 2.x scraping the given targets; job label ``sandbox`` (``sandbox-N`` for more groups)."""

    name = "prometheus"
    stop_signal = signal.SIGTERM
    job_name = "sandbox"

    @classmethod
    def start(
        cls,
        base_dir: Path,
        scrape_targets: list[str],
        scrape_interval: str = "1s",
        rule_files: list[Path] | None = None,
        *,
        jobs: Mapping[str, str] | None = None,
        alertmanager_url: str | None = None,
        backfill: str | None = None,
    ) -> PrometheusServer:
        """``jobs`` (job name -> target URL) are scraped as well, each as its own job (so
        ``up{job="..."}`` names it); ``alertmanager_url`` receives the alerts of ``rule_files``;
        ``backfill`` (OpenMetrics text with timestamps) is loaded as history before the start."""
        binary = _which(["prometheus"], "prometheus")
        workdir = cls._make_workdir(base_dir, cls.name)
        server = cls(workdir, free_port())
        if backfill is not None:
            server._backfill(backfill)

        groups: dict[tuple[str, str], list[str]] = {}
        for target in scrape_targets:
            scheme, hostport, path = _split_target(target)
            groups.setdefault((scheme, path), []).append(hostport)
        scrape_configs: list[dict[str, Any]] = []
        for index, ((scheme, path), hosts) in enumerate(groups.items()):
            scrape_configs.append(
                {
                    "job_name": cls.job_name if index == 0 else f"{cls.job_name}-{index}",
                    "scheme": scheme,
                    "metrics_path": path,
                    "static_configs": [{"targets": hosts}],
                }
            )
        for job, target in (jobs or {}).items():
            scheme, hostport, path = _split_target(target)
            scrape_configs.append(
                {
                    "job_name": job,
                    "scheme": scheme,
                    "metrics_path": path,
                    "static_configs": [{"targets": [hostport]}],
                }
            )
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "evaluation_interval": scrape_interval,
            },
            "scrape_configs": scrape_configs,
        }
        if rule_files:
            config["rule_files"] = [str(Path(p).resolve()) for p in rule_files]
        if alertmanager_url is not None:
            scheme, hostport, _path = _split_target(alertmanager_url)
            config["alerting"] = {
                "alertmanagers": [
                    {"scheme": scheme, "api_version": "v2", "static_configs": [{"targets": [hostport]}]}
                ]
            }
        conf = workdir / "prometheus.yml"
        conf.write_text(yaml.safe_dump(config, sort_keys=False))
        server._spawn(
            [
                binary,
                f"--config.file={conf}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={HOST}:{server.port}",
                # alerts' generatorURL names this address, the one the bot queries
                f"--web.external-url=http://{HOST}:{server.port}/",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
            ]
        )
        return server

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _backfill(self, openmetrics: str) -> None:
        promtool = _which(["promtool"], "prometheus")
        source = self.workdir / "backfill.om"
        source.write_text(openmetrics, encoding="utf-8")
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                [
                    promtool,
                    "tsdb",
                    "create-blocks-from",
                    "openmetrics",
                    str(source),
                    str(self.workdir / "data"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=120,
                check=False,
            )
        if result.returncode != 0:
            raise ServiceError(
                f"promtool backfill failed ({result.returncode}); log {self.log_path}:\n{self.log_tail()}"
            )

    def _ready(self) -> bool:
        return _http_ok(f"{self.url}/-/ready")


# ---------------------------------------------------------------------------------------------
# Alertmanager


class AlertmanagerServer(_Service):
    """Alertmanager 0.25 with one webhook receiver (bearer auth), gossip disabled."""

    name = "alertmanager"
    stop_signal = signal.SIGTERM
    receiver_name = "incidentbot"

    @classmethod
    def start(
        cls,
        base_dir: Path,
        webhook_url: str,
        bearer_token: str,
        *,
        group_wait: str = "1s",
        group_interval: str = "2s",
        repeat_interval: str = "1h",
        extra_receivers: Sequence[Mapping[str, Any]] = (),
    ) -> AlertmanagerServer:
        """``extra_receivers`` (Alertmanager receiver objects, e.g. one with ``pagerduty_configs``)
        get every alert as well: the route sends each group to the bot's receiver and to each
        of them (sibling child routes with ``continue: true`` and no matchers, so every receiver
        sees the same group key)."""
        binary = _which(["prometheus-alertmanager", "alertmanager"], "prometheus-alertmanager")
        workdir = cls._make_workdir(base_dir, cls.name)
        server = cls(workdir, free_port())
        config: dict[str, Any] = {
            "global": {"resolve_timeout": "5m"},
            "route": {
                "receiver": cls.receiver_name,
                "group_by": ["alertname", "namespace"],
                "group_wait": group_wait,
                "group_interval": group_interval,
                "repeat_interval": repeat_interval,
            },
            "receivers": [
                {
                    "name": cls.receiver_name,
                    "webhook_configs": [
                        {
                            "url": webhook_url,
                            "send_resolved": True,
                            "http_config": {"authorization": {"type": "Bearer", "credentials": bearer_token}},
                        }
                    ],
                }
            ],
        }
        if extra_receivers:
            names = [cls.receiver_name, *(str(r["name"]) for r in extra_receivers)]
            config["route"]["routes"] = [{"receiver": name, "continue": True} for name in names]
            config["receivers"].extend(dict(r) for r in extra_receivers)
        conf = workdir / "alertmanager.yml"
        conf.write_text(yaml.safe_dump(config, sort_keys=False))
        conf.chmod(0o600)  # holds the bearer token
        server._spawn(
            [
                binary,
                f"--config.file={conf}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address={HOST}:{server.port}",
                "--cluster.listen-address=",
            ]
        )
        return server

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """POST alerts (``[{"labels": {...}, "annotations": {...}, "startsAt": ...}]``) to /api/v2/alerts."""
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(list(alerts)).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                status: int = resp.status
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            exc.close()
            raise ServiceError(f"alertmanager rejected alerts: HTTP {exc.code}: {body}") from exc
        except OSError as exc:
            raise ServiceError(f"cannot post alerts to {self.url}: {exc}") from exc
        if status != 200:
            raise ServiceError(f"alertmanager rejected alerts: HTTP {status}")

    def _ready(self) -> bool:
        return _http_ok(f"{self.url}/-/ready")
