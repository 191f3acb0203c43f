"""Load ``clusters.yaml`` from the playbook directory, reporting every problem with
``file:line`` like the playbooks (see `bot.core.clusters` for what it means).

    python -m bot.config.clusters --write-schema [DIR]
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
    POLICY_FILE,
    PlaybookError,
    Problem,
    _line_for,
    _read_documents,
    _Report,
    _validation_problems,
    _where,
)
from bot.core.clusters import ClusterCatalog
from bot.core.policy import Policy

CLUSTERS_FILE = "clusters.yaml"
CLUSTERS_SCHEMA_FILE = "clusters.schema.json"


def clusters_schema_text() -> str:
    schema = ClusterCatalog.model_json_schema()
    schema["title"] = "incidentbot clusters"
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def check_clusters(directory: Path, policy: Policy | None = None) -> tuple[ClusterCatalog, list[Problem]]:
    """The catalog of `directory` (the implicit single cluster without the file) and every
    problem in it; with `policy`, its per-cluster rules must name listed clusters."""
    path = Path(directory) / CLUSTERS_FILE
    if not path.exists():
        return ClusterCatalog(), []
    report = _Report(str(path))
    docs = _read_documents(path, report)
    catalog = ClusterCatalog()
    if len(docs) > 1:
        report.add(docs[1].line, f"{CLUSTERS_FILE} must be a single YAML document")
    if docs:
        doc = docs[0]
        if not isinstance(doc.data, dict):
            report.add(doc.line, f"{CLUSTERS_FILE} must be a mapping")
        else:
            try:
                catalog = ClusterCatalog.model_validate(doc.data)
            except ValidationError as exc:
                for loc, msg in _validation_problems(exc, doc.data):
                    report.add(_line_for(doc.lines, loc, doc.line), _where(loc, msg))
    if policy is not None and not report.problems:
        report.problems += _policy_problems(Path(directory) / POLICY_FILE, policy, catalog)
    return catalog, sorted(report.problems)


def _policy_problems(path: Path, policy: Policy, catalog: ClusterCatalog) -> list[Problem]:
    # Rules per cluster (per host) are checked once clusters.yaml lists any cluster (host).
    found = [] if catalog.implicit else policy.cluster_problems(catalog.clusters)
    found += policy.host_problems(catalog.hosts) if catalog.hosts else []
    if not found:
        return []
    report = _Report(str(path))
    docs = _read_documents(path, report)  # read again only to point at the lines
    lines = docs[0].lines if docs else {}
    for loc, msg in found:
        report.add(_line_for(lines, loc, 1), _where(loc, msg))
    return report.problems


def load_clusters(directory: Path, policy: Policy | None = None) -> ClusterCatalog:
    """The catalog; raises PlaybookError listing every problem."""
    catalog, problems = check_clusters(directory, policy)
    if problems:
        raise PlaybookError(problems)
    return catalog


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.config.clusters", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--write-schema", metavar="DIR", nargs="?", const=str(DEFAULT_PLAYBOOKS_DIR))
    args = parser.parse_args(argv)
    if args.write_schema:
        target = Path(args.write_schema) / CLUSTERS_SCHEMA_FILE
        target.write_text(clusters_schema_text(), encoding="utf-8")
        sys.stdout.write(f"wrote {target}\n")
        return 0
    sys.stdout.write(clusters_schema_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
