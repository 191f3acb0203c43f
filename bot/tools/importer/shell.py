"""Shell in runbooks: which lines are commands, the simple commands of a snippet, and the
language of an unlabelled code block."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.tools.importer.text import word_set

_STRONG_COMMANDS = word_set(
    """
    kubectl helm docker docker-compose podman psql pg_dump pg_restore pg_ctl pg_basebackup
    pg_isready redis-cli mysql mongosh mongo curl wget aws gcloud az systemctl journalctl grep egrep
    tail cat ls cd echo export sudo ps pgrep htop df du ssh scp rsync git npm npx yarn pnpm pip
    python python3 node jq yq sed awk xargs rabbitmqadmin rabbitmqctl openssl dig nslookup netstat
    iostat vmstat mpstat iftop uptime terraform ansible ansible-playbook argocd flux kustomize vim
    tar gzip gunzip zcat rm cp mv mkdir chmod chown pm2 celery alembic kafka-consumer-groups
    kafka-consumer-groups.sh kafka-topics kafka-topics.sh etcdctl crictl istioctl linkerd stern
    velero vault consul nomad printenv lsof strace dmesg iptables crontab nohup bash sh zsh
    kill pkill sar traceroute telnet nc
    """
)
# Words that are commands only when followed by something shell-like ("find /var -name x"),
# since they also start ordinary sentences ("find the pod", "top consumers").
_WEAK_COMMANDS = word_set(
    """
    top free find watch make source set unset for while if then else fi do done until case esac time
    date env open read test true false sleep tee cut tr sort uniq wc head less kill service ping ip
    mount exit return
    """
)
SHELL_LANGS = word_set("bash sh shell shellsession shell-session zsh console text terminal cmd") | {""}
SUBSTITUTED = "__SUBST__"


def _first_word(line: str) -> str:
    parts = line.split()
    return parts[0] if parts else ""


def is_command(line: str) -> bool:
    """A shell command line (first word is a known command)."""
    s = re.sub(r"^\$\s+", "", line.strip())
    first = _first_word(s)
    if first in _STRONG_COMMANDS:
        return True
    return first in _WEAK_COMMANDS and re.search(r"[-$=|;\"'/]", s[len(first) :]) is not None


def mask_substitutions(command: str) -> str:
    """``$(...)`` and backquoted substitutions replaced by a marker no name may contain."""
    return re.sub(r"\$\([^()]*\)|`[^`]*`", SUBSTITUTED, command)


def shell_commands(code: str) -> list[str]:
    """Simple commands of a shell snippet: continuations joined, comments dropped, split on
    ``&&``, ``;`` and pipes (the first command of a pipeline is kept)."""
    text = re.sub(r"\\\r?\n\s*", " ", code)
    commands: list[str] = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        s = re.sub(r"^\$\s+", "", s)
        s = re.sub(r"\s+#\s.*$", "", s)
        s = mask_substitutions(s)
        for part in re.split(r"\s*(?:&&|\|\||;)\s*", s):
            first = re.split(r"(?<!\\)\s\|\s|\s\|$", part)[0].strip()
            if first:
                commands.append(first)
    return commands


def guess_language(code: Sequence[str]) -> str:
    """yaml, json, ini or bash for the lines of an unlabelled code block."""
    text = "\n".join(code)
    first = next((x.strip() for x in code if x.strip()), "")
    if re.search(r"\.ya?ml\b", first) or (
        re.search(r"^\s*-?\s*[a-z_][\w.-]*:(\s|$)", text, re.MULTILINE)
        and not any(is_command(x) for x in code if not x.strip().startswith("#"))
    ):
        return "yaml"
    if first.startswith("{"):
        return "json"
    if re.search(r"\.conf\b", first):
        return "ini"
    return "bash"
