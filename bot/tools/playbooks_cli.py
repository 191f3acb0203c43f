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
                f"{directory}: all playbooks, policy.yaml, services.yaml and clusters.yaml are valid",
                file=sys.stderr,
            )
        return 1 if problems else 0
    if args.playbooks_command == "import":
        from bot.tools.importer import import_runbook

        source = Path(args.runbook)
        if not source.is_file():
            raise ConfigError(f"{source}: no such file")
        yaml_text = import_runbook(source.read_text(encoding="utf-8"), source_name=source.name)
        if args.output:
            Path(args.output).write_text(yaml_text, encoding="utf-8")
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(yaml_text)
        return 0
    return 2
