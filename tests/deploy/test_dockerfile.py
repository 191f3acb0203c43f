"""The Dockerfile, checked without a container engine: hadolint, its structure, the build context it
copies (.dockerignore), the package build its first stage does, and its entrypoint and healthcheck
run for real from the virtualenv."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from tests.deploy.conftest import CHART, ROOT, tool

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
VENV_BIN = Path(sys.executable).parent


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions with line continuations joined and comments dropped."""
    out: list[Instruction] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
        current = ""
    assert not current, "dangling line continuation"
    return out


def parse() -> tuple[list[Instruction], list[Stage]]:
    instructions = parse_instructions(DOCKERFILE.read_text())
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", ins.args, flags=re.I)
            assert m, ins.args
            stages.append(Stage(base=m.group(1), name=m.group(2) or str(len(stages))))
        elif stages:
            stages[-1].instructions.append(ins)
        else:
            global_args.append(ins)
    return global_args, stages


def flags_and_paths(args: str) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(args)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, words


def exec_form(ins: Instruction) -> list[str]:
    value = json.loads(ins.args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), ins.args
    return value


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage.all("ENV"):
        for word in shlex.split(ins.args):
            key, _, value = word.partition("=")
            env[key] = value
    return env


# --------------------------------------------------------------------------- .dockerignore


def _translate(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regular expression."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        patterns.append((negate, _translate(line.lstrip("!").strip("/"))))
    return patterns


def ignored(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negate, regex in patterns:
        if any(regex.fullmatch(c) for c in candidates):
            result = not negate
    return result


def copied_sources(stages: list[Stage]) -> list[str]:
    sources = []
    for stage in stages:
        for ins in stage.all("COPY") + stage.all("ADD"):
            flags, paths = flags_and_paths(ins.args)
            if "from" in flags:
                continue
            sources += paths[:-1]
    return sources


def context_files(source: str) -> Iterator[Path]:
    path = ROOT / source
    if path.is_file():
        yield path
        return
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if not name.endswith((".pyc", ".pyo")):
                yield Path(dirpath) / name


# --------------------------------------------------------------------------- tests


def test_hadolint() -> None:
    hadolint = tool("hadolint")
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stages() -> None:
    global_args, stages = parse()
    assert [s.name for s in stages] == ["build", "runtime"]
    base_args = {k: v for i in global_args if i.keyword == "ARG" for k, _, v in [i.args.partition("=")]}
    for stage in stages:
        base = stage.base
        if base.startswith("${"):
            base = base_args[base.strip("${}")]
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-bookworm)?", base), base
    build, runtime = stages
    pip_installs = [i.args for i in build.all("RUN") if "pip install" in i.args]
    assert pip_installs, "the build stage installs the package"
    for args in pip_installs:
        assert "[dev]" not in args and " -e " not in args, "no dev extras, no editable install"
    # The runtime stage installs nothing: it only copies the build stage's virtualenv.
    for ins in runtime.all("RUN"):
        assert not re.search(r"pip|apt-get|apk|gcc|build-essential|make", ins.args), ins.args
    copies_from = [flags_and_paths(i.args)[0].get("from") for i in runtime.all("COPY")]
    assert "build" in copies_from


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    _, stages = parse()
    patterns = dockerignore_patterns()
    sources = copied_sources(stages)
    assert {"pyproject.toml", "README.md", "bot", "commands", "playbooks"} <= set(sources)
    assert "sandbox" not in sources, "the development fakes stay out of the production image"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
        for path in context_files(source):
            relative = path.relative_to(ROOT).as_posix()
            assert not ignored(relative, patterns), f"{relative} is excluded by .dockerignore"
    # What stays out of the context.
    for junk in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "bot/__pycache__/x.pyc",
        "sandbox/runner.py",
        ".tools/bin/helm",
    ):
        assert ignored(junk, patterns), junk


def test_runtime_user_entrypoint_and_environment() -> None:
    _, stages = parse()
    runtime = stages[-1]
    (user,) = runtime.all("USER")
    assert user.args.split(":")[0] == "10001"
    keywords = [i.keyword for i in runtime.instructions]
    assert "RUN" not in keywords[keywords.index("USER") :], "nothing runs as root after USER"
    (entrypoint,) = runtime.all("ENTRYPOINT")
    (cmd,) = runtime.all("CMD")
    assert exec_form(entrypoint) + exec_form(cmd) == ["incidentbot", "run"]
    env = env_of(runtime)
    assert env["MPLCONFIGDIR"].startswith("/tmp/")
    assert env["HOME"] == "/tmp"
    assert env["PATH"].startswith("/opt/venv/bin:")
    playbook_copies = [flags_and_paths(i.args)[1] for i in runtime.all("COPY") if "playbooks" in i.args]
    assert playbook_copies == [["playbooks", env["PLAYBOOKS_DIR"]]]
    (expose,) = runtime.all("EXPOSE")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(expose.args) == int(env["HTTP_PORT"]) == values["containerPort"]
    # The chart runs the image as the user it was built for.
    assert values["securityContext"]["runAsUser"] == values["podSecurityContext"]["runAsUser"] == 10001


