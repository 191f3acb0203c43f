"""Build and run the production image without a container engine.

`buildah` (root, `--isolation chroot`, `vfs` storage) builds the real Dockerfile; its base is a
Debian bookworm root filesystem made by `debootstrap` with Python 3.11, passed as the
Dockerfile's `PYTHON_IMAGE` build argument. The base is a tarball cached under
`.cache/image-base/`, named by a hash of everything that goes into it, so only the first run on
a machine pays for debootstrap. Each build gets a private buildah store (`--root`/`--runroot`),
removed afterwards: the host's container storage is never touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
BASE_CACHE = CACHE / "image-base"
BUILD_CACHE = CACHE / "image-build"

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What `python:3.11-slim-bookworm` provides that the Dockerfile relies on: `python` (Debian's
# python-is-python3), `python -m venv` with pip (python3-venv), and groupadd/useradd (passwd, in
# minbase).
BASE_PACKAGES = ("python3.11", "python3-venv", "python-is-python3")
# Left out of the base as the slim images leave them out: package caches, lists and manuals.
BASE_STRIP = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
)
# Bumped whenever the way the base is made changes in a way the inputs above do not show.
BASE_RECIPE = 1
BASE_TAG = "localhost/incidentbot-base"

# The tool each step needs and the Debian package that provides it.
TOOLS = {"buildah": "buildah", "debootstrap": "debootstrap", "tar": "tar"}


class ImageError(Exception):
    """A step of building or running the image failed; the message says which and why."""


def missing_tools() -> list[str]:
    """One line per missing prerequisite, each naming what to install."""
    problems = [
        f"`{tool}` is missing: apt-get install -y {package} (or `bash scripts/provision.sh`)"
        for tool, package in TOOLS.items()
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).is_file()
    ]
    if os.geteuid() != 0:
        problems.append("building the image needs root (debootstrap, buildah with --isolation chroot)")
    return problems


def tool_path(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive apt already uses here (one-line or deb822 sources), for the suite."""
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for line in text.splitlines():
            # `deb [options] URI suite components`; the options do not matter here.
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, flags=re.M))
            if SUITE in fields.get("Suites", "").split() and "deb" in fields.get("Types", "").split():
                return str(fields["URIs"].split()[0])
    return DEFAULT_MIRROR


def base_key(mirror: str) -> str:
    recipe = {
        "suite": SUITE,
        "variant": "minbase",
        "packages": BASE_PACKAGES,
        "strip": BASE_STRIP,
        "mirror": mirror,
        "recipe": BASE_RECIPE,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def run(argv: Sequence[str], *, timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-4000:]
        raise ImageError(f"{what} failed (exit {result.returncode}):\n{output}")
    return result


def base_tarball(mirror: str) -> Path:
    """The cached base root filesystem; made with debootstrap when absent."""
    tarball = BASE_CACHE / f"{SUITE}-{base_key(mirror)}.tar"
    if tarball.is_file():
        return tarball
    BASE_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BASE_CACHE, prefix="making-") as work:
        rootfs = Path(work) / "rootfs"
        run(
            [
                tool_path("debootstrap"),
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                SUITE,
                str(rootfs),
                mirror,
            ],
            timeout=900,
            what="debootstrap",
        )
        for relative in BASE_STRIP:
            for entry in (rootfs / relative).glob("*"):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        partial = Path(work) / "base.tar"
        run(
            ["tar", "--numeric-owner", "--sort=name", "-C", str(rootfs), "-cf", str(partial), "."],
            timeout=300,
            what="tar of the base",
        )
        # Renamed into place only when complete, so an interrupted run never leaves a bad cache.
        partial.rename(tarball)
    return tarball


