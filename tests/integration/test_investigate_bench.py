"""bench/investigate.py against the fake model on three recorded cases: the harness, the real
loop and the scoring (a wrong citation, a wrong action and a missed abstention are caught)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from sandbox.llm import answer

BENCH = Path(__file__).resolve().parents[2] / "bench"
pytestmark = pytest.mark.timeout(60)


def load_bench() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_investigate", BENCH / "investigate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up while the module runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_bench_scores_three_cases_against_the_fake() -> None:
    bench = load_bench()
    cases = bench.load_cases(["db-pool-after-deploy", "missing-evidence", "disk-wal-growth"])
    scores = {s.case: s for s in await bench.evaluate(cases)}
    assert scores["db-pool-after-deploy"].passed and scores["db-pool-after-deploy"].tokens > 0
    assert scores["missing-evidence"].passed and scores["missing-evidence"].status == "abstained"
    # Its script cites a tool call that never ran: the score says so.
    wal = scores["disk-wal-growth"]
    assert wal.root_cause and not wal.citations_valid
    text = bench.report(list(scores.values()), "fake", "fake")
    assert "| db-pool-after-deploy | ✓ | ✓ | ✓ | ✓ |" in text


async def test_scoring_catches_a_wrong_action_and_a_missed_abstention() -> None:
    bench = load_bench()
    [pool, missing] = bench.load_cases(["db-pool-after-deploy", "missing-evidence"])
    wrong_action = answer(
        {
            "findings": [{"claim": "pool exhausted after 2.4.0", "citations": ["c1"], "confidence": 0.9}],
            "actions": [
                {
                    "action": "rollout_restart",
                    "params": {"namespace": "birthday-scheduler", "deployment": "birthday-scheduler-api"},
                    "citations": ["c1"],
                }
            ],
        }
    )
    overconfident = answer(
        {"findings": [{"claim": "GitHub is slow", "citations": ["c1"], "confidence": 0.9}]}
    )
    pool = dataclasses.replace(pool, script=[pool.script[0], wrong_action])
    missing = dataclasses.replace(missing, script=[missing.script[0], overconfident])
    first, second = await bench.evaluate([pool, missing])
    assert first.root_cause and not first.action_correct
    assert not second.abstention_correct
