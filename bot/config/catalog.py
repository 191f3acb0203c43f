"""Load the service catalog (``services.yaml`` in the playbook directory), reporting every
problem with ``file:line`` the way playbooks are reported (`bot.config.playbooks`).

A directory without ``services.yaml`` has one implicit team, ``default``, whose incidents are
announced in ``INCIDENT_CHANNEL``: the bot behaves as before the catalog existed.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from bot.config.playbooks import (
    PlaybookError,
    Problem,
    _line_for,
    _load_policy,
    _read_documents,
    _Report,
    _validation_problems,
    _where,
)
from bot.core.catalog import CATALOG_FILE, Catalog
from bot.core.policy import Policy


def _read(directory: Path, policy: Policy | None) -> tuple[Catalog, list[Problem]]:
    path = directory / CATALOG_FILE
    if not path.exists():
        return Catalog(), []
    report = _Report(str(path))
    docs = _read_documents(path, report)
    catalog: Catalog | None = None
    if len(docs) > 1:
        report.add(docs[1].line, f"{CATALOG_FILE} must be a single YAML document")
    if not docs and not report.problems:
        report.add(1, f"{CATALOG_FILE} is empty: remove it, or name the teams")
    if docs:
        doc = docs[0]
        if not isinstance(doc.data, dict):
            report.add(doc.line, f"{CATALOG_FILE} must be a mapping (default_team, teams)")
        else:
            try:
                catalog = Catalog.model_validate(doc.data)
            except ValidationError as exc:
                for loc, msg in _validation_problems(exc, doc.data):
                    report.add(_line_for(doc.lines, loc, doc.line), _where(loc, msg))
            if catalog is not None and policy is not None:
                for loc, msg in catalog.problems(policy.roles):
                    report.add(_line_for(doc.lines, loc, doc.line), _where(loc, msg))
    if catalog is None or report.problems:
        return Catalog(), report.problems
    return catalog, []


def catalog_problems(directory: Path | str) -> list[Problem]:
    """Every problem of the directory's services.yaml (checked against its policy.yaml)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    policy_problems: list[Problem] = []
    policy, policy_ok = _load_policy(directory, policy_problems)
    return sorted(_read(directory, policy if policy_ok else None)[1])


def load_catalog(directory: Path | str, policy: Policy) -> Catalog:
    """The directory's catalog; raises PlaybookError listing every problem."""
    catalog, problems = _read(Path(directory), policy)
    if problems:
        raise PlaybookError(sorted(problems))
    return catalog