def host_pip_settings() -> dict[str, str]:
    """The certificate bundle and index the host's pip uses (environment over files)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        m = re.fullmatch(r"(:env:|global)\.(cert|index-url)='(.*)'", line.strip())
        if m and (m.group(1) == ":env:" or m.group(2) not in found):
            found[m.group(2)] = m.group(3)
    return found


@dataclass(frozen=True)
class Buildah:
    """buildah with a private store; every call is checked and bounded."""

    store: Path

    def prefix(self) -> list[str]:
        return [
            tool_path("buildah"),
            "--root",
            str(self.store / "root"),
            "--runroot",
            str(self.store / "runroot"),
            "--storage-driver",
            "vfs",
        ]

    def __call__(self, *args: str, timeout: float = 300, what: str = "") -> str:
        return run([*self.prefix(), *args], timeout=timeout, what=what or f"buildah {args[0]}").stdout

    def run_argv(self, container: str, argv: Sequence[str], env: dict[str, str]) -> list[str]:
        """The command line that runs argv in the container, as the user its image names."""
        flags = [f"--env={k}={v}" for k, v in env.items()]
        return [*self.prefix(), "run", "--isolation", "chroot", *flags, container, "--", *argv]

    def import_base(self, tarball: Path) -> str:
        """The tarball as a one-layer image (FROM scratch, ADD unpacks it)."""
        context = self.store / "base-context"
        context.mkdir(parents=True)
        # A hard link when the store is on the cache's file system: the tarball is not copied.
        if tarball.stat().st_dev == context.stat().st_dev:
            os.link(tarball, context / "rootfs.tar")
        else:
            shutil.copy(tarball, context / "rootfs.tar")
        (context / "Containerfile").write_text('FROM scratch\nADD rootfs.tar /\nCMD ["python3"]\n')
        tag = f"{BASE_TAG}:{tarball.stem}"
        self("bud", "--isolation", "chroot", "-t", tag, "-f", str(context / "Containerfile"), str(context))
        return tag

    def build(self, base: str, tag: str, pip: dict[str, str]) -> str:
        """`buildah bud` of the repository's Dockerfile on the given base. The host's pip
        certificate bundle (a TLS-inspecting proxy's CA, on some machines) and index are mounted
        into the build's RUN steps only: they never become part of an image layer."""
        mounts: list[str] = []
        lines = ["[global]"]
        if "cert" in pip:
            mounts.append(f"--volume={pip['cert']}:/etc/ssl/certs/ca-certificates.crt:ro")
            lines.append("cert = /etc/ssl/certs/ca-certificates.crt")
        if "index-url" in pip:
            lines.append(f"index-url = {pip['index-url']}")
        conf = self.store / "pip.conf"
        conf.write_text("\n".join(lines) + "\n")
        mounts.append(f"--volume={conf}:/etc/pip.conf:ro")
        self(
            "bud",
            "--isolation",
            "chroot",
            *mounts,
            "--build-arg",
            f"PYTHON_IMAGE={base}",
            "-t",
            tag,
            "-f",
            str(ROOT / "Dockerfile"),
            str(ROOT),
            timeout=1200,
            what="buildah bud of the Dockerfile",
        )
        return tag

    def inspect(self, image: str) -> dict[str, Any]:
        data = json.loads(self("inspect", "--type", "image", image))
        assert isinstance(data, dict)
        return data

    def image_config(self, image: str) -> dict[str, Any]:
        config = self.inspect(image)["OCIv1"]["config"]
        assert isinstance(config, dict)
        return config

    def image_size(self, image: str) -> int:
        """Bytes of the image's layers as stored (uncompressed tar streams)."""
        manifest = json.loads(self.inspect(image)["Manifest"])
        return sum(int(layer["size"]) for layer in manifest["layers"])


def new_store() -> Path:
    BUILD_CACHE.mkdir(parents=True, exist_ok=True)
    store = BUILD_CACHE / uuid.uuid4().hex[:12]
    store.mkdir()
    return store


def remove_store(buildah: Buildah) -> None:
    """Containers unmounted and removed, images removed, then the store's directory."""
    for args in (("umount", "--all"), ("rm", "--all"), ("rmi", "--all", "--force")):
        buildah(*args)
    shutil.rmtree(buildah.store)
