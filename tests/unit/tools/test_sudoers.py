"""`incidentbot sudoers`: exactly the argvs the bot sends through `sudo -n`, from the policy."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.config.playbooks import DEFAULT_PLAYBOOKS_DIR, load_playbooks
from bot.core.playbooks import PlaybookSet
from bot.tools.sudoers import allowed_templates, render

PREFIX = "incidentbot ALL=(root) NOPASSWD: "


@pytest.fixture(scope="module")
def bundled() -> PlaybookSet:
    return load_playbooks(DEFAULT_PLAYBOOKS_DIR)


def allowed_lines(text: str) -> set[str]:
    return {line.removeprefix(PREFIX) for line in text.splitlines() if line.startswith(PREFIX)}


def sent(playbooks: PlaybookSet, names: list[str]) -> set[str]:
    """Every argv (after `sudo -n`) the bot can send for these templates, as sudoers writes it."""
    found: set[str] = set()
    for name in names:
        template = playbooks.policy.host_templates[name]
        if not template.sudo:
            continue
        options = {arg: spec.pattern.split("|") for arg, spec in template.args.items()}
        for combo in itertools.product(*options.values()):
            args = dict(zip(options, combo, strict=True))
            for argv in (template.command(args), template.preview_command(args)):
                if argv is None:
                    continue
                assert argv[:2] == ["sudo", "-n"]
                words = [f"/usr/bin/{argv[2]}", *argv[3:]]
                found.add(" ".join(w.replace(",", "\\,").replace("=", "\\=") for w in words))
    return found


def test_bundled_policy_allows_exactly_the_argvs_the_bot_sends(bundled: PlaybookSet) -> None:
    text = render(bundled, "policy.yaml", "incidentbot", host=None, bin_dir="/usr/bin")
    names = allowed_templates(bundled)
    assert allowed_lines(text) == sent(bundled, names)
    assert "/usr/bin/systemctl restart skillmeat-api" in allowed_lines(text)
    assert "/usr/bin/systemctl show -p ActiveState\\,SubState\\,MainPID skillmeat-api" in allowed_lines(text)
    # Templates without sudo (SkillMeat's own CLI) run as the account: no line.
    assert not any("skillmeat mcp" in line or "cache clear" in line for line in allowed_lines(text))
    assert "*" not in text and "ALL, " not in text


def test_one_host_gets_only_what_the_policy_allows_there(bundled: PlaybookSet) -> None:
    skillmeat = allowed_lines(
        render(bundled, "policy.yaml", "incidentbot", host="skillmeat", bin_dir="/usr/bin")
    )
    assert "/usr/bin/systemctl restart skillmeat-api" in skillmeat
    assert not any("onquota" in line for line in skillmeat)
    onquota = allowed_lines(render(bundled, "policy.yaml", "incidentbot", host="onquota", bin_dir="/usr/bin"))
    assert "/usr/bin/docker compose -p onquota restart backend" in onquota
    assert not any("systemctl" in line for line in onquota)


def test_free_form_arguments_are_left_out_never_wildcarded(tmp_path: Path) -> None:
    policy = {
        "roles": {"sre": {"users": ["U0OPS"]}},
        "approvals": {
            "host_command": {
                "requesters": ["sre"],
                "approvers": ["sre"],
                "hosts_allow": ["*"],
                "host_templates_allow": ["restart_any", "restart_one"],
            }
        },
        "host_templates": {
            "restart_any": {
                "argv": ["systemctl", "restart", "{unit}"],
                "args": {"unit": {"pattern": "[a-z-]+"}},
                "sudo": True,
            },
            "restart_one": {"argv": ["/bin/systemctl", "restart", "api"], "sudo": True},
        },
    }
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    text = render(load_playbooks(tmp_path), "policy.yaml", "ops", host=None, bin_dir="/usr/bin")
    assert "# left out: an argument of `systemctl restart {unit}`" in text
    assert [line for line in text.splitlines() if line.startswith("ops ALL")] == [
        "ops ALL=(root) NOPASSWD: /bin/systemctl restart api"
    ]


def test_the_command_line_prints_it(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "sudoers",
            "--policy",
            str(DEFAULT_PLAYBOOKS_DIR),
            "--user",
            "sm-ops",
            "--host",
            "skillmeat",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "sm-ops ALL=(root) NOPASSWD: /usr/bin/systemctl restart skillmeat-api" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "bot", "sudoers", "--user", "root; rm"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0 and "POSIX account name" in bad.stderr and "Traceback" not in bad.stderr


def visudo_check(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """sudo's own parser on the file, as `visudo -cf` before installing it (provisioned)."""
    path = tmp_path / "incidentbot.sudoers"
    path.write_text(text)
    path.chmod(0o440)
    return subprocess.run(
        ["/usr/sbin/visudo", "-c", "-f", str(path)], capture_output=True, text=True, check=False
    )


def test_sudos_own_parser_accepts_what_is_generated(bundled: PlaybookSet, tmp_path: Path) -> None:
    text = render(bundled, "playbooks/", "incidentbot", host=None, bin_dir="/usr/bin")
    assert allowed_lines(text), text  # something to check
    checked = visudo_check(text, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Control: the parser refuses a broken line.
    broken = visudo_check(text + PREFIX.replace("=(root)", "=(root") + "/usr/bin/true\n", tmp_path)
    assert broken.returncode != 0 and "syntax error" in (broken.stdout + broken.stderr)
