"""Turn a markdown runbook into draft playbooks (``incidentbot playbooks import``).

`import_playbooks` reads a runbook and returns the draft playbooks as plain data;
`import_runbook` returns them as YAML with a header saying what to review. The result
always validates (`bot.core.playbooks.validate_dir` next to the bundled ``policy.yaml``):
anything the importer cannot turn into valid fields stays as step text.

What becomes what
    - Alerts: headings naming an alert (``### HighErrorRate``, ``## Alert: X``,
      ``#### 1. ServiceDown (P0)``), ``**Alert**: Name`` / ``Alert name: Name`` lines (or
      rows of a two-column table), front matter ``alert:``, and alerting-rule YAML (``- alert: Name`` with ``expr``,
      ``for``, ``labels.severity``, ``annotations``). Each alert gets one playbook matched
      on its name; rule YAML also gives the severity and a graph of ``expr`` (its threshold
      split off). Procedure sections that name no alert but whose title resembles an
      alert's name (``Runbook 1: Database Connection Pool Exhaustion`` for
      ``DatabaseConnectionPoolExhausted``) are attached to that alert.
    - No alert anywhere: every procedure section (symptoms/diagnosis/resolution parts, or
      numbered steps with commands) becomes an ``on_demand`` playbook.
    - Steps: numbered (or command-carrying bulleted) list items, sub-headings and bold
      labels such as "Diagnosis", "Mitigation", "Verification". The text keeps its
      markdown; fenced code stays as the step's ``code`` with its language. A code block
      made of ``# 1. ...`` / ``# 2. ...`` chunks becomes one step per chunk.
    - Graphs: ``promql`` blocks and PromQL-looking lines or inline code (selectors,
      ``rate(``, ``histogram_quantile(``, ``sum by`` ...); a trailing ``> number`` becomes
      the threshold, the unit is guessed from the metric names.
    - Remediations: recognised ``kubectl`` commands (rollout restart/undo, scale, set
      env, set resources, delete pod, cordon, uncordon, drain, create job --from=cronjob)
      become typed proposals; ``-n``/``--namespace`` gives the namespace (default
      ``${namespace:-default}``) and shell placeholders (``$NAMESPACE``, ``${DEPLOYMENT}``,
      ``<pod-name>``, ``POD_NAME``) become label templates (``$namespace``,
      ``$deployment``, ``$pod``). ``kubectl exec`` and everything unrecognised stay text;
      read-only ``kubectl`` (logs, rollout history, get pods/events, describe pod) also
      becomes read-only diagnostics.

Plain-text runbooks (no fences and no ``##`` headings) are first converted to markdown:
short stand-alone lines become headings, ``Label:`` lines become labels and runs of
command-looking lines become code blocks.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bot.config.playbooks import DEFAULT_PLAYBOOKS_DIR
from bot.core.actions import ActionName
from bot.core.incident import Severity
from bot.core.playbooks import (
    Diagnostic,
    Graph,
    Link,
    Playbook,
    Remediation,
    Step,
    parse_duration,
    split_threshold,
)
from bot.core.policy import Policy, map_severity
from bot.core.templating import Context, TemplateError, check_template, escape_template, sample_label_sets

__all__ = ["import_playbooks", "import_runbook", "kubectl_proposal"]

MAX_STEPS = 40
MAX_GRAPHS = 12
MAX_REMEDIATIONS = 15
MAX_DIAGNOSTICS = 10
MAX_LINKS = 10
MAX_NESTING = 30


# --------------------------------------------------------------------------- small helpers


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _phrases(text: str) -> frozenset[str]:
    return frozenset(" ".join(p.split()) for p in text.split(",") if p.strip())


_WORD = re.compile(r"[A-Za-z0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_:.-]*")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _dedent(line: str, amount: int) -> str:
    return line[min(amount, _indent(line)) :]


def _dedent_all(lines: Sequence[str]) -> list[str]:
    widths = [_indent(line) for line in lines if line.strip()]
    cut = min(widths, default=0)
    return [line[cut:] if line.strip() else "" for line in lines]


def _strip_emphasis(text: str) -> str:
    text = _MD_LINK.sub(r"\1", text)
    text = re.sub(r"\[([^\]\n]+)\]\([^)\n]*\)", r"\1", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    return text.replace("**", "").strip()


def _clean_title(text: str) -> str:
    """A heading or label as plain words: emphasis, numbering and a trailing colon removed."""
    text = _strip_emphasis(text)
    text = re.sub(r"^(?:\d+(?:\.\d+)*[.)]?|[A-Z][.)])\s+", "", text)
    text = re.sub(r"^(?:step\s+\d+\s*[:.)-]\s*)", "", text, flags=re.IGNORECASE)
    return text.strip().rstrip(":").strip()


def _camel_words(name: str) -> list[str]:
    return _CAMEL.findall(name)


def _slug(text: str, limit: int = 63) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if len(words) > limit:
        cut = words[:limit]
        words = cut.rsplit("-", 1)[0] if "-" in cut[limit // 2 :] else cut
    return words.strip("-")


_COMPOUNDS = re.compile(
    r"GitHub|GitLab|PostgreSQL|MySQL|MongoDB|RabbitMQ|PagerDuty|OpenSearch|ElasticSearch|OAuth|GraphQL|"
    r"JavaScript|TypeScript|DevOps|FastAPI|NodeJS|CoreDNS|OpenAI|DynamoDB|BigQuery|ClickHouse|CockroachDB"
)


def _kebab(alertname: str) -> str:
    name = _COMPOUNDS.sub(lambda m: m.group(0).capitalize(), alertname)
    return "-".join(w.lower() for w in _camel_words(name)) or _slug(alertname)


def _fit(text: str, limit: int) -> str:
    """`text` as a template (``$`` doubled) of at most `limit` characters."""
    text = "\n".join(line.rstrip() for line in text.strip().splitlines())
    while True:
        template = escape_template(text)
        if len(template) <= limit:
            return template
        over = len(template) - limit
        text = text[: max(0, len(text) - over - 1)].rstrip() + "…"


def _shorten(text: str, limit: int) -> str:
    """Cut at a word boundary, never inside an inline code span."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 2]
    cut = cut.rsplit(" ", 1)[0] if " " in cut[limit // 3 :] else cut
    if cut.count("`") % 2:
        cut = cut[: cut.rfind("`")]
    return cut.rstrip(" ,;:-(") + " …"


def _fit_title(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip() or "Step"
    if len(escape_template(text)) > 150:
        text = _shorten(text, 146)
    return _fit(text, 150)


def _without_commands(title: str) -> str:
    """A step title without the inline shell commands it quotes ("Scale X via `kubectl ...`")."""

    def drop(m: re.Match[str]) -> str:
        return "" if _is_command(m.group(2)) else m.group(0)

    title = re.sub(r"\s+", " ", title).strip()
    short = re.sub(r"\s*(?:\b(?:via|with|using|by running|by|run)\s+)?\(?(`+)(.+?)\1\)?", drop, title)
    short = re.sub(r"\s+", " ", short).strip(" ,;:-")
    return short if len(short) >= 8 else title


def _stem(word: str) -> str:
    word = word.lower()
    for suffix in ("ations", "ation", "ions", "ion", "ings", "ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


# --------------------------------------------------------------------------- front matter

_FRONT = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)


def _front_matter(text: str) -> tuple[dict[str, Any], str]:
    m = _FRONT.match(text)
    if m is None:
        return {}, text
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return {}, text
    if not isinstance(data, dict):
        return {}, text
    return {str(k).lower(): v for k, v in data.items()}, text[m.end() :]


def _fm_str(front: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = front.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def _fm_alerts(front: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for key in ("alert", "alerts", "alertname", "alert_name", "alertnames"):
        value = front.get(key)
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, str):
                parts = [p.strip().strip("`") for p in item.split(",")]
                names += [p for p in parts if _IDENT.fullmatch(p)]
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------- shell / PromQL recognition

_STRONG_COMMANDS = _words(
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
_WEAK_COMMANDS = _words(
    """
    top free find watch make source set unset for while if then else fi do done until case esac time
    date env open read test true false sleep tee cut tr sort uniq wc head less kill service ping ip
    mount exit return
    """
)
_SHELL_LANGS = _words("bash sh shell shellsession shell-session zsh console text terminal cmd") | {""}
_PROMQL_LANGS = frozenset({"promql", "prometheus", "prom", "metricsql"})
_PROMQL_FUNC = re.compile(
    r"\b(?:rate|irate|increase|delta|idelta|deriv|histogram_quantile|sum|avg|min|max|count|topk|bottomk|"
    r"quantile|stddev|absent|absent_over_time|avg_over_time|max_over_time|min_over_time|sum_over_time|"
    r"count_over_time|quantile_over_time|last_over_time|clamp_max|clamp_min|clamp|predict_linear|"
    r"label_replace|label_join|changes|resets)\s*(?:\(|by\b|without\b)"
)
_SELECTOR = re.compile(r"(?<![$\w])[A-Za-z_:][A-Za-z0-9_:]*\{[^{}\n]*\}")
_PROSE = re.compile(r"(?:\b[A-Za-z]{2,}\b[ ,]+){4}")


def _first_word(line: str) -> str:
    parts = line.split()
    return parts[0] if parts else ""


def _is_command(line: str) -> bool:
    """A shell command line (first word is a known command)."""
    s = re.sub(r"^\$\s+", "", line.strip())
    first = _first_word(s)
    if first in _STRONG_COMMANDS:
        return True
    return first in _WEAK_COMMANDS and re.search(r"[-$=|;\"'/]", s[len(first) :]) is not None


def _promql_like(text: str) -> bool:
    s = text.strip()
    if not s or len(s) > 4000 or "://" in s:
        return False
    if _is_command(s) or s.startswith(("-", "$", "/", "#", "{{")):
        return False
    if re.search(r"\bSELECT\b|\bFROM\b|count\(\*\)|\|=|\|~|\|\s*(?:json|logfmt|line_format|pattern)\b", s):
        return False
    return _PROMQL_FUNC.search(s) is not None or _SELECTOR.search(s) is not None


def _bare_promql(line: str) -> bool:
    """A text line that is a PromQL expression and not a sentence."""
    s = re.sub(r"^(?:[-*+]|\d+[.)])\s+", "", line.strip())
    return _promql_like(s) and "`" not in s and _PROSE.search(re.sub(r"\([^()]*\)", "", s)) is None


# --------------------------------------------------------------------------- markdown blocks


@dataclass(eq=False)
class _Block:
    kind: str  # heading | para | code | list | table | quote
    raw: list[str]
    text: str = ""
    level: int = 0
    lang: str = ""
    ordered: bool = False
    items: list[_Item] = field(default_factory=list)

    def markdown(self) -> str:
        if self.kind == "code":
            return f"```{self.lang}\n{self.text}\n```"
        return "\n".join(_dedent_all(self.raw)).strip("\n")


@dataclass(eq=False)
class _Item:
    blocks: list[_Block]
    ordered: bool


_FENCE_OPEN = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*?)[ \t]*$")
_ATX = re.compile(r"^[ ]{0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_HR = re.compile(r"^[ ]{0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_LIST = re.compile(r"^(?P<indent>[ ]*)(?P<marker>[-*+•]|\d{1,9}[.)])(?P<space>[ \t]+|$)(?P<rest>.*)$")
_SETEXT = re.compile(r"^[ ]{0,3}(=+|-+)[ \t]*$")


def _interrupts(line: str) -> bool:
    s = line.strip()
    return bool(
        _FENCE_OPEN.match(line)
        or (_ATX.match(line) and s.startswith("#"))
        or _HR.match(line)
        or s.startswith(("|", ">"))
        or _LIST.match(line)
    )


def _parse_blocks(lines: list[str], depth: int = 0) -> list[_Block]:
    blocks: list[_Block] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        ind = _indent(line)
        fence = _FENCE_OPEN.match(line)
        if fence:
            mark = fence["fence"]
            close = re.compile(rf"^[ ]*{re.escape(mark[0])}{{{len(mark)},}}[ \t]*$")
            j = i + 1
            body: list[str] = []
            while j < n and not close.match(lines[j]):
                body.append(_dedent(lines[j], ind))
                j += 1
            info = fence["info"].strip().split()
            blocks.append(
                _Block(
                    "code", lines[i : j + 1], text="\n".join(body).strip("\n"), lang=info[0] if info else ""
                )
            )
            i = j + 1
            continue
        if ind >= 4 and not _LIST.match(line):
            j = i
            while j < n and (not lines[j].strip() or _indent(lines[j]) >= 4):
                j += 1
            body = _dedent_all(lines[i:j])
            blocks.append(_Block("code", lines[i:j], text="\n".join(body).strip("\n")))
            i = j
            continue
        atx = _ATX.match(line)
        if atx and line.strip().startswith("#"):
            blocks.append(
                _Block("heading", [line], text=(atx.group(2) or "").strip(), level=len(atx.group(1)))
            )
            i += 1
            continue
        if _HR.match(line):
            i += 1
            continue
        stripped = line.strip()
        if stripped.startswith(("|", ">")):
            j = i
            while j < n and lines[j].strip().startswith(stripped[0]):
                j += 1
            kind = "table" if stripped[0] == "|" else "quote"
            blocks.append(_Block(kind, lines[i:j], text="\n".join(x.strip() for x in lines[i:j])))
            i = j
            continue
        if _LIST.match(line):
            block, i = _parse_list(lines, i, depth)
            blocks.append(block)
            continue
        j = i + 1
        while j < n and lines[j].strip() and not _interrupts(lines[j]):
            j += 1
        if j < n and j == i + 1 and _SETEXT.match(lines[j]):
            level = 1 if lines[j].strip().startswith("=") else 2
            blocks.append(_Block("heading", lines[i : j + 1], text=stripped, level=level))
            i = j + 1
            continue
        para = lines[i:j]
        blocks.append(_Block("para", para, text="\n".join(x.strip() for x in para)))
        i = j
    return blocks


def _parse_list(lines: list[str], start: int, depth: int) -> tuple[_Block, int]:
    first = _LIST.match(lines[start])
    assert first is not None
    base = len(first["indent"])
    items: list[_Item] = []
    i, n = start, len(lines)
    while i < n:
        m = _LIST.match(lines[i])
        if m is None or len(m["indent"]) != base or m["marker"][0].isdigit() != first["marker"][0].isdigit():
            break
        space = len(m["space"]) if m["space"] and len(m["space"]) <= 4 else 1
        content_col = base + len(m["marker"]) + space
        rest = re.sub(r"^\[[ xX]\]\s+", "", m["rest"])
        body = [rest]
        j = i + 1
        while j < n:
            cur = lines[j]
            if not cur.strip():
                k = j
                while k < n and not lines[k].strip():
                    k += 1
                if k < n and _indent(lines[k]) > base:
                    body += [""] * (k - j)
                    j = k
                    continue
                break
            fence = _FENCE_OPEN.match(cur)
            if fence and _indent(cur) > base:
                # a fenced block in the item: keep its lines' relative indentation, whatever it is
                removed = min(content_col, _indent(cur))
                mark = fence["fence"]
                close = re.compile(rf"^[ ]*{re.escape(mark[0])}{{{len(mark)},}}[ \t]*$")
                body.append(cur[removed:])
                j += 1
                while j < n:
                    body.append(_dedent(lines[j], removed))
                    j += 1
                    if close.match(lines[j - 1]):
                        break
                continue
            if _indent(cur) > base:
                body.append(_dedent(cur, content_col))
                j += 1
                continue
            if body[-1].strip() and not _interrupts(cur):
                body.append(cur.strip())
                j += 1
                continue
            break
        marker = m["marker"]
        if depth < MAX_NESTING:
            content = _parse_blocks(body, depth + 1)
        else:  # absurdly deep nesting: the rest is one paragraph
            content = [_Block("para", body, text="\n".join(x.strip() for x in body if x.strip()))]
        items.append(_Item(blocks=content, ordered=marker[0].isdigit()))
        i = j
        k = i
        while k < n and not lines[k].strip():
            k += 1
        nxt = _LIST.match(lines[k]) if k < n else None
        same_kind = nxt is not None and nxt["marker"][0].isdigit() == first["marker"][0].isdigit()
        if nxt is not None and len(nxt["indent"]) == base and same_kind:
            i = k
            continue
        break
    ordered = first["marker"][0].isdigit()
    return _Block("list", lines[start:i], ordered=ordered, items=items), i


# --------------------------------------------------------------------------- plain text to markdown


def _is_markdown(text: str) -> bool:
    """Markdown (else plain text): fences, ``##`` headings, bold, links, inline code, or a
    ``# Title`` first line."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    return bool(
        re.search(r"^[ ]{0,3}(?:```|~~~)", text, re.MULTILINE)
        or re.search(r"^#{2,6}[ \t]+\S", text, re.MULTILINE)
        or re.search(r"\*\*[^*\n]+\*\*", text)
        or _MD_LINK.search(text)
        or re.search(r"`[^`\n]+`", text)
        or (re.match(r"# [A-Z]", first) and not _is_command(first[2:]))
    )


def _plain_code_like(line: str) -> bool:
    s = line.strip()
    if not s:
        return False
    if s.startswith(("#", "{", "}")):
        return True
    if _is_command(s):
        return True
    if re.match(r"^[A-Z][A-Z0-9_]*=\S", s) or re.match(r"^[a-z_][\w.-]*:(\s|$)", s):
        return True
    if re.match(r"^[a-z_][\w.]*\s*=\s*\S", s):
        return True
    return _bare_promql(s)


def _toc_entries(lines: list[str]) -> set[str]:
    for i, line in enumerate(lines):
        if line.strip().lower() in ("table of contents", "contents"):
            entries: set[str] = set()
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            while j < len(lines) and lines[j].strip():
                m = _LIST.match(lines[j])
                if m:
                    entries.add(_clean_title(m["rest"]).lower())
                j += 1
            return entries
    return set()


def _plain_heading(lines: list[str], i: int) -> bool:
    line = lines[i]
    s = line.strip()
    if line[:1] in (" ", "\t") or not (4 <= len(s) <= 80):
        return False
    if i > 0 and lines[i - 1].strip():
        return False
    if i + 1 < len(lines) and lines[i + 1].strip():
        return False
    if not (s[0].isupper() or s[0].isdigit()) or s[-1] in ".,;:-!" or len(s.split()) > 10:
        return False
    return not (_plain_code_like(s) or _LIST.match(line))


def _plain_label(lines: list[str], i: int) -> bool:
    s = lines[i].strip()
    if not s.endswith(":") or not s[0].isupper() or len(s.split()) > 5 or len(s) > 60:
        return False
    before = i == 0 or not lines[i - 1].strip()
    return before and not _plain_code_like(s) and not _LIST.match(lines[i])


def _guess_language(code: Sequence[str]) -> str:
    text = "\n".join(code)
    first = next((x.strip() for x in code if x.strip()), "")
    if re.search(r"\.ya?ml\b", first) or (
        re.search(r"^\s*-?\s*[a-z_][\w.-]*:(\s|$)", text, re.MULTILINE)
        and not any(_is_command(x) for x in code if not x.strip().startswith("#"))
    ):
        return "yaml"
    if first.startswith("{"):
        return "json"
    if re.search(r"\.conf\b", first):
        return "ini"
    return "bash"


def _plain_to_markdown(text: str) -> str:
    lines = [line.rstrip() for line in text.expandtabs(4).splitlines()]
    lines = [re.sub(r"^(\s*)•\s+", r"\1- ", line) for line in lines]
    toc = _toc_entries(lines)
    out: list[str] = []
    seen_title = False
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if not line.strip():
            out.append("")
            i += 1
            continue
        ind = _indent(line)
        if _plain_code_like(line) and not _LIST.match(line):
            j = i
            while j < n:
                cur = lines[j]
                if cur.strip():
                    if j > i and _indent(cur) <= ind and _LIST.match(cur):
                        break
                    if j > i and _indent(cur) < ind and not _plain_code_like(cur):
                        break
                    j += 1
                    continue
                k = j
                while k < n and not lines[k].strip():
                    k += 1
                if k < n and not (_LIST.match(lines[k]) and _indent(lines[k]) <= ind):
                    nxt = lines[k]
                    if _indent(nxt) > ind or (_plain_code_like(nxt) and _indent(nxt) >= ind):
                        j = k
                        continue
                break
            block = lines[i:j]
            pad = " " * ind
            out += [pad + "```" + _guess_language(block), *block, pad + "```"]
            i = j
            continue
        s = line.strip()
        if _plain_heading(lines, i):
            if not seen_title:
                level = 1
                seen_title = True
            elif s.lower() in ("table of contents", "contents") or _clean_title(s).lower() in toc:
                level = 2
            else:
                level = 3 if toc else 2
            out.append("#" * level + " " + s)
        elif _plain_label(lines, i):
            out.append(" " * ind + "**" + s + "**")
        else:
            out.append(line)
        i += 1
    return "\n".join(out)


# --------------------------------------------------------------------------- sections


@dataclass(eq=False)
class _Section:
    title: str
    level: int
    blocks: list[_Block] = field(default_factory=list)
    children: list[_Section] = field(default_factory=list)

    def walk(self) -> Iterator[_Section]:
        yield self
        for child in self.children:
            yield from child.walk()


def _sections(blocks: list[_Block]) -> _Section:
    root = _Section("", 0)
    stack = [root]
    for block in blocks:
        if block.kind == "heading":
            section = _Section(block.text, block.level)
            while len(stack) > 1 and stack[-1].level >= block.level:
                stack.pop()
            stack[-1].children.append(section)
            stack.append(section)
        else:
            stack[-1].blocks.append(block)
    return root


# --------------------------------------------------------------------------- alerting rules


@dataclass
class _Rule:
    name: str
    expr: str
    duration: str
    severity: str
    annotations: dict[str, str]


_RULE_START = re.compile(r"^(?P<indent>[ ]*)(?P<dash>-[ ]+)?alert:[ \t]*(?P<name>\S.*?)[ \t]*$")


def _alert_rules(lines: list[str]) -> list[_Rule]:
    rules: list[_Rule] = []
    n = len(lines)
    for i, line in enumerate(lines):
        m = _RULE_START.match(line)
        if m is None:
            continue
        key_col = len(m["indent"]) + (len(m["dash"]) if m["dash"] else 0)
        body = [" " * key_col + line[key_col:]]
        j = i + 1
        while j < n:
            cur = lines[j]
            if cur.strip():
                if _indent(cur) < key_col or _FENCE_OPEN.match(cur):
                    break
                if _indent(cur) == key_col and re.match(r"\s*(?:alert|record):", cur):
                    break
            body.append(cur)
            j += 1
        try:
            data = yaml.safe_load("\n".join(_dedent_all(body)))
        except yaml.YAMLError:
            data = None
        if not isinstance(data, dict):
            continue
        name = str(data.get("alert", "")).strip().strip("\"'")
        if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_:.-]*", name):
            continue
        labels = data.get("labels") if isinstance(data.get("labels"), dict) else {}
        annotations = data.get("annotations") if isinstance(data.get("annotations"), dict) else {}
        assert isinstance(labels, dict) and isinstance(annotations, dict)
        rules.append(
            _Rule(
                name=name,
                expr=str(data.get("expr", "") or "").strip(),
                duration=str(data.get("for", "") or "").strip(),
                severity=str(labels.get("severity", "") or "").strip(),
                annotations={str(k): str(v) for k, v in annotations.items() if v is not None},
            )
        )
    return rules


def _is_rule_code(block: _Block) -> bool:
    return block.kind == "code" and re.search(r"^\s*-?\s*alert:\s*\S", block.text, re.MULTILINE) is not None


# --------------------------------------------------------------------------- alert names in text

_DENY_CAMEL = _words(
    """
    postgresql postgres mysql mongodb github gitlab rabbitmq pagerduty opsgenie opensearch
    elasticsearch javascript typescript devops fastapi graphql oauth launchdarkly cloudwatch
    elasticache memorystore alertmanager grafana prometheus kubernetes openai openfeature argocd
    redis nodejs linkedin youtube iphone macos ios dynamodb bigquery cloudflare jenkins circleci
    sonarqube statuspage servicenow victoriametrics cockroachdb clickhouse
    """
)
_ALERT_LINE = re.compile(
    r"^(?:alert(?:\s*name)?|alertname|alert\s+rule|prometheus\s+alert|alerts)\s*[:：]\s*(?P<value>.+)$",
    re.IGNORECASE,
)
_SEVERITY_LINE = re.compile(r"^(?:severity|priority|sev)\s*[:：]\s*(?P<value>.+)$", re.IGNORECASE)


def _camel_alert(name: str) -> bool:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or len(name) < 5:
        return False
    if name.lower() in _DENY_CAMEL or not re.search(r"[a-z]", name):
        return False
    if "_" in name:
        return len([p for p in name.split("_") if p]) >= 2
    return len(_camel_words(name)) >= 2 and re.search(r"[A-Z]", name[1:]) is not None


def _names_in(value: str, *, explicit: bool) -> list[str]:
    """Alert names in a heading/line value: one name or a comma/slash separated list."""
    parts = [p.strip().strip("`*_\"'").strip() for p in re.split(r"\s*(?:,|/|\bor\b|\band\b|&)\s*", value)]
    parts = [p for p in parts if p]
    if not parts:
        return []
    ok = all(
        (_camel_alert(p) or (explicit and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_:.-]{2,}", p) is not None))
        for p in parts
    )
    return list(dict.fromkeys(parts)) if ok else []


def _severity_of(value: str) -> Severity | None:
    for word in re.split(r"[\s|,;()/]+", _strip_emphasis(value).replace("`", " ")):
        if not word or word == "-":
            continue
        found = map_severity(word)
        if found is not None:
            return found
    return None


@dataclass
class _AlertInfo:
    names: list[str] = field(default_factory=list)
    severity: Severity | None = None
    expressions: list[str] = field(default_factory=list)
    descriptions: list[str] = field(default_factory=list)


def _heading_alert(title: str) -> _AlertInfo:
    info = _AlertInfo()
    text = _strip_emphasis(title)
    paren = re.search(r"\(([^()]*)\)\s*$", text)
    if paren:
        info.severity = _severity_of(paren.group(1))
        text = text[: paren.start()].strip()
    text = re.sub(r"^(?:\d+(?:\.\d+)*[.)]?)\s+", "", text).strip()
    prefixed = re.match(r"^(?:alert(?:\s*name)?|alertname)\s*[:\-–—]\s*(.+)$", text, re.IGNORECASE)
    if prefixed:
        info.names = _names_in(prefixed.group(1), explicit=True)
    else:
        candidate = text.strip().strip("`").strip()
        if _camel_alert(candidate):
            info.names = [candidate]
    return info


def _text_lines(blocks: Iterable[_Block]) -> Iterator[str]:
    """Every text line of paragraphs and list items (recursively), not code; the rows of
    two-column (key | value) tables as ``key: value``."""
    for block in blocks:
        if block.kind == "para":
            yield from block.text.splitlines()
        elif block.kind == "list":
            for item in block.items:
                yield from _text_lines(item.blocks)
        elif block.kind == "table":
            rows = [[c.strip() for c in row.strip().strip("|").split("|")] for row in block.text.splitlines()]
            header = len(rows) > 1 and all(re.fullmatch(r":?-+:?", c) for c in rows[1])
            for row in rows[2:] if header else rows:
                if len(row) == 2 and row[0] and not re.fullmatch(r":?-+:?", row[0]):
                    yield f"{row[0]}: {row[1]}"


def _meta_line(line: str) -> str:
    s = re.sub(r"^(?:[-*+•]|\d+[.)])\s+", "", line.strip())
    return s.replace("**", "").replace("__", "").strip()


def _line_alerts(blocks: Iterable[_Block]) -> _AlertInfo:
    info = _AlertInfo()
    for raw in _text_lines(blocks):
        for line in re.split(r"\s+\|\s+", _meta_line(raw)):
            m = _ALERT_LINE.match(line.strip())
            if m:
                value = m["value"].strip()
                inner = value[1:-1] if value.startswith("`") and value.endswith("`") else value
                names = _names_in(value, explicit=True) if "`" not in inner else []
                if names:
                    info.names += [x for x in names if x not in info.names]
                elif _promql_like(inner):
                    info.expressions.append(inner.strip())
                    info.descriptions.append(value)
                else:
                    info.descriptions.append(value)
                continue
            s = _SEVERITY_LINE.match(line.strip())
            if s and info.severity is None:
                info.severity = _severity_of(s["value"])
    return info


# --------------------------------------------------------------------------- units: labelled groups of blocks

_KNOWN_LABELS = _words(
    """
    symptoms symptom impact cause causes diagnosis diagnose resolution solution solutions mitigation
    investigation verification verify remediation fix workaround notes note description summary
    overview context action actions escalation prevention recovery rollback triage response
    """
)
_SUMMARY_LABELS = _phrases(
    """
    background, what it means, alert, alert details, impact, description, context, meaning, details,
    purpose, summary, about, overview, symptom, when to use, symptoms
    """
)
_NOTE_LABELS = _phrases(
    """
    notes, note, common causes, root cause, known causes, causes, possible causes, probable causes,
    root causes, tips
    """
)
_SKIP_LABELS = _phrases(
    """
    reference, contacts, metadata, owners, table of contents, related, change log, revision history,
    emergency contacts, related runbooks, owner, see also, related links, links, changelog, history,
    contents, references
    """
)
_PROC_LABELS = _phrases(
    """
    response, solution, workaround, fix, verification, resolution, remediation, rollback,
    investigation, triage, immediate actions, solutions, mitigation, diagnosis, diagnose,
    symptoms, immediate, recovery
    """
)
_PROC_TITLE_WORDS = _words(
    """
    troubleshoot troubleshooting issue issues problem problems failure failures fail failing
    incident outage recovery recover restore mitigation mitigate remediation runbook playbook
    rollback down error errors latency loss crash crashes crashing corrupt corruption exhaust
    exhaustion exhausted leak backlog lag slow high low stuck unhealthy degraded not won't cannot
    can't unavailable timeout timeouts full pressure saturation spike
    """
)


_ALL_LABELS = _KNOWN_LABELS | _SUMMARY_LABELS | _NOTE_LABELS | _SKIP_LABELS | _PROC_LABELS


@dataclass
class _Unit:
    """Blocks under one heading or bold label (label None: a section's own introduction)."""

    label: str | None
    blocks: list[_Block]


def _norm_label(label: str | None) -> str:
    return re.sub(r"\s+", " ", _clean_title(label or "").lower())


def _label_of(block: _Block) -> tuple[str, _Block | None] | None:
    if block.kind != "para" or not block.text.strip():
        return None
    lines = block.text.splitlines()
    first = lines[0].strip()
    m = re.fullmatch(r"(?:\*\*|__)(?P<l>[^*_].*?)(?:\*\*|__)\s*:?", first)
    if m and len(lines) == 1:
        return m["l"].strip().rstrip(":").strip(), None
    m = re.fullmatch(r"(?P<l>[A-Z][\w /&()'-]{1,40}):", first)
    if m and len(lines) == 1 and (_norm_label(m["l"]) in _ALL_LABELS or _procedure_label(m["l"])):
        return m["l"].strip(), None
    m = re.fullmatch(r"(?:\*\*|__)(?P<l>[^*_].*?):?(?:\*\*|__):?\s+(?P<rest>\S.*)", first) or re.fullmatch(
        r"(?P<l>[A-Z][A-Za-z ]{2,30}):\s+(?P<rest>\S.*)", first
    )
    if m and _norm_label(m["l"]) in _KNOWN_LABELS:
        rest_lines = [m["rest"], *lines[1:]]
        return m["l"].strip().rstrip(":"), _Block("para", rest_lines, text="\n".join(rest_lines))
    return None


def _units(section: _Section, skip: set[int], depth: int = 0) -> list[_Unit]:
    units: list[_Unit] = []
    current = _Unit(section.title if depth else None, [])
    for block in section.blocks:
        labelled = _label_of(block)
        if labelled is not None:
            if current.blocks:
                units.append(current)
            current = _Unit(labelled[0], [labelled[1]] if labelled[1] else [])
        else:
            current.blocks.append(block)
    if current.blocks:
        units.append(current)
    for child in section.children:
        if id(child) not in skip:
            units += _units(child, skip, depth + 1)
    return units


# --------------------------------------------------------------------------- steps


@dataclass
class _StepDraft:
    title: str
    text: str = ""
    codes: list[tuple[str, str]] = field(default_factory=list)


def _first_sentence(text: str) -> tuple[str, str]:
    """(title, rest) of an item's first paragraph."""
    flat = " ".join(x.strip() for x in text.splitlines())
    m = re.match(r"^(?:\*\*|__)(?P<t>[^*_].*?)(?:\*\*|__)\s*[:.\-–—]?\s*(?P<rest>.*)$", flat)
    if m:
        return _clean_title(m["t"]), m["rest"].strip()
    depth = 0
    for i, ch in enumerate(flat):
        if ch == "`":
            depth ^= 1
        elif depth == 0 and ch in ".!?:" and (i + 1 == len(flat) or flat[i + 1] == " "):
            if ch == "." and re.search(r"\b(?:e\.g|i\.e|etc|vs)$", flat[:i]):
                continue
            head, rest = flat[:i], flat[i + 1 :].strip()
            if ch == ":" and rest and len(head.split()) <= 2 and not rest.startswith("`"):
                # "Immediate: Flush the caches." -> the whole clause is the title
                more, rest = _first_sentence(rest)
                return _clean_title(f"{head}: {more}"), rest
            return _clean_title(head), rest
    return _clean_title(flat), ""


def _numbered_chunks(code: str) -> list[tuple[str, str]] | None:
    """Split a code block made of ``# 1. title`` chunks into (title, code) pairs."""
    heads = [
        (i, m.group(1))
        for i, line in enumerate(code.splitlines())
        if (m := re.match(r"^\s*#\s*(?:step\s*)?\d+\s*[.):]\s*(\S.*)$", line, re.IGNORECASE))
    ]
    if len(heads) < 2:
        return None
    lines = code.splitlines()
    chunks: list[tuple[str, str]] = []
    for n, (start, title) in enumerate(heads):
        end = heads[n + 1][0] if n + 1 < len(heads) else len(lines)
        body = (lines[:start] if n == 0 else []) + lines[start + 1 : end]
        chunks.append((title.strip(), "\n".join(body).strip("\n")))
    return chunks


def _list_has_commands(block: _Block) -> bool:
    for item in block.items:
        for inner in item.blocks:
            if inner.kind == "code" and not _is_rule_code(inner):
                return True
            if inner.kind == "list" and _list_has_commands(inner):
                return True
            if inner.kind == "para":
                spans = [m.group(2) for m in _INLINE_CODE.finditer(inner.text)]
                if any(_is_command(s) or _promql_like(s) for s in spans):
                    return True
    return False


def _nested_ordered(item: _Item) -> _Block | None:
    for block in item.blocks[1:]:
        if block.kind == "list" and block.ordered and len(block.items) >= 1:
            return block
    return None


def _is_procedure_list(block: _Block) -> bool:
    if block.kind != "list":
        return False
    if block.ordered or _list_has_commands(block):
        return True
    return any(_nested_ordered(item) is not None for item in block.items)


def _item_steps(item: _Item) -> list[_StepDraft]:
    blocks = item.blocks
    if blocks and blocks[0].kind == "para":
        title, rest = _first_sentence(blocks[0].text)
        others = blocks[1:]
    else:
        title, rest = "Step", ""
        others = blocks
    # a bullet ("**PostgreSQL**:") over a numbered procedure: one step per numbered item
    nested = None if item.ordered else _nested_ordered(item)
    if nested is not None and not any(b.kind == "code" for b in others):
        steps: list[_StepDraft] = []
        lead = title
        for sub in nested.items:
            for step in _item_steps(sub):
                step.title = f"{lead}: {step.title}" if lead else step.title
                steps.append(step)
        extra = [rest] + [b.markdown() for b in others if b is not nested]
        extra_text = "\n\n".join(x for x in extra if x.strip())
        if steps and extra_text:
            steps[0].text = (extra_text + "\n\n" + steps[0].text).strip()
        return steps
    text_parts = [rest] if rest and rest.strip(" .:") else []
    short = _without_commands(title)
    if short != re.sub(r"\s+", " ", title).strip() and blocks and blocks[0].kind == "para":
        title, text_parts = short, [blocks[0].text]
    codes: list[tuple[str, str]] = []
    for block in others:
        if block.kind == "code":
            if not _is_rule_code(block):
                codes.append((block.lang, block.text))
        else:
            text_parts.append(block.markdown())
    return [_StepDraft(title or "Step", "\n\n".join(text_parts).strip(), codes)]


def _unit_steps(unit: _Unit, fallback_title: str) -> tuple[list[_StepDraft], list[str]]:
    """Steps of one unit, and markdown that belongs in the summary (intro text)."""
    blocks = [b for b in unit.blocks if not _is_rule_code(b)]
    title = _clean_title(unit.label) if unit.label else fallback_title
    summary: list[str] = []
    if not blocks:
        return [], summary
    proc_lists = [b for b in blocks if _is_procedure_list(b)]
    if not proc_lists:
        if unit.label is None and all(b.kind in ("para", "table", "quote") for b in blocks):
            return [], [b.markdown() for b in blocks]
        codes = [b for b in blocks if b.kind == "code"]
        texts = [b for b in blocks if b.kind != "code"]
        if unit.label is None:
            # the section's own introduction: leading paragraphs are the summary
            while texts and texts[0].kind in ("para", "table", "quote") and texts[0] is blocks[0]:
                summary.append(texts[0].markdown())
                blocks = blocks[1:]
                texts = texts[1:]
        text = "\n\n".join(b.markdown() for b in texts)
        if len(codes) == 1:
            chunks = _numbered_chunks(codes[0].text)
            if chunks:
                steps = [_StepDraft(_clean_title(t) or title, "", [(codes[0].lang, c)]) for t, c in chunks]
                steps[0].text = text
                return steps, summary
        return [_StepDraft(title, text, [(c.lang, c.text) for c in codes])], summary
    steps = []
    pending: list[_Block] = []
    for block in blocks:
        if block in proc_lists:
            new: list[_StepDraft] = []
            for item in block.items:
                new += _item_steps(item)
            if pending and new:
                intro = "\n\n".join(b.markdown() for b in pending if b.kind != "code")
                if unit.label is None and all(b.kind in ("para", "table", "quote") for b in pending):
                    summary.append(intro)
                else:
                    new[0].text = (intro + "\n\n" + new[0].text).strip()
                    new[0].codes = [(b.lang, b.text) for b in pending if b.kind == "code"] + new[0].codes
                pending = []
            steps += new
        elif steps:
            last = steps[-1]
            if block.kind == "code":
                last.codes.append((block.lang, block.text))
            else:
                last.text = (last.text + "\n\n" + block.markdown()).strip()
        else:
            pending.append(block)
    return steps, summary


def _step_sources(step: _StepDraft) -> tuple[list[tuple[str, str]], list[str]]:
    """(code blocks, inline code / bare PromQL lines) of a step."""
    inline = [m.group(2).strip() for m in _INLINE_CODE.finditer(step.title + "\n" + step.text)]
    for line in (step.title + "\n" + step.text).splitlines():
        if "`" in line:
            continue
        if _bare_promql(line):
            inline.append(re.sub(r"^(?:[-*+]|\d+[.)])\s+", "", line.strip()))
        command = re.search(r"(?:^|[\s:(])(kubectl\s[^\n]+)", line)
        if command:  # a command written without backticks: up to the end of the line/sentence
            inline.append(re.sub(r"[.)]+$|\.\s.*$", "", command.group(1).strip()))
    return step.codes, inline


def _step_dict(step: _StepDraft) -> dict[str, Any]:
    data: dict[str, Any] = {"title": _fit_title(step.title)}
    text = step.text
    code: str | None = None
    language: str | None = None
    if step.codes:
        langs = {lang.lower() for lang, _ in step.codes}
        if len(langs) == 1:
            code = "\n\n".join(body for _, body in step.codes)
            language = step.codes[0][0].lower()
        else:
            code, language = step.codes[0][1], step.codes[0][0].lower()
            extra = "\n\n".join(f"```{lang}\n{body}\n```" for lang, body in step.codes[1:])
            text = (text + "\n\n" + extra).strip()
    if text.strip():
        data["text"] = _fit(text, 3000)
    if code is not None and code.strip():
        if len(code) > 3000:
            code = code[:2950].rsplit("\n", 1)[0] + "\n# … (truncated, see the runbook)"
        data["code"] = code.rstrip() + "\n"
        if not language:
            language = (
                _guess_language(code.splitlines()) if any(_is_command(x) for x in code.splitlines()) else ""
            )
        if language and re.fullmatch(r"[a-z0-9][a-z0-9+#._-]*", language) and len(language) <= 20:
            data["language"] = language
    return data


# --------------------------------------------------------------------------- placeholders and templates

_LABEL_ALIASES = {
    "ns": "namespace",
    "deploy": "deployment",
    "deployments": "deployment",
    "pods": "pod",
    "nodes": "node",
    "svc": "service",
    "cj": "cronjob",
    "container_name": "container",
}


def _label_for(placeholder: str) -> str:
    name = placeholder.strip().lower().replace("-", "_").replace(" ", "_").replace(".", "_")
    name = re.sub(r"^(?:your|my|the|target|the_)_", "", name)
    name = _LABEL_ALIASES.get(name, name)
    if name.endswith("_name") and len(name) > 5:
        name = name[:-5]
    name = _LABEL_ALIASES.get(name, name)
    name = re.sub(r"[^a-z0-9_]", "", name)
    if not name or not _LABEL_NAME.fullmatch(name):
        name = "name"
    return name


def _var(name: str, following: str) -> str:
    return f"${{{name}}}" if following[:1] and re.match(r"[A-Za-z0-9_]", following[:1]) else f"${name}"


def _templatize(token: str) -> str:
    """Shell/doc placeholders in a word as our label templates ($NAMESPACE -> $namespace)."""
    if re.fullmatch(r"[A-Z][A-Z0-9_]*", token) and len(token) >= 2:
        return f"${_label_for(token)}"
    out: list[str] = []
    i = 0
    pattern = re.compile(
        r"\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}"
        r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
        r"|<(?P<angle>[A-Za-z][A-Za-z0-9_ .-]*)>"
        r"|\{\{\s*\.?(?P<go>[A-Za-z_][A-Za-z0-9_.]*)\s*\}\}"
        r"|\$"
    )
    for m in pattern.finditer(token):
        out.append(token[i : m.start()])
        name = m["braced"] or m["bare"] or m["angle"] or m["go"]
        rest = token[m.end() :]
        if name is None:
            out.append("$$")
        elif m["default"] is not None and m["braced"]:
            out.append(f"${{{_label_for(name)}:-{m['default']}}}")
        else:
            out.append(_var(_label_for(name), rest))
        i = m.end()
    out.append(token[i:])
    return "".join(out)


def _k8s_template(token: str, *, dns_label: bool = False) -> str | None:
    """A Kubernetes name from a command word, as a valid template, or None."""
    if not token or "__SUBST__" in token or any(c in token for c in "()`*?[]|;&"):
        return None
    template = _templatize(token)
    try:
        check_template(template, Context.K8S_LABEL if dns_label else Context.K8S_NAME)
    except TemplateError:
        return None
    return template


def _promql_template(query: str) -> str | None:
    """A PromQL query as a valid template (placeholders inside strings become labels), or None."""
    q = query.strip().rstrip(";")
    q = re.sub(r"\$__(?:rate_)?interval|\$\{__(?:rate_)?interval\}|\$interval|\$\{interval\}", "5m", q)
    q = re.sub(r"\$__range|\$\{__range\}", "1h", q)
    if re.search(r"<[A-Za-z_][\w -]*>", q) and not re.search(
        r"[\"'][^\"']*<[A-Za-z_][\w -]*>[^\"']*[\"']", q
    ):
        return None

    def fix_string(m: re.Match[str]) -> str:
        quote, body = m.group(1), m.group(2)
        return quote + _templatize_promql_string(body) + quote

    q = re.sub(r"(\")((?:[^\"\\\n]|\\.)*)\"", fix_string, q)
    q = re.sub(r"(')((?:[^'\\\n]|\\.)*)'", fix_string, q)
    try:
        check_template(q, Context.PROMQL)
    except TemplateError:
        return None
    return q if len(q) <= 4000 else None


def _templatize_promql_string(body: str) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m["braced"] or m["bare"] or m["angle"]
        if name is None:
            return "$$"
        following = body[m.end() :]
        if m["default"] is not None and m["braced"]:
            return f"${{{_label_for(name)}:-{m['default']}}}"
        return _var(_label_for(name), following)

    pattern = re.compile(
        r"\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}"
        r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
        r"|<(?P<angle>[A-Za-z][A-Za-z0-9_ -]*)>"
        r"|\$"
    )
    return pattern.sub(repl, body)


# --------------------------------------------------------------------------- graphs


def _guess_unit(query: str) -> str:
    q = query.lower()
    if re.search(r"\*\s*100\b", q) or re.search(r"percent|_pct\b|_percentage", q):
        return "%"
    metrics = re.findall(r"[a-z_:][a-z0-9_:]*", q)
    if any(m.endswith(("_seconds", "_seconds_bucket")) for m in metrics):
        return "s"
    if "histogram_quantile" in q and any(
        m.endswith("_milliseconds_bucket") or m.endswith("_ms_bucket") for m in metrics
    ):
        return "ms"
    if "histogram_quantile" in q:
        return ""
    top_division = re.search(r"(?<![/*])/(?![/*])", re.sub(r"\[[^\]]*\]", "", q)) is not None
    if top_division:
        sums = [m for m in metrics if m.endswith("_seconds_sum")]
        if sums and any(m.endswith("_seconds_count") for m in metrics):
            return "s"
        return "ratio"
    if any(m.endswith(("_ratio", "_hit_rate")) for m in metrics):
        return "ratio"
    if any(m.endswith(("_bytes", "_bytes_total")) for m in metrics):
        return "bytes/s" if re.search(r"\b(?:i?rate)\s*\(", q) else "bytes"
    if any(m.endswith("_seconds_total") for m in metrics) and re.search(r"\b(?:i?rate)\s*\(", q):
        return "s/s"
    if re.search(r"\b(?:i?rate)\s*\(", q) and any(m.endswith("_total") for m in metrics):
        return "req/s" if "request" in q else "/s"
    if any("_usd" in m or "cost" in m for m in metrics):
        return "USD"
    if any(m.endswith(("_seconds", "_duration")) for m in metrics):
        return "s"
    return ""


def _promql_queries(code: str) -> list[tuple[str, str]]:
    """(comment title, query) for each expression in a PromQL code block."""
    found: list[tuple[str, str]] = []
    comment = ""
    current: list[str] = []

    def flush() -> None:
        nonlocal current
        if current:
            found.append((comment, " ".join(current)))
        current = []

    for raw in code.splitlines():
        line = raw.strip()
        if not line:
            flush()
            continue
        if line.startswith("#"):
            flush()
            text = line.lstrip("#").strip()
            if text and not re.match(r"^[A-Za-z ]*[=:]\s*\S+\s*[-+*/]", text):
                comment = re.sub(r"^\d+[.)]\s*", "", text)
            continue
        line = re.sub(r"\s+#\s.*$", "", line)
        if current:
            prev = current[-1]
            opens = sum(x.count("(") - x.count(")") for x in current)
            continues = (
                opens > 0
                or re.search(r"(?:[-+*/(,^%]|\b(?:and|or|unless|by|without|on|ignoring|offset|bool))$", prev)
                or re.match(
                    r"^(?:[-+*/)^%\[@]|(?:and|or|unless|by|without|on|ignoring|offset|group_left|"
                    r"group_right|bool)\b|[<>=!]=?)",
                    line,
                )
            )
            if not continues:
                flush()
        current.append(line)
    flush()
    return found


@dataclass
class _Collector:
    """Graphs, remediations and diagnostics of one playbook, deduplicated."""

    default_ns: str
    graphs: list[dict[str, Any]] = field(default_factory=list)
    remediations: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def _once(self, kind: str, key: Any) -> bool:
        token = kind + json.dumps(key, sort_keys=True, default=str)
        if token in self._seen:
            return False
        self._seen.add(token)
        return True

    def graph(self, title: str, query: str) -> bool:
        """Add a graph of `query` (a trailing ``> number`` becomes the threshold); False when
        it is not a safe PromQL template, a duplicate, or over the limit."""
        if len(self.graphs) >= MAX_GRAPHS:
            return False
        expr, threshold = split_threshold(query.strip())
        template = _promql_template(expr)
        if template is None or ("graph" + template) in self._seen:
            return False
        data: dict[str, Any] = {"title": _fit_title(title or "Graph"), "query": template}
        unit = _guess_unit(template)
        if unit:
            data["unit"] = unit
        if threshold is not None:
            data["threshold"] = threshold
        if not _valid(Graph, data):
            return False
        self._seen.add("graph" + template)
        self.graphs.append(data)
        return True

    def remediation(self, data: dict[str, Any]) -> None:
        if len(self.remediations) < MAX_REMEDIATIONS and self._once("rem", (data["action"], data["params"])):
            self.remediations.append(data)

    def diagnostic(self, data: dict[str, Any]) -> None:
        key = (data["kind"], data["namespace"], data.get("target"))
        if len(self.diagnostics) < MAX_DIAGNOSTICS and _valid(Diagnostic, data) and self._once("diag", key):
            self.diagnostics.append(data)

    def link(self, title: str, url: str) -> None:
        data = {"title": _fit_title(title), "url": escape_template(url)}
        if len(self.links) < MAX_LINKS and _valid(Link, data) and self._once("link", url):
            self.links.append(data)

    def scan_step(self, step: _StepDraft) -> None:
        codes, inline = _step_sources(step)
        promql_seen = 0
        for lang, body in codes:
            language = lang.lower()
            lines = [x for x in body.splitlines() if x.strip() and not x.strip().startswith("#")]
            if language in _PROMQL_LANGS or (
                language == ""
                and lines
                and all(_promql_like(x) or not _is_command(x) for x in lines)
                and any(_promql_like(x) for x in lines)
            ):
                queries = _promql_queries(body)
                for comment, query in queries:
                    promql_seen += 1
                    title = comment or step.title
                    if not comment and len(queries) > 1:
                        title = f"{step.title} ({promql_seen})"
                    self.graph(title, query)
            elif language in _SHELL_LANGS:
                for command in _shell_commands(body):
                    self.command(command, step.title)
        for span in inline:
            if span.startswith("kubectl "):
                self.command(span, step.title)
            elif _promql_like(span):
                self.graph(step.title, span)

    def command(self, command: str, context: str) -> None:
        result = kubectl_proposal(command, default_namespace=self.default_ns)
        if result is None:
            return
        if result.get("kind"):
            self.diagnostic(result)
            return
        why = f"From the runbook ({_shorten(_clean_title(context), 80)}): `{' '.join(command.split())}`"
        result["why"] = _fit(why, 3000)
        self.remediation(result)


def _valid(model: type[BaseModel], data: dict[str, Any]) -> bool:
    try:
        model.model_validate(data)
    except (ValidationError, TemplateError):
        return False
    return True


# --------------------------------------------------------------------------- kubectl

_VALUE_FLAGS = _words(
    """
    -n --namespace -c --container --containers --replicas --to-revision --limits --requests --from
    --grace-period --timeout -l --selector --tail --context --kubeconfig --cluster --user -o
    --output --since -e --env --field-selector --sort-by --type --current-replicas
    --resource-version --revision --image --server --token --as --as-group --chunk-size
    --pod-running-timeout --max-log-requests --since-time --overrides --restart --schedule --port
    --filename -f
    """
)
_BOOL_FLAGS = _words(
    """
    -i --ignore-daemonsets --follow -t -it -f -p --dry-run -w --delete-local-data --previous --wait
    -A --all --force --delete-emptydir-data --watch --all-namespaces --record
    """
)
_DEPLOYMENT_KINDS = frozenset({"deployment", "deployments", "deploy", "deployment.apps", "deployments.apps"})
_POD_KINDS = frozenset({"pod", "pods", "po"})


@dataclass
class _Kubectl:
    positionals: list[str]
    flags: dict[str, str | bool]
    assignments: list[str]


def _parse_kubectl(tokens: list[str]) -> _Kubectl:
    positionals: list[str] = []
    flags: dict[str, str | bool] = {}
    assignments: list[str] = []
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--":
            positionals += tokens[i:]
            break
        if tok.startswith("-") and len(tok) > 1:
            if "=" in tok and tok.startswith("--"):
                key, value = tok.split("=", 1)
                flags[key] = value
            elif re.fullmatch(r"-[a-zA-Z]=.+", tok):
                flags[tok[:2]] = tok[3:]
            elif tok in _BOOL_FLAGS and tok not in ("-f",):
                flags[tok] = True
            elif tok in _VALUE_FLAGS and i + 1 < len(tokens) and tok != "-f":
                flags[tok] = tokens[i + 1]
                i += 1
            elif tok == "-f":
                flags[tok] = True
            else:
                flags[tok] = True
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*|[A-Za-z_][A-Za-z0-9_]*-", tok) and positionals[:2] == [
            "set",
            "env",
        ]:
            assignments.append(tok)
        else:
            positionals.append(tok)
        i += 1
    return _Kubectl(positionals, flags, assignments)


def _flag(cmd: _Kubectl, *names: str) -> str | bool | None:
    for name in names:
        if name in cmd.flags:
            return cmd.flags[name]
    return None


def _targets(args: Sequence[str], kinds: frozenset[str]) -> list[str] | None:
    """Object names from ``kind/name ...`` or ``kind name ...``; None when of another kind."""
    if not args:
        return None
    if "/" in args[0]:
        names = []
        for arg in args:
            kind, _, name = arg.partition("/")
            if kind.lower() not in kinds or not name:
                return None
            names.append(name)
        return names
    if args[0].lower() in kinds and len(args) > 1:
        return list(args[1:])
    return None


def _namespace(cmd: _Kubectl, default_ns: str) -> str | None:
    value = _flag(cmd, "-n", "--namespace")
    if value is None or value is True:
        return f"${{namespace:-{default_ns}}}"
    return _k8s_template(str(value), dns_label=True)


def _int_value(value: str | bool | None, low: int, high: int) -> int | None:
    if isinstance(value, str) and re.fullmatch(r"\d{1,9}", value):
        number = int(value)
        return number if low <= number <= high else None
    return None


def _resources(value: str | bool | None) -> dict[str, str] | None:
    if not isinstance(value, str):
        return None
    spec: dict[str, str] = {}
    for part in value.split(","):
        key, _, quantity = part.partition("=")
        key = key.strip().lower()
        if key not in ("cpu", "memory") or not quantity.strip():
            return None
        spec[key] = quantity.strip()
    return spec or None


def _shell_commands(code: str) -> list[str]:
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
        s = re.sub(r"\$\([^()]*\)|`[^`]*`", "__SUBST__", s)
        for part in re.split(r"\s*(?:&&|\|\||;)\s*", s):
            first = re.split(r"(?<!\\)\s\|\s|\s\|$", part)[0].strip()
            if first:
                commands.append(first)
    return commands


def kubectl_proposal(command: str, *, default_namespace: str = "default") -> dict[str, Any] | None:
    """The typed remediation (``action``/``title``/``params``) or read-only diagnostic
    (``kind``/``namespace``/``target``...) for one ``kubectl`` command, or None when it
    stays text (``exec``, unknown verbs, names that are not valid after converting
    placeholders, replicas above the bundled policy's maximum)."""
    command = re.sub(r"\$\([^()]*\)|`[^`]*`", "__SUBST__", command.strip())
    try:
        tokens = shlex.split(command, comments=False)
    except ValueError:
        return None
    for sep in ("|", "||", "&&", ";", ">", ">>", "2>&1"):
        if sep in tokens:
            tokens = tokens[: tokens.index(sep)]
    if len(tokens) < 2 or tokens[0] != "kubectl":
        return None
    default_ns = default_namespace if _DNS_LABEL.fullmatch(default_namespace) else "default"
    cmd = _parse_kubectl(tokens)
    pos = cmd.positionals
    if not pos:
        return None
    verb = pos[0]
    namespace = _namespace(cmd, default_ns)
    if namespace is None:
        return None
    result: dict[str, Any] | None = None
    if verb == "rollout" and len(pos) >= 3:
        result = _rollout(pos[1], pos[2:], cmd, namespace)
    elif verb == "scale":
        result = _scale(pos[1:], cmd, namespace)
    elif verb == "set" and len(pos) >= 3 and pos[1] in ("env", "resources"):
        result = _set(pos[1], pos[2:], cmd, namespace)
    elif verb == "delete" and len(pos) >= 2:
        result = _delete_pod(pos[1:], cmd, namespace)
    elif verb in ("cordon", "uncordon", "drain") and len(pos) == 2:
        result = _node(verb, pos[1], cmd)
    elif verb == "create" and len(pos) >= 3 and pos[1] == "job":
        result = _create_job(pos[2], cmd, namespace)
    elif verb in ("logs", "get", "describe"):
        return _diagnostic(verb, pos[1:], cmd, namespace)
    if result is None or "kind" in result:
        return result
    return result if _remediation_ok(result) else None


def _rollout(sub: str, args: list[str], cmd: _Kubectl, namespace: str) -> dict[str, Any] | None:
    if sub == "history":
        return _diagnostic("rollout-history", args, cmd, namespace)
    names = _targets(args, _DEPLOYMENT_KINDS)
    if sub not in ("restart", "undo") or not names or len(names) != 1:
        return None
    deployment = _k8s_template(names[0])
    if deployment is None:
        return None
    params: dict[str, Any] = {"namespace": namespace, "deployment": deployment}
    if sub == "restart":
        return {
            "action": ActionName.ROLLOUT_RESTART.value,
            "title": f"Restart deployment {deployment}",
            "params": params,
        }
    revision = _flag(cmd, "--to-revision")
    title = f"Roll back deployment {deployment} to the previous revision"
    if revision is not None:
        number = _int_value(revision, 0, 1_000_000)
        if number is None:
            return None
        if number:
            params["to_revision"] = number
            title = f"Roll back deployment {deployment} to revision {number}"
    return {"action": ActionName.ROLLOUT_UNDO.value, "title": title, "params": params}


def _scale(args: list[str], cmd: _Kubectl, namespace: str) -> dict[str, Any] | None:
    names = _targets(args, _DEPLOYMENT_KINDS)
    replicas = _int_value(_flag(cmd, "--replicas"), 0, 1000)
    if (
        not names
        or len(names) != 1
        or replicas is None
        or _flag(cmd, "--current-replicas", "-l", "--selector")
    ):
        return None
    deployment = _k8s_template(names[0])
    if deployment is None:
        return None
    return {
        "action": ActionName.SCALE.value,
        "title": f"Scale deployment {deployment} to {replicas} replicas",
        "params": {"namespace": namespace, "deployment": deployment, "replicas": replicas},
    }


def _set(sub: str, args: list[str], cmd: _Kubectl, namespace: str) -> dict[str, Any] | None:
    names = _targets(args[:2] if "/" not in args[0] else args[:1], _DEPLOYMENT_KINDS)
    extra = args[2:] if "/" not in args[0] else args[1:]
    if not names or len(names) != 1 or extra or _flag(cmd, "-l", "--selector", "--all", "--from", "-f"):
        return None
    deployment = _k8s_template(names[0])
    if deployment is None:
        return None
    params: dict[str, Any] = {"namespace": namespace, "deployment": deployment}
    container = _flag(cmd, "-c", "--containers", "--container")
    if container is not None:
        if not isinstance(container, str) or "*" in container or "," in container:
            return None
        name = _k8s_template(container, dns_label=True)
        if name is None:
            return None
        params["container"] = name
    if sub == "env":
        env: dict[str, str] = {}
        pairs = list(cmd.assignments)
        flag_env = _flag(cmd, "-e", "--env")
        if isinstance(flag_env, str):
            pairs.append(flag_env)
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not _LABEL_NAME.fullmatch(key):
                return None
            env[key] = escape_template(value.replace("__SUBST__", "$(...)"))
        if not env:
            return None
        params["env"] = env
        shown = ", ".join(env)
        return {
            "action": ActionName.SET_ENV.value,
            "title": f"Set {shown} on deployment {deployment}",
            "params": params,
        }
    limits, requests = _flag(cmd, "--limits"), _flag(cmd, "--requests")
    if limits is None and requests is None:
        return None
    for key, flag_value in (("limits", limits), ("requests", requests)):
        if flag_value is not None:
            spec = _resources(flag_value)
            if spec is None:
                return None
            params[key] = spec
    return {
        "action": ActionName.SET_RESOURCES.value,
        "title": f"Set the resources of deployment {deployment}",
        "params": params,
    }


def _delete_pod(args: list[str], cmd: _Kubectl, namespace: str) -> dict[str, Any] | None:
    names = _targets(args, _POD_KINDS)
    if not names or len(names) != 1 or _flag(cmd, "-l", "--selector", "--all", "-A", "--all-namespaces"):
        return None
    pod = _k8s_template(names[0])
    if pod is None:
        return None
    params: dict[str, Any] = {"namespace": namespace, "pod": pod}
    grace = _flag(cmd, "--grace-period")
    if grace is not None:
        seconds = _int_value(grace, 0, 3600)
        if seconds is None:
            return None
        params["grace_period_seconds"] = seconds
    return {"action": ActionName.DELETE_POD.value, "title": f"Delete pod {pod}", "params": params}


def _node(verb: str, name: str, cmd: _Kubectl) -> dict[str, Any] | None:
    if name.startswith("node/"):
        name = name[5:]
    node = _k8s_template(name)
    if node is None or _flag(cmd, "-l", "--selector"):
        return None
    params: dict[str, Any] = {"node": node}
    if verb == "drain":
        if _flag(cmd, "--ignore-daemonsets") is True:
            params["ignore_daemonsets"] = True
        if _flag(cmd, "--delete-emptydir-data", "--delete-local-data") is True:
            params["delete_emptydir_data"] = True
        grace = _flag(cmd, "--grace-period")
        if grace is not None:
            seconds = _int_value(grace, 0, 3600)
            if seconds is not None:
                params["grace_period_seconds"] = seconds
        timeout = _flag(cmd, "--timeout")
        if isinstance(timeout, str):
            try:
                seconds_f = parse_duration(timeout) if not timeout.isdigit() else float(timeout)
            except ValueError:
                seconds_f = -1
            if 10 <= seconds_f <= 3600:
                params["timeout_seconds"] = int(seconds_f)
    action = {"cordon": ActionName.CORDON, "uncordon": ActionName.UNCORDON, "drain": ActionName.DRAIN}[verb]
    return {"action": action.value, "title": f"{verb.capitalize()} node {node}", "params": params}


def _create_job(name: str, cmd: _Kubectl, namespace: str) -> dict[str, Any] | None:
    source = _flag(cmd, "--from")
    if not isinstance(source, str):
        return None
    kind, _, cronjob_name = source.partition("/")
    if kind.lower() not in ("cronjob", "cronjobs", "cj", "cronjob.batch") or not cronjob_name:
        return None
    cronjob = _k8s_template(cronjob_name)
    if cronjob is None:
        return None
    params: dict[str, Any] = {"namespace": namespace, "cronjob": cronjob}
    job_name = _k8s_template(name)
    if job_name is not None:
        params["job_name"] = job_name
    return {
        "action": ActionName.CREATE_JOB_FROM_CRONJOB.value,
        "title": f"Run cronjob {cronjob} now",
        "params": params,
    }


def _diagnostic(verb: str, args: list[str], cmd: _Kubectl, namespace: str) -> dict[str, Any] | None:
    data: dict[str, Any] = {"namespace": namespace}
    if verb == "rollout-history":
        names = _targets(args, _DEPLOYMENT_KINDS)
        target = _k8s_template(names[0]) if names and len(names) == 1 else None
        if target is None:
            return None
        data.update(kind="rollout_history", target=target)
    elif verb == "logs":
        if not args or _flag(cmd, "-l", "--selector"):
            return None
        names = _targets(args[:1], _DEPLOYMENT_KINDS)
        if names:
            target, kind = _k8s_template(names[0]), "deployment"
        elif "/" in args[0]:
            pod_kind, _, pod_name = args[0].partition("/")
            target, kind = (_k8s_template(pod_name), "pod") if pod_kind in _POD_KINDS else (None, "pod")
        else:
            target, kind = _k8s_template(args[0]), "pod"
        if target is None:
            return None
        data.update(kind="logs", target=target)
        if kind == "pod":
            data["target_kind"] = "pod"
        tail = _int_value(_flag(cmd, "--tail"), 1, 5000)
        if tail is not None:
            data["tail_lines"] = tail
        container = _flag(cmd, "-c", "--container")
        if isinstance(container, str):
            name = _k8s_template(container, dns_label=True)
            if name is not None:
                data["container"] = name
    elif verb == "get" and args and args[0].lower() in ("pods", "pod", "po") and len(args) == 1:
        data["kind"] = "pods"
    elif verb == "get" and args and args[0].lower() in ("events", "event", "ev"):
        data["kind"] = "events"
    elif verb == "describe" and len(args) == 2 and args[0].lower() in _POD_KINDS:
        target = _k8s_template(args[1])
        if target is None:
            return None
        data.update(kind="events", target=target, target_kind="pod")
    else:
        return None
    return data if _valid(Diagnostic, data) else None


@functools.cache
def _bundled_policy() -> Policy | None:
    path = DEFAULT_PLAYBOOKS_DIR / "policy.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Policy.model_validate(data) if isinstance(data, dict) else None
    except (OSError, yaml.YAMLError, ValidationError):
        return None


def _remediation_ok(data: dict[str, Any]) -> bool:
    """The same checks `validate_dir` makes: the model, and the parameters rendered with
    sample labels (and every default) against the action's model and the policy bounds."""
    try:
        rem = Remediation.model_validate(data)
        leaves = [v for v in _string_leaves(rem.params)]
        for labels in sample_label_sets(*leaves):
            rem.render_params(labels)
    except (ValidationError, TemplateError):
        return False
    policy = _bundled_policy()
    if rem.action is ActionName.SCALE and policy is not None:
        rule = policy.rule_for(rem.action, rem.approval)
        if rule.scale_violation(None, int(rem.params["replicas"])):
            return False
    return True


def _string_leaves(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _string_leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _string_leaves(item)


# --------------------------------------------------------------------------- drafts


@dataclass
class _Draft:
    title: str
    alerts: list[str]
    collector: _Collector
    on_demand: bool = False
    severity: Severity | None = None
    summary: list[str] = field(default_factory=list)
    steps: list[_StepDraft] = field(default_factory=list)
    graph_alert_expr: bool = False
    has_rule: bool = False
    sources: list[str] = field(default_factory=list)


@dataclass
class _Document:
    source_name: str
    front: dict[str, Any]
    root: _Section
    system: str
    default_ns: str
    rules: list[_Rule]


_GENERIC_WORDS = _words(
    """
    runbook runbooks operations operational ops manual guide monitoring playbook playbooks handbook
    documentation docs the sre oncall on call procedures procedure alert alerts alerting incident
    response troubleshooting complete for and of md txt markdown readme
    """
)


def _system_slug(front: dict[str, Any], root: _Section, source_name: str, body: str) -> str:
    """From the front matter, else the first heading without generic words ("SkillMeat
    Monitoring Runbook" -> skillmeat), else the common prefix of the deployments the
    runbook names (birthday-scheduler-api/-worker -> birthday-scheduler), else the file name."""
    candidates = [_fm_str(front, "system", "service", "app", "application", "component", "product")]
    first = next((s.title for s in root.walk() if s.level and s.title.strip()), None)
    if first and _heading_alert(first).names:
        words = _camel_words(_heading_alert(first).names[0])
        first = words[0] if words else None  # "# KubePodCrashLooping" -> kube
    candidates.append(first)
    deployments = re.findall(
        r"\b(?:deployments?|deploy)(?:\.apps)?[/ ]+([a-z0-9][a-z0-9.-]*[a-z0-9])\b", body
    )
    prefixes = Counter(d.rsplit("-", 1)[0] for d in deployments if "-" in d)
    if prefixes and prefixes.most_common(1)[0][1] >= 2:
        candidates.append(prefixes.most_common(1)[0][0])
    candidates.append(Path(source_name).stem)
    for candidate in candidates:
        if not candidate:
            continue
        words = [
            w
            for w in _WORD.findall(_strip_emphasis(candidate).lower())
            if w not in _GENERIC_WORDS
            and not (w.isdigit() or (len(w) >= 8 and re.fullmatch(r"[0-9a-f]+", w)))
        ]
        slug = _slug("-".join(words[:4]))
        if slug:
            return slug
    return "runbook"


def _doc_title(doc: _Document) -> str:
    title = _fm_str(doc.front, "title", "name")
    if title:
        return title
    first = next((s.title for s in doc.root.walk() if s.level and s.title.strip()), None)
    return _clean_title(first) if first else Path(doc.source_name).stem


def _scope(section: _Section) -> _Section:
    """The document's only top section (its title heading) when the root holds nothing else."""
    return section.children[0] if not section.blocks and len(section.children) == 1 else section


def _fill(draft: _Draft, section: _Section, skip: set[int], *, heading: str) -> None:
    """Add a section's steps, summary, graphs, remediations and links to a draft."""
    merged = bool(draft.steps)
    units = _units(section, skip)
    for unit in units:
        label = _norm_label(unit.label) if unit.label is not None else None
        if label in _SKIP_LABELS:
            _links(draft, unit.blocks)
            continue
        if label in _SUMMARY_LABELS:
            text = "\n\n".join(b.markdown() for b in unit.blocks if not _is_rule_code(b))
            if text.strip():
                draft.summary.append(f"**{_clean_title(unit.label or '')}**\n{text}")
            _scan_blocks(draft, unit.blocks, _clean_title(unit.label or "") or heading)
            continue
        if label in _NOTE_LABELS:
            text = "\n\n".join(b.markdown() for b in unit.blocks if b.kind != "code")
            codes = [(b.lang, b.text) for b in unit.blocks if b.kind == "code" and not _is_rule_code(b)]
            if text.strip() or codes:
                draft.steps.append(_StepDraft(_clean_title(unit.label or "Notes"), text, codes))
            continue
        steps, summary = _unit_steps(unit, heading)
        draft.summary += [s for s in summary if s.strip()]
        if merged and heading:
            for step in steps:
                step.title = f"{heading}: {step.title}"
        draft.steps += steps
        _links(draft, unit.blocks)
    if heading:
        draft.sources.append(heading)


def _scan_blocks(draft: _Draft, blocks: list[_Block], title: str) -> None:
    for block in blocks:
        if block.kind == "code" and not _is_rule_code(block):
            draft.collector.scan_step(_StepDraft(title, "", [(block.lang, block.text)]))
        elif block.kind in ("para", "list", "table"):
            draft.collector.scan_step(_StepDraft(title, block.markdown()))


def _links(draft: _Draft, blocks: list[_Block]) -> None:
    for block in blocks:
        if block.kind != "code":
            for m in _MD_LINK.finditer(block.markdown()):
                draft.collector.link(_strip_emphasis(m.group(1)), m.group(2))


def _rule_summary(rule: _Rule) -> str:
    parts = []
    expr = re.sub(r"\s+", " ", rule.expr)
    if expr:
        parts.append(
            f"Rule `{rule.name}`: `{expr}`" + (f" for {rule.duration}" if rule.duration else "") + "."
        )
    for key in ("summary", "description", "message"):
        value = rule.annotations.get(key, "").strip()
        if value:
            parts.append(value)
    return "\n".join(parts)


def _alert_title(names: list[str], heading: str, rule: _Rule | None, descriptions: Sequence[str] = ()) -> str:
    """The heading when it is words ("High Error Rate"), else the alert name with the
    rule's summary annotation or the runbook's description of the alert."""
    name = " / ".join(names)
    clean = re.sub(r"\s*\([^()]*\)$", "", _clean_title(heading))
    if clean and " " in clean and not re.match(r"(?i)^alert\b", clean):
        return clean if any(n in clean for n in names) else f"{clean} ({name})"
    summary = rule.annotations.get("summary", "").strip() if rule else ""
    summary = summary or next((_strip_emphasis(d) for d in descriptions if d.strip()), "")
    return f"{name}: {summary}" if summary else name


# --------------------------------------------------------------------------- procedure sections


def _procedure_label(label: str) -> bool:
    norm = _norm_label(label)
    return norm in _PROC_LABELS or norm.split(" ")[0] in _PROC_LABELS


def _is_procedure(section: _Section) -> bool:
    """Labels like Symptoms/Diagnosis/Resolution (one bold label, or two sub-headings), or
    at least two numbered steps with commands or an incident-like title."""
    if any(_procedure_label(lab[0]) for b in section.blocks if (lab := _label_of(b)) is not None):
        return True
    if sum(1 for child in section.children if _procedure_label(child.title)) >= 2:
        return True
    ordered = 0
    commands = False
    for block in section.blocks:
        if block.kind == "list":
            if block.ordered:
                ordered += len(block.items)
            for item in block.items:
                nested = _nested_ordered(item)
                if nested is not None:
                    ordered += len(nested.items)
            commands = commands or _list_has_commands(block)
        elif block.kind == "code" and not _is_rule_code(block):
            commands = True
    words = {_stem(w) for w in re.findall(r"[A-Za-z']+", _clean_title(section.title).lower())}
    title_hit = bool(words & {_stem(w) for w in _PROC_TITLE_WORDS})
    return ordered >= 2 and (title_hit or commands)


def _split_items(section: _Section) -> list[tuple[str, _Item]] | None:
    """A section that is one bullet list of incidents, each item a bold lead and a numbered
    procedure: one playbook per item."""
    lists = [b for b in section.blocks if b.kind == "list"]
    if len(lists) != 1 or lists[0].ordered or section.children or len(lists[0].items) < 2:
        return None
    found: list[tuple[str, _Item]] = []
    for item in lists[0].items:
        nested = _nested_ordered(item)
        if nested is None or len(nested.items) < 2 or not item.blocks or item.blocks[0].kind != "para":
            return None
        title, _ = _first_sentence(item.blocks[0].text)
        found.append((title, item))
    return found


_TOKEN_STOP = _words(
    """
    alert alerts problem issue issues runbook the a an of in on and for to is are not scenario
    procedure common
    """
)


def _tokens(text: str) -> set[str]:
    words = _camel_words(text) if " " not in text and _camel_alert(text) else re.findall(r"[A-Za-z]+", text)
    return {_stem(w) for w in words if w.lower() not in _TOKEN_STOP and not w.isdigit()}


# --------------------------------------------------------------------------- the importer


def _parse(markdown: str, source_name: str) -> _Document:
    front, body = _front_matter(markdown.replace("\r\n", "\n"))
    body = body.expandtabs(4)
    lines = body.splitlines()
    rules = _alert_rules(lines)
    if not _is_markdown(body) and not front:
        body = _plain_to_markdown(body)
    root = _sections(_parse_blocks(body.splitlines()))
    ns = _fm_str(front, "namespace", "k8s_namespace", "kubernetes_namespace")
    default_ns = ns.lower() if ns and _DNS_LABEL.fullmatch(ns.lower()) and len(ns) <= 63 else "default"
    system = _system_slug(front, root, source_name, body)
    return _Document(source_name, front, root, system, default_ns, rules)


def _new_draft(doc: _Document, title: str, alerts: list[str], *, on_demand: bool = False) -> _Draft:
    return _Draft(title=title, alerts=list(alerts), collector=_Collector(doc.default_ns), on_demand=on_demand)


def _alert_drafts(doc: _Document) -> list[_Draft]:
    drafts: list[_Draft] = []
    by_name: dict[str, _Draft] = {}

    def draft_for(names: list[str], title: str) -> _Draft:
        existing = next((by_name[n] for n in names if n in by_name), None)
        if existing is None:
            existing = _new_draft(doc, title, names)
            drafts.append(existing)
        for name in names:
            if name not in existing.alerts:
                existing.alerts.append(name)
            by_name[name] = existing
        return existing

    for rule in doc.rules:
        draft = draft_for([rule.name], _alert_title([rule.name], "", rule))
        if draft.has_rule:
            continue
        draft.has_rule = True
        severity = map_severity(rule.severity) if rule.severity else None
        draft.severity = draft.severity or severity
        draft.summary.append(_rule_summary(rule))
        if rule.expr:
            title = rule.annotations.get("summary", "").strip() or f"{rule.name} expression"
            if not draft.collector.graph(title, re.sub(r"\s+", " ", rule.expr)):
                draft.graph_alert_expr = True
        for key, title in (
            ("runbook_url", "Runbook"),
            ("dashboard_url", "Dashboard"),
            ("dashboard", "Dashboard"),
        ):
            url = rule.annotations.get(key, "").strip()
            if url.startswith(("http://", "https://")):
                draft.collector.link(title, url)

    # sections naming alerts (heading, Alert: lines, front matter for the whole document)
    fm_alerts = _fm_alerts(doc.front)
    infos: dict[int, _AlertInfo] = {}
    order: list[_Section] = []
    for section in doc.root.walk():
        if section is doc.root:
            info = _AlertInfo(
                names=fm_alerts, severity=_severity_of(_fm_str(doc.front, "severity", "priority") or "")
            )
        else:
            info = _heading_alert(section.title)
            lines = _line_alerts(section.blocks)
            if not info.names:
                info.names = lines.names
            info.severity = info.severity or lines.severity
            info.expressions = lines.expressions
            info.descriptions = lines.descriptions
        if info.names:
            infos[id(section)] = info
            order.append(section)
    scope = _scope(doc.root)
    if id(doc.root) in infos and scope is not doc.root and id(scope) in infos:
        # front matter names the alert of a document whose only top section names one too
        root_info, inner = infos.pop(id(doc.root)), infos[id(scope)]
        inner.names += [n for n in root_info.names if n not in inner.names]
        inner.severity = inner.severity or root_info.severity
        order.remove(doc.root)
    alert_ids = set(infos)
    for section in order:
        info = infos[id(section)]
        scope = _scope(section) if section is doc.root else section
        heading = _fm_str(doc.front, "title") if section is doc.root else section.title
        heading = heading or (_doc_title(doc) if section is doc.root else "")
        named = next((r for r in doc.rules if r.name in info.names), None)
        draft = draft_for(info.names, _alert_title(info.names, heading or "", named, info.descriptions))
        draft.severity = draft.severity or info.severity
        for expr in info.expressions:
            draft.collector.graph(f"{info.names[0]} alert expression", expr)
        if section is doc.root:
            description = _fm_str(doc.front, "summary", "description")
            if description:
                draft.summary.append(description)
        _fill(draft, scope, alert_ids - {id(section)}, heading=_clean_title(heading or ""))

    # procedures that name no alert but whose title resembles an alert's name
    if drafts:
        for section in _procedure_sections(doc.root, alert_ids):
            tokens = _tokens(_clean_title(section.title))
            best: tuple[float, _Draft] | None = None
            for draft in drafts:
                for name in draft.alerts:
                    alert_tokens = _tokens(name)
                    common = len(tokens & alert_tokens)
                    score = common / max(1, len(alert_tokens))
                    if common >= 2 and score >= 0.6 and (best is None or score > best[0]):
                        best = (score, draft)
            if best is not None:
                draft = best[1]
                draft.summary.append(f"Runbook: {_clean_title(section.title)}.")
                _fill(draft, section, alert_ids, heading=_clean_title(section.title))
    for draft in drafts:
        if not draft.has_rule and not draft.collector.graphs:
            draft.graph_alert_expr = True
    return drafts


def _procedure_sections(root: _Section, alert_ids: set[int]) -> list[_Section]:
    """Top-most procedure sections outside the alert sections."""
    found: list[_Section] = []

    def has_alerts(section: _Section) -> bool:
        return any(id(s) in alert_ids for s in section.walk())

    def visit(section: _Section) -> None:
        if id(section) in alert_ids:
            return
        if section.level and not has_alerts(section) and _is_procedure(section):
            found.append(section)
            return
        for child in section.children:
            visit(child)

    visit(root)
    return found


def _on_demand_drafts(doc: _Document) -> list[_Draft]:
    drafts: list[_Draft] = []
    for section in _procedure_sections(doc.root, set()):
        split = _split_items(section)
        if split is not None:
            for title, item in split:
                draft = _new_draft(doc, title, [], on_demand=True)
                first = item.blocks[0].text if item.blocks else ""
                _, rest = _first_sentence(first)
                if rest.strip():
                    draft.summary.append(rest)
                nested = _nested_ordered(item)
                assert nested is not None
                for sub in nested.items:
                    draft.steps += _item_steps(sub)
                for block in item.blocks[1:]:
                    if block is not nested:
                        draft.summary.append(block.markdown())
                draft.sources.append(f"{_clean_title(section.title)}: {title}")
                drafts.append(draft)
            continue
        draft = _new_draft(doc, _clean_title(section.title), [], on_demand=True)
        _fill(draft, section, set(), heading=_clean_title(section.title))
        drafts.append(draft)
    if not drafts:
        scope = _scope(doc.root)
        draft = _new_draft(doc, _doc_title(doc), [], on_demand=True)
        _fill(draft, scope, set(), heading=_doc_title(doc))
        if draft.steps:
            drafts.append(draft)
    return drafts


def _playbook(doc: _Document, draft: _Draft, name: str) -> dict[str, Any]:
    for step in draft.steps[:MAX_STEPS]:
        draft.collector.scan_step(step)
    data: dict[str, Any] = {"name": name, "title": _fit_title(draft.title), "system": doc.system}
    if draft.on_demand:
        data["on_demand"] = True
    else:
        data["match"] = {"alertname": draft.alerts[0] if len(draft.alerts) == 1 else list(draft.alerts)}
    if draft.severity is not None:
        data["severity"] = draft.severity.value
    origin = f"Draft imported from {doc.source_name}"
    if draft.sources:
        origin += " (" + "; ".join(dict.fromkeys(s for s in draft.sources if s)) + ")"
    if len(draft.steps) > MAX_STEPS:
        origin += f"; {len(draft.steps) - MAX_STEPS} more steps are in the runbook"
    origin = _fit(origin + ".", 600)
    body = _fit(
        "\n\n".join(dict.fromkeys(p.strip() for p in draft.summary if p.strip())), 3000 - len(origin) - 2
    )
    data["summary"] = f"{body}\n\n{origin}" if body else origin
    steps = [_step_dict(s) for s in draft.steps[:MAX_STEPS]]
    steps = [s for s in steps if _valid(Step, s)]
    if steps:
        data["steps"] = steps
    col = draft.collector
    if col.graphs:
        data["graphs"] = col.graphs
    if draft.graph_alert_expr and not draft.on_demand:
        data["graph_alert_expr"] = True
    if col.diagnostics:
        data["diagnostics"] = [_ordered(d, _DIAGNOSTIC_KEYS) for d in col.diagnostics]
    if col.remediations:
        data["remediations"] = [_ordered(r, _REMEDIATION_KEYS) for r in col.remediations]
    if col.links:
        data["links"] = col.links
    return _repair(data)


_DIAGNOSTIC_KEYS = ("kind", "title", "namespace", "target", "target_kind", "container", "tail_lines")
_REMEDIATION_KEYS = ("action", "title", "why", "approval", "params")


def _ordered(data: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: data[k] for k in keys if k in data} | {k: v for k, v in data.items() if k not in keys}


def _repair(data: dict[str, Any]) -> dict[str, Any]:
    """Drop whatever still fails the Playbook model (a safety net; normally nothing)."""
    for _ in range(50):
        try:
            Playbook.model_validate(data)
            return data
        except ValidationError as exc:
            errors = exc.errors()
            message = str(exc)
        loc = errors[0]["loc"]
        key = loc[0] if loc else None
        if key in ("steps", "graphs", "diagnostics", "remediations", "links") and len(loc) > 1:
            index = loc[1]
            if isinstance(key, str) and isinstance(index, int) and index < len(data.get(key, [])):
                del data[key][index]
                if not data[key]:
                    del data[key]
                continue
        if key in ("summary", "severity", "graph_alert_expr") and isinstance(key, str):
            data.pop(key, None)
            continue
        if key == "title":
            data["title"] = "Imported playbook"
            continue
        raise ValueError(f"cannot build a valid playbook {data.get('name')!r}: {message}")
    return data


def import_playbooks(markdown: str, source_name: str = "runbook.md") -> list[dict[str, Any]]:
    """Draft playbooks (plain data, ready for YAML) from a markdown or plain-text runbook."""
    doc = _parse(markdown, source_name)
    drafts = _alert_drafts(doc)
    if not drafts:
        drafts = _on_demand_drafts(doc)
    playbooks: list[dict[str, Any]] = []
    names: set[str] = set()
    for draft in drafts:
        base = _kebab(draft.alerts[0]) if draft.alerts else _slug(" ".join(_WORD.findall(draft.title)[:6]))
        base = base or "playbook"
        if base.split("-")[0] != doc.system.split("-")[0]:
            base = f"{doc.system}-{base}"  # prefixed with the system unless it already names it
        base = _slug(base, 59) or "playbook"
        name, n = base, 2
        while name in names:
            name = f"{base}-{n}"
            n += 1
        names.add(name)
        playbooks.append(_playbook(doc, draft, name))
    return playbooks


# --------------------------------------------------------------------------- YAML output


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str_representer)


def import_runbook(markdown: str, *, source_name: str = "runbook.md") -> str:
    """Draft playbooks as YAML (a list), with a header saying what to review."""
    playbooks = import_playbooks(markdown, source_name)
    source = re.sub(r"[\x00-\x1f\x7f]", " ", source_name)
    alerts = sum(1 for p in playbooks if not p.get("on_demand"))
    counts = {k: sum(len(p.get(k, [])) for p in playbooks) for k in ("steps", "graphs", "remediations")}
    header = [
        "# yaml-language-server: $schema=./schema.json",
        "#",
        f"# DRAFT playbooks generated by `incidentbot playbooks import` from {source}.",
        f"# {len(playbooks)} playbook(s): {alerts} matched on alerts, {len(playbooks) - alerts} on demand;",
        f"# {counts['steps']} steps, {counts['graphs']} graphs, {counts['remediations']} remediation proposals.",
        "#",
        "# Review before use:",
        "#   - match: the alert names (and add label matchers if another system uses the same name);",
        "#     on_demand playbooks are procedures that named no alert.",
        "#   - system, name, title and severity (taken from headings, front matter and rule labels).",
        "#   - steps: text and code are copied from the runbook; kubectl exec and unrecognised",
        "#     commands stay text. Add `check:` queries where a step can be verified.",
        "#   - graphs: queries, thresholds and units are guessed; $label is the alert's label.",
        "#   - remediations: namespaces (${namespace:-default} when the runbook gave none),",
        "#     names converted from placeholders ($deployment, $pod, $node ...), replicas and",
        "#     resource values, and the approval rule in policy.yaml each action uses.",
        "#   - diagnostics: read-only kubectl commands the runbook mentions.",
        "# Validate with: incidentbot playbooks validate <dir with this file and policy.yaml>",
        "",
    ]
    if not playbooks:
        return "\n".join([*header[:3], "# No alert sections or procedures were found.", "", "[]", ""])
    body = yaml.dump(playbooks, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(header) + body
