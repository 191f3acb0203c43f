"""The layer rule of docs/ARCHITECTURE.md, enforced over every module of bot/, commands/ and
sandbox/: imports flow only down the layers, no cycles, pure layers free of I/O, SDKs and the
clock, bot/ never importing sandbox/, no module over the size limit."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "commands", "sandbox")
MAX_LINES = 1000

# Unit -> rank. A module may import a module of a lower rank, or of its own unit; never one of a
# higher rank, nor another unit of the same rank. Longest prefix wins.
LAYERS: dict[str, int] = {
    "bot.core": 0,
    "bot.obs": 0,
    "bot.config": 1,
    "bot.sources": 2,
    "bot.render": 2,
    "bot.store": 3,
    "bot.clients": 3,
    "bot.flows": 4,
    "bot.web": 5,
    "commands": 5,
    "bot.app": 6,
    "bot.tools": 6,
    "bot.__main__": 7,
    "bot": 7,  # the package's own __init__
}
# Layers that do no I/O, hold no SDK and read no clock: their functions are given what they need.
PURE = ("bot.core", "bot.render", "bot.sources")
IO_MODULES = {
    "aiohttp",
    "asyncpg",
    "redis",
    "slack_sdk",
    "slack_bolt",
    "kubernetes_asyncio",
    "aiodocker",
    "pagerduty",
    "prometheus_api_client",
    "prometheus_client",
    "requests",
    "httpx2",
    "socket",
    "subprocess",
    "urllib.request",
    "asyncio",
    "os",
    "shutil",
}
FILE_METHODS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "iterdir", "glob", "rglob"}
CLOCK_CALLS = {"datetime.now", "datetime.utcnow", "time.time", "time.monotonic", "date.today"}


@dataclass(frozen=True, slots=True)
class Import:
    target: str
    line: int
    top_level: bool  # at module level (not inside a function)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules(root: Path = ROOT) -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            yield module_name(path, root), path


MODULES = dict(modules())


def imports_of(name: str, path: Path, known: Mapping[str, Path] | None = None) -> list[Import]:
    known = MODULES if known is None else known
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level_nodes = {id(n) for n in tree.body}
    for statement in tree.body:
        if isinstance(statement, ast.If):  # `if TYPE_CHECKING:` blocks count as module level
            top_level_nodes.update(id(n) for n in statement.body)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        top = id(node) in top_level_nodes
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno, top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append(Import(base, node.lineno, top))
            # `from bot.flows import timers` imports the module bot.flows.timers
            found += [
                Import(f"{base}.{alias.name}", node.lineno, top)
                for alias in node.names
                if f"{base}.{alias.name}" in known
            ]
    return found


def own_imports(name: str, path: Path, known: Mapping[str, Path] | None = None) -> list[Import]:
    return [i for i in imports_of(name, path, known) if i.target.split(".")[0] in PACKAGES]


def unit_of(module: str) -> str | None:
    best = None
    for unit in LAYERS:
        if (module == unit or module.startswith(unit + ".")) and (best is None or len(unit) > len(best)):
            best = unit
    return best


def test_every_bot_and_commands_module_has_a_layer() -> None:
    missing = [m for m in MODULES if m.split(".")[0] in ("bot", "commands") and unit_of(m) is None]
    assert not missing, f"modules outside every layer of docs/ARCHITECTURE.md: {missing}"


def upward_imports(known: Mapping[str, Path], root: Path) -> list[str]:
    problems = []
    for name, path in known.items():
        unit = unit_of(name)
        if unit is None:
            continue
        for imp in own_imports(name, path, known):
            target_unit = unit_of(imp.target)
            if target_unit is None or target_unit == unit:
                continue
            if LAYERS[target_unit] >= LAYERS[unit]:
                problems.append(
                    f"{path.relative_to(root)}:{imp.line} ({unit}) imports {imp.target} ({target_unit})"
                )
    return problems


def test_imports_flow_only_down_the_layers() -> None:
    problems = upward_imports(MODULES, ROOT)
    assert not problems, "upward or sideways imports:\n" + "\n".join(problems)


def test_clients_do_not_import_each_other() -> None:
    problems = []
    for name, path in MODULES.items():
        if not name.startswith("bot.clients."):
            continue
        own = ".".join(name.split(".")[:3])
        for imp in own_imports(name, path):
            if imp.target.startswith("bot.clients.") and not imp.target.startswith(own):
                problems.append(f"{path.relative_to(ROOT)}:{imp.line} imports {imp.target}")
    assert not problems, "\n".join(problems)


def test_no_import_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        graph[name] = {
            i.target
            for i in own_imports(name, path)
            if i.target in MODULES and i.target != name and i.top_level
        }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("layer", PURE)
def test_pure_layers_do_no_io_and_read_no_clock(layer: str) -> None:
    problems = []
    for name, path in MODULES.items():
        if not (name == layer or name.startswith(layer + ".")):
            continue
        for imp in imports_of(name, path):
            if imp.target in IO_MODULES or imp.target.split(".")[0] in IO_MODULES - {"urllib.request"}:
                problems.append(f"{path.relative_to(ROOT)}:{imp.line} imports {imp.target}")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in CLOCK_CALLS:
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno} reads the clock")
            if isinstance(node, ast.Call) and _file_call(node.func):
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno} touches a file")
    assert not problems, "\n".join(problems)


def _file_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id == "open"
    return isinstance(func, ast.Attribute) and func.attr in FILE_METHODS


def test_bot_never_imports_sandbox_except_lazily_from_the_cli() -> None:
    problems = []
    for name, path in MODULES.items():
        if not name.startswith("bot"):
            continue
        for imp in imports_of(name, path):
            if imp.target.split(".")[0] != "sandbox":
                continue
            if name == "bot.__main__" and not imp.top_level:
                continue
            problems.append(f"{path.relative_to(ROOT)}:{imp.line} imports {imp.target}")
    assert not problems, "\n".join(problems)


def test_offline_tools_are_not_imported_by_the_server() -> None:
    problems = []
    for name, path in MODULES.items():
        if name.startswith(("bot.tools", "sandbox")) or name == "bot.__main__":
            continue
        for imp in own_imports(name, path):
            if imp.target.startswith("bot.tools"):
                problems.append(f"{path.relative_to(ROOT)}:{imp.line} imports {imp.target}")
    assert not problems, "\n".join(problems)


def test_no_module_over_the_size_limit() -> None:
    big = {
        str(path.relative_to(ROOT)): n
        for path in MODULES.values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_no_module_level_clients() -> None:
    """No global SDK clients, apps or pools: everything is built by the composition root."""
    for name, path in MODULES.items():
        if not name.startswith(("bot", "commands")):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                func = ast.unparse(node.value.func)
                assert not any(
                    word in func for word in ("Client", "App(", "create_pool", "Redis", "Session")
                ), f"{path.relative_to(ROOT)}:{node.lineno} builds {func} at import time"


def test_the_rule_itself_catches_upward_and_sideways_imports(tmp_path: Path) -> None:
    """Positive control on a small tree: a core module importing a flow, a store importing a
    client (same rank), and `from bot.flows import timers` (a module named in the import list)."""
    files = {
        "bot/core/policy.py": "from bot.flows.intake import Pipeline\n",
        "bot/store/db.py": "from bot.clients import slack\n",
        "bot/render/cards.py": "from bot.flows import timers\n",
        "bot/flows/intake.py": "from bot.core.policy import Policy\n",
        "bot/flows/timers.py": "",
        "bot/clients/slack.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    problems = upward_imports(dict(modules(tmp_path)), tmp_path)
    assert problems == [
        "bot/core/policy.py:1 (bot.core) imports bot.flows.intake (bot.flows)",
        "bot/render/cards.py:1 (bot.render) imports bot.flows (bot.flows)",
        "bot/render/cards.py:1 (bot.render) imports bot.flows.timers (bot.flows)",
        "bot/store/db.py:1 (bot.store) imports bot.clients (bot.clients)",
        "bot/store/db.py:1 (bot.store) imports bot.clients.slack (bot.clients)",
    ]
