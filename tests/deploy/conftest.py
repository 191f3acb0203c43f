"""Deployment checks with the real tools: helm 4, hadolint (scripts/install-tools.sh) and promtool.

A missing tool FAILS the test with the command that installs it; nothing is skipped.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "incidentbot"
FULL_VALUES = Path(__file__).resolve().parent / "values-full.yaml"
TOOLS = ROOT / ".tools" / "bin"
RELEASE = "rel"
NAMESPACE = "incidentbot"

Manifest = dict[str, Any]
Render = Callable[..., list[Manifest]]


def tool(name: str) -> Path:
    path = TOOLS / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `bash scripts/install-tools.sh` first", pytrace=False)
    return path


@pytest.fixture(scope="session")
def helm() -> Path:
    return tool("helm")


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").is_file() else None)
    if found is None:
        pytest.fail(
            "promtool is missing: run `bash scripts/provision.sh` (Debian package prometheus)", pytrace=False
        )
    return found


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="session")
def render(helm: Path) -> Render:
    """`helm template` the chart with values files and --set pairs; the parsed documents."""
    cache: dict[tuple[Any, ...], list[Manifest]] = {}

    def _render(*values_files: Path, sets: tuple[str, ...] = ()) -> list[Manifest]:
        key = (values_files, sets)
        if key not in cache:
            args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
            for f in values_files:
                args += ["--values", str(f)]
            for s in sets:
                args += ["--set", s]
            result = run_helm(helm, *args)
            assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
            cache[key] = [d for d in yaml.safe_load_all(result.stdout) if d]
        return cache[key]

    return _render


@pytest.fixture(scope="session")
def default_manifests(render: Render) -> list[Manifest]:
    return render()


@pytest.fixture(scope="session")
def full_manifests(render: Render) -> list[Manifest]:
    return render(FULL_VALUES)


@pytest.fixture(scope="session")
def full_values() -> dict[str, Any]:
    data = yaml.safe_load(FULL_VALUES.read_text())
    assert isinstance(data, dict)
    return data


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in of_kind(manifests, kind) if name is None or m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[m['metadata']['name'] for m in found]}"
    return found[0]
