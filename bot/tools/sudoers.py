"""`incidentbot sudoers`: the sudoers snippet for the dedicated SSH account, derived from the
policy like `incidentbot rbac` derives the Kubernetes Roles.

The bot runs a host template with `sudo: true` as `sudo -n <argv>`; the account may run exactly
those argvs (and their read-only `preview` argvs) as root, nothing else. Which templates: those
an approval rule that can govern `host_command` allows (the `host_command` rule, else
`default`; each rule a playbook's host remediation names; every rule's per-host version),
narrowed to one host with `--host`.

Each `{arg}` must have a pattern that is a plain list of alternatives (`backend|celery_worker`):
the template gets one line per combination, every argument literal, so sudo allows exactly the
argvs the bot may send. A template sudoers cannot allow exactly (a free-form pattern, more than
64 combinations, an argument with whitespace) is left out with a comment saying why, never
loosened to a wildcard: write its line by hand, or give the argument a list of alternatives.
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import re
import sys
from pathlib import Path
from typing import Any

from bot.config.playbooks import POLICY_FILE, PlaybookError, load_playbooks
from bot.core.actions import ActionName
from bot.core.argv import HostTemplate
from bot.core.errors import ConfigError
from bot.core.playbooks import PlaybookSet
from bot.core.policy import ApprovalRule
from bot.tools.rbac import _directory

__all__ = ["add_parser", "allowed_templates", "render", "run", "sudoers_lines"]

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([a-z][a-z0-9_]*)\}")
_LITERAL = re.compile(r"[A-Za-z0-9_./@%+-]+")
_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
MAX_COMBINATIONS = 64


def _rules(playbooks: PlaybookSet, host: str | None) -> list[ApprovalRule]:
    policy = playbooks.policy
    names = ["default"] + [
        r.approval for pb in playbooks for r in pb.remediations if r.action is ActionName.HOST_COMMAND
    ]
    rules: list[ApprovalRule] = []
    for name in dict.fromkeys(names):
        rule = policy.rule_for(ActionName.HOST_COMMAND, name)
        targets = [host] if host else [None, *rule.hosts]
        rules += [rule.for_cluster(t) for t in targets]
    return rules


def allowed_templates(playbooks: PlaybookSet, host: str | None = None) -> list[str]:
    """The host templates some rule lets `host_command` run (on `host`, when given)."""
    found: dict[str, None] = {}
    for rule in _rules(playbooks, host):
        if host and not any(fnmatch.fnmatchcase(host, glob) for glob in rule.hosts_allow):
            continue
        if not rule.hosts_allow:
            continue
        found.update(
            dict.fromkeys(t for t in rule.host_templates_allow if t in playbooks.policy.host_templates)
        )
    return list(found)


def _escape(word: str) -> str:
    """A word as sudoers reads it (these characters end or split a command spec)."""
    return re.sub(r"([!=:,()\\])", r"\\\1", word)


def _command(argv0: str, bin_dir: str) -> str:
    return argv0 if argv0.startswith("/") else f"{bin_dir.rstrip('/')}/{argv0}"


def _parts(element: str) -> list[tuple[bool, str]]:
    """(is a placeholder, text) pieces of one argv element; `{{`/`}}` are literal braces."""
    pieces: list[tuple[bool, str]] = []
    last = 0
    for m in _PLACEHOLDER.finditer(element):
        if m.start() > last:
            pieces.append((False, element[last : m.start()]))
        pieces.append((m.group(1) is not None, m.group(1) or m.group(0)[0]))
        last = m.end()
    if last < len(element):
        pieces.append((False, element[last:]))
    return pieces


def _alternatives(pattern: str) -> list[str] | None:
    options = pattern.split("|")
    return options if all(_LITERAL.fullmatch(o) for o in options) else None


def _literal_lines(argv: list[str], template: HostTemplate) -> list[list[str]] | None:
    names = list(dict.fromkeys(n for e in argv for is_arg, n in _parts(e) if is_arg))
    choices = [_alternatives(template.args[n].pattern) for n in names]
    if any(c is None for c in choices):
        return None
    combos = list(itertools.product(*[c or [] for c in choices]))
    if len(combos) > MAX_COMBINATIONS:
        return None
    lines = []
    for combo in combos:
        values = dict(zip(names, combo, strict=True))
        lines.append(["".join(values[t] if a else t for a, t in _parts(e)) for e in argv])
    return lines


def sudoers_lines(name: str, template: HostTemplate, account: str, bin_dir: str) -> list[str]:
    """The sudoers lines (and a comment) letting `account` run the template and its preview."""
    out = [f"# {name}: {template.description or 'host template'}"]
    for argv in [template.argv, *([template.preview] if template.preview else [])]:
        if any(re.search(r"\s", part) for part in argv):
            out.append(f"# left out: {argv[0]} has an argument with whitespace sudoers cannot match exactly")
            continue
        command = _escape(_command(argv[0], bin_dir))
        literal = _literal_lines(argv[1:], template)
        if literal is not None:
            out += [
                f"{account} ALL=(root) NOPASSWD: {command} {' '.join(_escape(a) for a in args)}".rstrip()
                if args
                else f'{account} ALL=(root) NOPASSWD: {command} ""'
                for args in literal
            ]
            continue
        out.append(
            f"# left out: an argument of `{' '.join(argv)}` is not a list of at most "
            f"{MAX_COMBINATIONS} literal alternatives"
        )
    return out


def render(playbooks: PlaybookSet, source: str, account: str, *, host: str | None, bin_dir: str) -> str:
    policy = playbooks.policy
    names = allowed_templates(playbooks, host)
    header = [
        f"# Generated by `incidentbot sudoers` from {source}: do not edit; generate it again when",
        "# the policy changes. Install with `visudo -cf <file>` then into /etc/sudoers.d/.",
        f"# Account {account} may run exactly these commands as root{f' on host {host}' if host else ''};",
        "# host templates without `sudo: true` run as the account itself and need no line.",
        f"Defaults:{account} !requiretty, env_reset",
        "",
    ]
    body: list[str] = []
    for name in names:
        template = policy.host_templates[name]
        if template.sudo:
            body += [*sudoers_lines(name, template, account, bin_dir), ""]
    if not body:
        body = ["# nothing: no host template with `sudo: true` is allowed by the policy", ""]
    return "\n".join(header + body)


def add_parser(sub: Any) -> None:
    """The `sudoers` subcommand on `incidentbot`'s subparsers."""
    parser = sub.add_parser(
        "sudoers",
        help="print the sudoers snippet allowing exactly the policy's host templates",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument(
        "--policy", default=None, metavar="PATH", help="the playbooks directory or its policy.yaml"
    )
    parser.add_argument("--user", default="incidentbot", help="the dedicated account (default incidentbot)")
    parser.add_argument(
        "--host", default=None, help="only what the policy allows on this host (clusters.yaml)"
    )
    parser.add_argument("--bin-dir", default="/usr/bin", help="where bare commands live (default /usr/bin)")


def run(args: argparse.Namespace) -> int:
    if not _ACCOUNT.fullmatch(args.user):
        raise ConfigError(f"--user must be a POSIX account name, got {args.user!r}")
    if not args.bin_dir.startswith("/"):
        raise ConfigError("--bin-dir must be an absolute path")
    directory: Path = _directory(args.policy)
    try:
        playbooks = load_playbooks(directory)
    except PlaybookError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    sys.stdout.write(
        render(playbooks, str(directory / POLICY_FILE), args.user, host=args.host, bin_dir=args.bin_dir)
    )
    return 0
