"""A real OpenSSH server standing in for a host (SkillMeat's, OnQuota's): `/usr/sbin/sshd -D`
on 127.0.0.1 with a generated host key, a generated client key in its AuthorizedKeysFile, and
the current user's sessions given a PATH whose `systemctl`, `docker`, `skillmeat` and `sudo`
are recording stand-ins: each appends its argv as one JSON line to `calls.jsonl` (`sudo -n`
then runs the rest, like the real one with a matching sudoers line).

`systemctl show` prints a unit state whose MainPID changes with every `systemctl restart`, so
a preview before and after differ the way they do on a real host; `docker compose ps` lists one
container; scaling SkillMeat's `api` to 5 fails (exit 1), as on a host short of memory.

The tests start one per session (the `sshd` fixture); the sandbox starts one when sshd is
installed and shows a SkillMeat restart approved, run over SSH and verified (`host_demo`).
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.core.hosts import SshAccess
from sandbox.slack import Message, SlackDriver, SlackSandbox

SSHD = Path("/usr/sbin/sshd")
KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"

_RECORDER = """#!{python}
import json, os, sys
name = os.path.basename(sys.argv[0])
with open({calls!r}, "a", encoding="utf-8") as f:
    f.write(json.dumps([name, *sys.argv[1:]]) + "\\n")
state = {state!r}
if name == "sudo":
    args = sys.argv[1:]
    if args[:1] == ["-n"]:
        args = args[1:]
    os.execvp(args[0], args)
if name == "systemctl" and sys.argv[1:2] == ["restart"]:
    pid = int(open(state).read() or "100") if os.path.exists(state) else 100
    open(state, "w").write(str(pid + 1))
if name == "systemctl" and sys.argv[1:2] == ["show"]:
    pid = open(state).read() if os.path.exists(state) else "100"
    print("ActiveState=active\\nSubState=running\\nMainPID=" + pid)
if name == "docker" and "ps" in sys.argv:
    print(json.dumps({{"Service": "worker", "State": "running"}}))
if name == "docker" and "api=5" in sys.argv:
    print("api: scale to 5 failed: not enough memory", file=sys.stderr)
    sys.exit(1)
if name == "skillmeat" and sys.argv[1:2] == ["fail"]:
    print("skillmeat: no such server", file=sys.stderr)
    sys.exit(3)
"""
STAND_INS = ("systemctl", "docker", "skillmeat", "sudo")


@dataclass
class Sshd:
    port: int
    root: Path
    user: str
    host_key: str  # the server's public key, as clusters.yaml pins it
    client_key: Path

    @property
    def calls_file(self) -> Path:
        return self.root / "calls.jsonl"

    def access(self, **changes: Any) -> SshAccess:
        fields: dict[str, Any] = {
            "address": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "private_key": str(self.client_key),
            "host_key": self.host_key,
            "connect_timeout_seconds": 10,
        }
        return SshAccess.model_validate({**fields, **changes})

    def host_yaml(self, team: str, select: dict[str, str]) -> dict[str, Any]:
        """A clusters.yaml `hosts` entry for this server."""
        return {"team": team, "transport": "ssh", "ssh": self.access().model_dump(), "select": select}

    def mark(self) -> int:
        """How many calls were recorded so far (pass it to `calls`)."""
        return len(self.calls(0))

    def calls(self, since: int) -> list[list[str]]:
        """The argvs the stand-ins received after `since` earlier calls."""
        if not self.calls_file.exists():
            return []
        lines = self.calls_file.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines[since:]]


def _keygen(path: Path) -> str:
    subprocess.run([KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text(encoding="utf-8").strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # polling for the listening socket, not standing in for an event
    raise RuntimeError(f"sshd did not listen on {port}: {log.read_text(errors='replace')[-2000:]}")


def hosts_yaml(sshd: Sshd) -> dict[str, Any]:
    """clusters.yaml `hosts` for the bundled policy's hosts, both on this server."""
    skillmeat = sshd.host_yaml("skillmeat", {"job": "skillmeat"})
    onquota = {**skillmeat, "team": "onquota", "select": {"compose_project": "onquota"}}
    return {"skillmeat": skillmeat, "onquota": onquota}


def new_host_key(root: Path, name: str) -> str:
    """Another ed25519 public key (a host key sshd does not have)."""
    return _keygen(root / name)


@contextmanager
def running_sshd(root: Path) -> Iterator[Sshd]:
    if not SSHD.exists():
        raise RuntimeError("/usr/sbin/sshd is missing: apt-get install openssh-server")
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    host_key = _keygen(root / "host_key")
    client_pub = _keygen(root / "client_key")
    (root / "authorized_keys").write_text(client_pub + "\n", encoding="utf-8")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    script = _RECORDER.format(
        python=shutil.which("python3") or "/usr/bin/python3",
        calls=str(root / "calls.jsonl"),
        state=str(root / "unit_pid"),
    )
    for name in STAND_INS:
        path = bin_dir / name
        path.write_text(script, encoding="utf-8")
        path.chmod(0o755)
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {root / 'host_key'}",
                f"PidFile {root / 'sshd.pid'}",
                f"AuthorizedKeysFile {root / 'authorized_keys'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "UsePAM no",
                "AllowTcpForwarding no",
                "X11Forwarding no",
                "PrintMotd no",
                f"SetEnv PATH={bin_dir}:/usr/bin:/bin",
                "",
            ]
        ),
        encoding="utf-8",
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    log = root / "sshd.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=log_file)
    try:
        _wait_listening(port, proc, log)
        yield Sshd(port, root, getpass.getuser(), host_key, root / "client_key")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# The SkillMeat alert of the sandbox demo, and the remediation its playbook proposes.
DEMO_HOST_ALERT = ("HighErrorRate", {"job": "skillmeat", "namespace": "skillmeat", "severity": "critical"})
DEMO_HOST_TITLE = "Restart skillmeat-api (systemd)"


async def host_demo(
    slack: SlackSandbox, driver: SlackDriver, fire: Callable[[], Awaitable[int]], approver: str
) -> str:
    """Fire the SkillMeat alert, approve the restart its playbook proposes as `approver`, and
    return the verification the bot posts once it ran over SSH."""
    await fire()

    def proposal(s: SlackSandbox) -> Message | None:
        for channel in s.channels.values():
            for m in channel.messages:
                text = json.dumps(m.blocks or [])
                if DEMO_HOST_TITLE in text and "approve_action" in text:
                    return m
        return None

    msg = await slack.wait_for(proposal, timeout=30)
    await driver.click("approve_action", user_id=approver, channel_id=msg.channel, message_ts=msg.ts)

    def verified(s: SlackSandbox) -> str | None:
        return next((m.text for m in s.thread(msg.channel, msg.ts) if "Verification of" in m.text), None)

    return await slack.wait_for(verified, timeout=90)