# Set by the base image; every other variable must be declared in the stage that uses it (a global
# ARG is not visible inside a stage unless the stage declares it again).
BASE_IMAGE_ENV = {"PATH"}
BUILD_TIME_KEYWORDS = {"LABEL", "ENV", "COPY", "ADD", "WORKDIR", "USER", "EXPOSE"}


def test_variables_are_declared_in_their_stage() -> None:
    _, stages = parse()
    for stage in stages:
        declared = set(BASE_IMAGE_ENV)
        for ins in stage.instructions:
            if ins.keyword in BUILD_TIME_KEYWORDS:
                used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", ins.args))
                assert used <= declared, (
                    f"stage {stage.name}: {ins.keyword} uses undeclared {used - declared}"
                )
            if ins.keyword == "ARG":
                declared.add(ins.args.partition("=")[0])
            if ins.keyword == "ENV":
                declared |= set(env_of(Stage(stage.base, stage.name, [ins])))


def test_oci_labels() -> None:
    _, stages = parse()
    labels: dict[str, str] = {}
    for ins in stages[-1].all("LABEL"):
        for word in shlex.split(ins.args):
            key, _, value = word.partition("=")
            labels[key] = value
    for key in ("title", "description", "version", "revision", "created", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_healthcheck_runs_with_python_only() -> None:
    _, stages = parse()
    (healthcheck,) = stages[-1].all("HEALTHCHECK")
    options, _, command = healthcheck.args.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[0] == "python"
    assert "curl" not in command and "wget" not in command
    assert "/healthz" in command

    class Handler(_Health):
        pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {"PATH": os.environ.get("PATH", ""), "HTTP_PORT": str(server.server_address[1])}

        def check() -> int:
            return subprocess.run(
                [sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30
            ).returncode

        assert check() == 0
        Handler.status = 503
        assert check() != 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert (
        subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30).returncode != 0
    )


def test_entrypoint_help() -> None:
    result = subprocess.run(
        [str(VENV_BIN / "incidentbot"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "run" in result.stdout and "migrate" in result.stdout


def test_entrypoint_without_configuration_fails_in_one_line(tmp_path: Path) -> None:
    # The image's environment, minus every setting the operator must provide.
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MPLCONFIGDIR": str(tmp_path / "matplotlib"),
        "PLAYBOOKS_DIR": str(ROOT / "playbooks"),
        "HTTP_PORT": "8080",
    }
    result = subprocess.run(
        [str(VENV_BIN / "incidentbot"), "run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    assert "SLACK_BOT_TOKEN" in lines[0]


def test_bundled_playbooks_validate_in_the_image_layout(tmp_path: Path) -> None:
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MPLCONFIGDIR": str(tmp_path / "matplotlib"),
        "PLAYBOOKS_DIR": str(ROOT / "playbooks"),
    }
    result = subprocess.run(
        [str(VENV_BIN / "incidentbot"), "playbooks", "validate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_stage_package_from_the_build_context(tmp_path: Path) -> None:
    """What the build stage's `pip install .` gets: a wheel built from only the copied context."""
    _, stages = parse()
    patterns = dockerignore_patterns()
    context = tmp_path / "context"
    for source in copied_sources(stages[:1]):
        for path in context_files(source):
            relative = path.relative_to(ROOT)
            if not ignored(relative.as_posix(), patterns):
                (context / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, context / relative)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("incidentbot-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "incidentbot = bot.__main__:main" in entry_points
    migrations = sorted(p.name for p in (ROOT / "bot" / "store" / "migrations").glob("*.sql"))
    assert migrations and all(f"bot/store/migrations/{m}" in names for m in migrations)
    for package in ("bot/__main__.py", "commands/__init__.py"):
        assert package in names
    assert not any(n.startswith("sandbox/") for n in names), "no sandbox in the image's package"
    _sandbox_command_says_it_is_not_installed(wheel, tmp_path)
    # Playbooks are not package data: the image copies them and sets PLAYBOOKS_DIR.
    assert not any(n.startswith("playbooks/") for n in names)


def _sandbox_command_says_it_is_not_installed(wheel: Path, tmp_path: Path) -> None:
    """The image's package, installed on its own (the wheel unpacked into a fresh virtualenv
    whose dependencies come from ours, without our editable checkout): `incidentbot sandbox`
    answers in one clear line. Positive control: the checkout's own install has the sandbox."""
    venv = tmp_path / "image-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    (site,) = venv.glob("lib/python3*/site-packages")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    ours = next(p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir())
    (site / "dependencies.pth").write_text(f"{ours}\n")  # a plain path: its .pth files are not run
    python = venv / "bin" / "python"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    result = subprocess.run(
        [str(python), "-m", "bot", "sandbox"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, result.stdout + result.stderr
    assert lines == [
        "incidentbot: the sandbox is not part of this installation; run `make sandbox` in a checkout"
        " of the repository"
    ]
    found = subprocess.run(
        [sys.executable, "-c", "import sandbox.runner"], cwd=tmp_path, capture_output=True, timeout=60
    )
    assert found.returncode == 0, found.stderr
