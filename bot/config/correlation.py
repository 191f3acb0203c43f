"""Load ``correlation.yaml`` from the playbook directory, reporting every problem with
``file:line`` like the playbooks (see `bot.core.correlation` for what the rules mean).

Without the file the default rules apply (`CorrelationRules()`).

    python -m bot.config.correlation --write-schema [DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from bot.config.playbooks import (
    DEFAULT_PLAYBOOKS_DIR,
    PlaybookError,
    Problem,
    _line_for,
    _read_documents,
    _Report,
    _validation_problems,
    _where,
)
from bot.core.correlation import (
    CORRELATION_FILE,
    CORRELATION_SCHEMA_FILE,
    CorrelationRules,
    correlation_json_schema,
)


def correlation_schema_text() -> str:
    return json.dumps(correlation_json_schema(), indent=2, ensure_ascii=False) + "\n"


def check_correlation(directory: Path | str) -> tuple[CorrelationRules, list[Problem]]:
    """The rules of `directory` (the defaults without the file) and every problem in them."""
    path = Path(directory) / CORRELATION_FILE
    if not path.exists():
        return CorrelationRules(), []
    report = _Report(str(path))
    docs = _read_documents(path, report)
    rules = CorrelationRules()
    if len(docs) > 1:
        report.add(docs[1].line, f"{CORRELATION_FILE} must be a single YAML document")
    if docs:
        doc = docs[0]
        if not isinstance(doc.data, dict):
            report.add(doc.line, f"{CORRELATION_FILE} must be a mapping")
        else:
            try:
                rules = CorrelationRules.model_validate(doc.data)
            except ValidationError as exc:
                for loc, msg in _validation_problems(exc, doc.data):
                    report.add(_line_for(doc.lines, loc, doc.line), _where(loc, msg))
    return rules, sorted(report.problems)


def load_correlation(directory: Path | str) -> CorrelationRules:
    """The rules; raises PlaybookError listing every problem."""
    rules, problems = check_correlation(directory)
    if problems:
        raise PlaybookError(problems)
    return rules


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.config.correlation", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--write-schema", metavar="DIR", nargs="?", const=str(DEFAULT_PLAYBOOKS_DIR))
    args = parser.parse_args(argv)
    if args.write_schema:
        target = Path(args.write_schema) / CORRELATION_SCHEMA_FILE
        target.write_text(correlation_schema_text(), encoding="utf-8")
        sys.stdout.write(f"wrote {target}\n")
        return 0
    sys.stdout.write(correlation_schema_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
