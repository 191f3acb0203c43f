"""The runbook importer on third-party runbooks (issue #14, item 13): the share of mappable
``kubectl``/``oc`` commands that became a typed proposal or diagnostic, and the share of
the hand-labelled PromQL expressions (tests/fixtures/runbooks/promql.yaml) that became a
graph, with every miss and every command that has no typed counterpart listed with why.
Writes its section of bench/RESULTS.md (``--print`` only prints it).

    .venv/bin/python bench/importer.py [--print]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sections import RESULTS_MD, write_section  # noqa: E402

from bot.tools.importer.coverage import Coverage, measure  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "runbooks"
TARGET = 0.90


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} = {100 * part / whole:.1f} %" if whole else "n/a"


def _verdict(part: int, whole: int) -> str:
    return "**PASS**" if whole and part / whole >= TARGET else "**FAIL**"


def _commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT, capture_output=True, text=True
    )
    return result.stdout.strip() or "unknown"


def run() -> str:
    expected = yaml.safe_load((CORPUS / "promql.yaml").read_text(encoding="utf-8"))
    results: dict[str, Coverage] = {}
    started = time.perf_counter()
    for path in sorted(CORPUS.glob("*/*.md")):
        rel = path.relative_to(CORPUS).as_posix()
        results[rel] = measure(path.read_text(encoding="utf-8"), path.name, expected.get(rel, []))
    elapsed = time.perf_counter() - started
    return _report(results, elapsed)


def _report(results: dict[str, Coverage], elapsed: float) -> str:
    commands = [c for r in results.values() for c in r.commands]
    mappable = [c for r in results.values() for c in r.mappable]
    mapped = sum(c.mapped for c in mappable)
    queries = [q for r in results.values() for q in r.queries]
    recognised = sum(q.recognised for q in queries)
    sources = Counter(rel.split("/", 1)[0] for rel in results)
    lines = [
        "## Runbook importer on third-party runbooks (bench/importer.py)",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; code measured: commit {_commit()}",
        f"- Corpus: {len(results)} runbooks in tests/fixtures/runbooks ("
        + ", ".join(f"{n} from {s}" for s, n in sorted(sources.items()))
        + "; sources and licences in its README), imported in "
        f"{elapsed:.1f} s",
        "- Command: `.venv/bin/python bench/importer.py`; the same figures are asserted by "
        "`tests/unit/tools/test_importer_forms.py::test_corpus_share_of_commands_mapped_and_promql_recognised`",
        "",
        "| Target | Goal | Measured | Result |",
        "| --- | --- | --- | --- |",
        f"| mappable kubectl/oc commands mapped (proposal or diagnostic in the output) | >= 90 % | "
        f"{_share(mapped, len(mappable))} | {_verdict(mapped, len(mappable))} |",
        f"| hand-labelled PromQL expressions recognised (graph in the output) | >= 90 % | "
        f"{_share(recognised, len(queries))} | {_verdict(recognised, len(queries))} |",
        "",
        f"Commands found: {len(commands)} kubectl/oc commands; {len(mappable)} mappable (a typed action or "
        "diagnostic exists for what they do), by kind:",
        "",
    ]
    families = Counter(c.family for c in mappable)
    done = Counter(c.family for c in mappable if c.mapped)
    lines += ["| what the command does | mapped |", "| --- | --- |"]
    lines += [f"| {family} | {done[family]}/{n} |" for family, n in families.most_common()]
    lines += ["", "Mappable but not mapped, and why:", ""]
    lines += [
        f"- `{rel}`: `{c.command}`: {c.reason}"
        for rel, r in results.items()
        for c in r.mappable
        if not c.mapped
    ] or ["- none"]
    lines += ["", "PromQL not recognised, and why:", ""]
    lines += [
        f"- `{rel}`: `{q.query[:120]}{'…' if len(q.query) > 120 else ''}`: {_query_note(rel)}"
        for rel, r in results.items()
        for q in r.queries
        if not q.recognised
    ] or ["- none"]
    extra = [(rel, g) for rel, r in results.items() for g in r.extra_graphs]
    lines += ["", f"Graphs of text that is not a labelled expression (false positives): {len(extra)}", ""]
    lines += [f"- `{rel}`: `{g[:120]}`" for rel, g in extra]
    reasons = Counter(c.reason for c in commands if c.family is None)
    lines += [
        "",
        f"Not mappable ({len(commands) - len(mappable)} commands): no typed action or diagnostic exists; "
        "they stay step text. The reasons, most frequent first:",
        "",
    ]
    lines += [f"- {n} x {reason}" for reason, n in reasons.most_common(12)]
    if len(reasons) > 12:
        lines.append(
            f"- {sum(n for _, n in reasons.most_common()[12:])} more, of {len(reasons) - 12} other kinds"
        )
    return "\n".join(lines) + "\n"


_QUERY_NOTES = {
    "openshift/ACMUWLMetricsCollectorFederationError.md": (
        "the runbook's own markdown breaks it: the wrapped inline code's last line starts with "
        "`> 10`, which opens a block quote (GitHub renders it broken too), so no complete query is left"
    ),
}


def _query_note(rel: str) -> str:
    return _QUERY_NOTES.get(rel, "not found in the imported playbooks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--print", action="store_true", help="print the section, do not write RESULTS.md")
    args = parser.parse_args()
    text = run()
    print(text)
    if not args.print:
        write_section(RESULTS_MD, "importer", text)


if __name__ == "__main__":
    main()
