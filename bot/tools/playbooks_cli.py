"""`incidentbot playbooks validate|import`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.config.settings import playbooks_dir_from_env
from bot.core.errors import ConfigError


def run_playbooks_command(args: argparse.Namespace) -> int:
    if args.playbooks_command == "validate":
        from bot.config.directory import validate_dir

        directory = Path(args.dir) if args.dir else playbooks_dir_from_env()
        if not directory.is_dir():
            raise ConfigError(f"{directory}: not a directory")
        problems = validate_dir(directory)
        for problem in problems:
            print(problem)
        if not problems:
            print(
                f"{directory}: the playbook directory is valid (playbooks, policy.yaml, services.yaml, clusters.yaml, correlation.yaml)",
                file=sys.stderr,
            )
        return 1 if problems else 0
    if args.playbooks_command == "import":
        from bot.tools.importer import import_runbook

        source = Path(args.runbook)
        if not source.is_file():
            raise ConfigError(f"{source}: no such file")
        try:
            markdown = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: cannot read it as UTF-8 text ({exc})") from None
        yaml_text = import_runbook(markdown, source_name=source.name)
        if args.output:
            _write_output(Path(args.output), yaml_text)
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(yaml_text)
        return 0
    return 2


def _write_output(path: Path, text: str) -> None:
    """Write the drafts, or say in one line why not (nothing is created on the way)."""
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(
            f"{path}: the directory {parent} does not exist; create it first or choose another -o"
        )
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; give -o a file name")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write it ({exc.strerror or exc})") from None
