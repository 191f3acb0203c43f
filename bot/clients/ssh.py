"""Commands on a host over SSH (`asyncssh`): key-based, with the host key pinned.

The pinned key comes from clusters.yaml (`hosts.<name>.ssh.host_key`): the server must present
exactly that key, or the connection is refused before any command is sent (no trust on first
use, no known_hosts file of the machine the bot runs on). A command is an argv from a policy
template whose arguments were checked: it is joined here with `shlex.quote`, so the remote
login shell sees each element as one word and nothing else; the bot never builds a command
line from text a user wrote.

One connection per command: host actions are rare, and a fresh connection re-checks the key.
Output is read up to `max_output` bytes per stream; the rest is drained and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import warnings
from collections.abc import Sequence

from bot.core.errors import IntegrationError
from bot.core.hosts import SshAccess, public_key_of
from bot.core.ports import CommandOutput
from bot.obs import logs

with warnings.catch_warnings():
    # asyncssh 2.21 builds its DSA key types at import; DSA keys are never accepted here
    # (the pinned key is the only one trusted).
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import asyncssh

__all__ = ["MAX_OUTPUT", "SshHost"]

log = logs.logger(logs.Component.HOSTS)

MAX_OUTPUT = 16 * 1024
_CHUNK = 4096


class SshHost:
    """One host of clusters.yaml reached over SSH (`bot.core.ports.HostTransport`)."""

    def __init__(self, name: str, access: SshAccess, *, max_output: int = MAX_OUTPUT) -> None:
        self.name = name
        self.access = access
        self.max_output = max_output
        self._pinned = asyncssh.import_public_key(public_key_of(access.host_key))

    @property
    def where(self) -> str:
        a = self.access
        return f"ssh {a.user}@{a.address}:{a.port}"

    async def run(self, argv: Sequence[str], *, timeout_s: float) -> CommandOutput:
        """Run `argv` on the host; raises IntegrationError (unreachable, refused, changed host
        key: nothing ran) or TimeoutError (the command may have started)."""
        if not argv:
            raise ValueError("an empty argv")
        line = " ".join(shlex.quote(part) for part in argv)
        async with asyncio.timeout(timeout_s):
            conn = await self._connect()
            try:
                completed, out, err_text, cut = await self._run(conn, line)
            except BaseException:
                # A timeout or cancellation: the command was sent a KILL; close without
                # waiting (a clean close would wait for the command).
                conn.close()
                raise
            conn.close()
        status = completed.exit_status
        if status is None:  # killed by a signal
            status = 128 + _signal_number(completed.exit_signal)
        log.info("ssh.ran", extra={"host": self.name, "command": argv[0], "exit_status": status})
        return CommandOutput(status, out, err_text, truncated=cut)

    async def _run(
        self, conn: asyncssh.SSHClientConnection, line: str
    ) -> tuple[asyncssh.SSHCompletedProcess, str, str, bool]:
        try:
            process = await conn.create_process(line, encoding="utf-8", errors="replace")
        except asyncssh.Error as err:
            raise IntegrationError("ssh", f"{self.name}: could not start the command: {err}") from err
        try:
            (out, cut_out), (err_text, cut_err) = await asyncio.gather(
                self._read(process.stdout), self._read(process.stderr)
            )
            completed = await process.wait(check=False)
        except BaseException:
            with contextlib.suppress(asyncssh.Error, OSError):  # the channel may be gone already
                process.send_signal("KILL")  # OpenSSH passes it on to the command
            raise
        return completed, out, err_text, cut_out or cut_err

    async def _connect(self) -> asyncssh.SSHClientConnection:
        a = self.access
        try:
            # Read on every connection: a rotated Secret is picked up without a restart.
            key = await asyncio.to_thread(asyncssh.read_private_key, a.private_key)
        except (OSError, asyncssh.KeyImportError) as err:
            raise IntegrationError(
                "ssh", f"{self.name}: the private key {a.private_key} cannot be read ({err}); nothing was run"
            ) from err
        try:
            return await asyncssh.connect(
                a.address,
                a.port,
                username=a.user,
                client_keys=[key],
                # (trusted host keys, trusted CA keys, revoked keys): only the pinned key.
                known_hosts=([self._pinned], [], []),
                agent_path=None,
                config=[],
                connect_timeout=a.connect_timeout_seconds,
                login_timeout=a.connect_timeout_seconds,
            )
        except asyncssh.HostKeyNotVerifiable as err:
            log.warning("ssh.host_key_refused", extra={"host": self.name})
            raise IntegrationError(
                "ssh",
                f"{self.name} ({a.address}:{a.port}) presented a host key that is not the one pinned in "
                "clusters.yaml; nothing was run. If the host was rebuilt, pin its new key.",
            ) from err
        except asyncssh.PermissionDenied as err:
            raise IntegrationError(
                "ssh", f"{self.name}: the key of {a.user} was refused; nothing was run"
            ) from err
        except (OSError, asyncssh.Error) as err:
            raise IntegrationError("ssh", f"{self.name} ({a.address}:{a.port}) unreachable: {err}") from err

    async def _read(self, stream: asyncssh.SSHReader[str]) -> tuple[str, bool]:
        kept: list[str] = []
        size, cut = 0, False
        while chunk := await stream.read(_CHUNK):
            if size < self.max_output:
                kept.append(chunk[: self.max_output - size])
            cut = cut or size + len(chunk) > self.max_output
            size += len(chunk)
        return "".join(kept), cut


def _signal_number(name: str | tuple[str, bool, str, str] | None) -> int:
    signals = {"HUP": 1, "INT": 2, "KILL": 9, "TERM": 15}
    if isinstance(name, tuple):
        name = name[0]
    return signals.get(name or "", 0)
