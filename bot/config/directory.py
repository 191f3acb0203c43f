"""A whole playbook directory: playbooks, policy.yaml, the service catalog (services.yaml),
clusters.yaml and correlation.yaml, every problem with ``file:line``; and its command line.

    python -m bot.config.directory validate [DIR]
    python -m bot.config.directory --write-schema [DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config.catalog import catalog_problems
from bot.config.clusters import check_clusters
from bot.config.correlation import check_correlation
from bot.config.playbooks import (
    DEFAULT_PLAYBOOKS_DIR,
    Problem,
    load_with_problems,
    schema_text,
    write_schemas,
)
from bot.core.playbooks import playbook_json_schema, policy_json_schema


def validate_dir(directory: Path | str = DEFAULT_PLAYBOOKS_DIR) -> list[Problem]:
    """Every problem in a playbook directory; empty when valid. The policy's per-cluster rules
    are checked against clusters.yaml once the policy itself is valid."""
    playbooks, problems = load_with_problems(Path(directory))
    problems += catalog_problems(directory)
    problems += check_clusters(Path(directory), None if problems else playbooks.policy)[1]
    problems += check_correlation(directory)[1]
    return sorted(problems)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.config.directory", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--schema", action="store_true", help="print the playbook JSON Schema")
    parser.add_argument("--policy-schema", action="store_true", help="print the policy JSON Schema")
    parser.add_argument(
        "--write-schema",
        metavar="DIR",
        nargs="?",
        const=str(DEFAULT_PLAYBOOKS_DIR),
        help="write the JSON Schemas (playbooks, policy, services) into DIR (default: bundled)",
    )
    sub = parser.add_subparsers(dest="command")
    validate = sub.add_parser("validate", help="validate a playbook directory")
    validate.add_argument("dir", nargs="?", default=str(DEFAULT_PLAYBOOKS_DIR))
    args = parser.parse_args(argv)
    if args.schema:
        sys.stdout.write(schema_text(playbook_json_schema()))
        return 0
    if args.policy_schema:
        sys.stdout.write(schema_text(policy_json_schema()))
        return 0
    if args.write_schema:
        for path in write_schemas(Path(args.write_schema)):
            sys.stdout.write(f"wrote {path}\n")
        return 0
    if args.command == "validate":
        problems = validate_dir(Path(args.dir))
        for problem in problems:
            sys.stdout.write(f"{problem}\n")
        return 1 if problems else 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
