#!/usr/bin/env bash
# A non-root login account for the SSH tests, as hosts give the bot (a dedicated account):
# OpenSSH signals a session's command only under privilege separation, which a root login does
# not have, so killing a timed-out command is tested as this account. It has no password (`*`),
# no home and no sudo; only the test sshd's own authorized_keys lets anyone in.
# Idempotent. Usage: scripts/test-account.sh [--dry-run]
set -euo pipefail

account=incidentbot-ssh-test
log() { printf 'test-account: %s\n' "$*"; }

if id "$account" >/dev/null 2>&1; then
    log "$account exists"
    exit 0
fi
if [[ "${1:-}" == "--dry-run" ]]; then
    log "dry run: would add the system account $account"
    exit 0
fi
sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { log "not root and sudo is missing: cannot add $account" >&2; exit 1; }
    sudo_cmd=(sudo)
fi
"${sudo_cmd[@]}" useradd --system --no-create-home --home-dir /nonexistent --shell /bin/sh "$account"
# An account with a locked password ("!") is refused by sshd without PAM; "*" allows keys only.
"${sudo_cmd[@]}" usermod -p '*' "$account"
log "added the system account $account"
