"""House rule 1, enforced: imports flow one way."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IO_MODULES = {
    "aiohttp",
    "asyncpg",
    "redis",
    "slack_sdk",
    "slack_bolt",
    "kubernetes_asyncio",
    "pagerduty",
    "prometheus_api_client",
    "requests",
    "httpx2",
    "socket",
    "subprocess",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def test_domain_and_render_do_no_io():
    pure = [
        ROOT / "bot" / "domain.py",
        *sorted((ROOT / "bot" / "render").glob("*.py")),
        ROOT / "bot" / "postmortem.py",
        ROOT / "bot" / "templating.py",
        ROOT / "bot" / "schedule.py",
    ]
    for path in pure:
        bad = {m for m in _imports(path) if _top(m) in IO_MODULES}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
        assert not any(
            m.startswith(("bot.storage", "bot.integrations", "bot.deps")) for m in _imports(path)
        ), path


def test_integrations_do_not_import_each_other_or_use_cases():
    folder = ROOT / "bot" / "integrations"
    for path in sorted(folder.glob("*.py")):
        for module in _imports(path):
            if module.startswith("bot.integrations."):
                raise AssertionError(f"{path.name} imports another integration: {module}")
            assert module not in {
                "bot.incidents",
                "bot.pipeline",
                "bot.publisher",
                "bot.deps",
                "bot.enrich",
            }, f"{path.name} imports a use case: {module}"


def test_no_module_level_clients():
    """No global SDK clients, apps or pools (house rule 2)."""
    for path in sorted((ROOT / "bot").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                func = ast.unparse(node.value.func)
                assert not any(
                    word in func for word in ("Client", "App(", "create_pool", "Redis", "Session")
                ), f"{path.relative_to(ROOT)}:{node.lineno} builds {func} at import time"
