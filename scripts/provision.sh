#!/usr/bin/env bash
# Install the service binaries the tests and the sandbox run as plain processes:
# PostgreSQL 15, Redis, Prometheus, Alertmanager (+ unzip), and Debian's Chromium for the web
# view's end-to-end tests (Playwright drives /usr/bin/chromium; it never downloads a browser).
# Idempotent: installs only what is missing, then stops and disables the system services those
# packages auto-start, so they do not hold the default ports (tests start their own instances on
# random 127.0.0.1 ports).
# Usage: scripts/provision.sh [--dry-run]
set -euo pipefail

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
    dry_run=1
fi

log() { printf 'provision: %s\n' "$*"; }

sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo_cmd=(sudo)
    else
        log "not root and sudo is missing: cannot install packages" >&2
        exit 1
    fi
fi

have_postgres() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        if [[ -x "$d/initdb" && -x "$d/postgres" && -x "$d/psql" ]]; then
            return 0
        fi
    done
    return 1
}

have_cmd() {
    command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/bin/$1" || -x "/usr/sbin/$1" ]]
}

missing=()
have_postgres || missing+=(postgresql)
have_cmd redis-server || missing+=(redis-server)
have_cmd prometheus || missing+=(prometheus)
have_cmd prometheus-alertmanager || missing+=(prometheus-alertmanager)
have_cmd unzip || missing+=(unzip)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
# A real OpenSSH server for the SSH host-action tests (started per test session, never as a service).
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
# Emoji in the sandbox web view's screenshots (status marks, severities).
[[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]] || missing+=(fonts-noto-color-emoji)
# Debian splits venv support out of python3; the Makefile creates .venv with it.
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3-venv)
# tests/deploy/test_image.py builds the Dockerfile without a Docker engine: buildah builds it
# on a Debian base that debootstrap makes.
# `incidentbot sudoers` output is checked by sudo's own parser (visudo -c) in the tests.
[[ -x /usr/sbin/visudo ]] || missing+=(sudo)
have_cmd buildah || missing+=(buildah)
have_cmd debootstrap || missing+=(debootstrap)

if [[ ${#missing[@]} -eq 0 ]]; then
    log "all present: postgresql redis-server prometheus prometheus-alertmanager unzip chromium openssh-server sudo buildah debootstrap"
    exit 0
fi

log "missing packages: ${missing[*]}"
if [[ $dry_run -eq 1 ]]; then
    log "dry run: would run apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
log "running apt-get update"
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
log "installing: ${missing[*]}"
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"

# Stop and disable the daemons the freshly installed packages may have started.
for pkg in "${missing[@]}"; do
    service=$pkg
    case "$pkg" in
        postgresql | redis-server | prometheus | prometheus-alertmanager) ;;
        openssh-server) service=ssh ;;
        *) continue ;;
    esac
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        "${sudo_cmd[@]}" systemctl disable --now "$service" >/dev/null 2>&1 || true
    else
        if command -v service >/dev/null 2>&1; then
            "${sudo_cmd[@]}" service "$service" stop >/dev/null 2>&1 || true
        fi
        if command -v update-rc.d >/dev/null 2>&1; then
            "${sudo_cmd[@]}" update-rc.d "$service" disable >/dev/null 2>&1 || true
        fi
    fi
    log "stopped and disabled system service $service (if it was running)"
done

have_postgres || { log "postgresql binaries still missing after install" >&2; exit 1; }
for b in redis-server prometheus prometheus-alertmanager unzip buildah debootstrap; do
    have_cmd "$b" || { log "$b still missing after install" >&2; exit 1; }
done
[[ -x /usr/bin/chromium ]] || { log "/usr/bin/chromium still missing after install" >&2; exit 1; }
[[ -x /usr/sbin/sshd ]] || { log "/usr/sbin/sshd still missing after install" >&2; exit 1; }
log "done"
