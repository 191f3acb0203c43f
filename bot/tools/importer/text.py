"""Text helpers the importer's modules share: word sets, markdown emphasis, titles, slugs,
and fitting text into a template field of bounded length."""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.core.templating import escape_template


def word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


def phrase_set(text: str) -> frozenset[str]:
    """Comma-separated phrases, each with its whitespace collapsed."""
    return frozenset(" ".join(p.split()) for p in text.split(",") if p.strip())


WORD = re.compile(r"[A-Za-z0-9]+")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_:.-]*")
LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
MD_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_LIST_MARKER = re.compile(r"^(?:[-*+]|\d+[.)])\s+")


def indent_width(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def dedent_line(line: str, amount: int) -> str:
    return line[min(amount, indent_width(line)) :]


def dedent_lines(lines: Sequence[str]) -> list[str]:
    """The lines without their common indentation; blank lines become empty."""
    widths = [indent_width(line) for line in lines if line.strip()]
    cut = min(widths, default=0)
    return [line[cut:] if line.strip() else "" for line in lines]


def next_non_blank(lines: Sequence[str], k: int) -> int:
    """The index of the first non-blank line from `k` on (``len(lines)`` when none)."""
    while k < len(lines) and not lines[k].strip():
        k += 1
    return k


def strip_list_marker(line: str) -> str:
    """A line without its leading bullet or ``1.`` marker (and surrounding spaces)."""
    return _LIST_MARKER.sub("", line.strip())


def strip_emphasis(text: str) -> str:
    text = MD_LINK.sub(r"\1", text)
    text = re.sub(r"\[([^\]\n]+)\]\([^)\n]*\)", r"\1", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    return text.replace("**", "").strip()


def clean_title(text: str) -> str:
    """A heading or label as plain words: emphasis, numbering and a trailing colon removed."""
    text = strip_emphasis(text)
    text = re.sub(r"^(?:\d+(?:\.\d+)*[.)]?|[A-Z][.)])\s+", "", text)
    text = re.sub(r"^(?:step\s+\d+\s*[:.)-]\s*)", "", text, flags=re.IGNORECASE)
    return text.strip().rstrip(":").strip()


def first_sentence(text: str) -> tuple[str, str]:
    """(title, rest) of an item's first paragraph."""
    flat = " ".join(x.strip() for x in text.splitlines())
    m = re.match(r"^(?:\*\*|__)(?P<t>[^*_].*?)(?:\*\*|__)\s*[:.\-–—]?\s*(?P<rest>.*)$", flat)
    if m:
        return clean_title(m["t"]), m["rest"].strip()
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
                more, rest = first_sentence(rest)
                return clean_title(f"{head}: {more}"), rest
            return clean_title(head), rest
    return clean_title(flat), ""


def camel_words(name: str) -> list[str]:
    return _CAMEL.findall(name)


def slugify(text: str, limit: int = 63) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if len(words) > limit:
        cut = words[:limit]
        words = cut.rsplit("-", 1)[0] if "-" in cut[limit // 2 :] else cut
    return words.strip("-")


_COMPOUNDS = re.compile(
    r"GitHub|GitLab|PostgreSQL|MySQL|MongoDB|RabbitMQ|PagerDuty|OpenSearch|ElasticSearch|OAuth|GraphQL|"
    r"JavaScript|TypeScript|DevOps|FastAPI|NodeJS|CoreDNS|OpenAI|DynamoDB|BigQuery|ClickHouse|CockroachDB"
)


def kebab(alertname: str) -> str:
    """An alert name as a playbook name: ``PostgreSQLDown`` -> ``postgresql-down``."""
    name = _COMPOUNDS.sub(lambda m: m.group(0).capitalize(), alertname)
    return "-".join(w.lower() for w in camel_words(name)) or slugify(alertname)


def fit_template(text: str, limit: int) -> str:
    """`text` as a template (``$`` doubled) of at most `limit` characters."""
    text = "\n".join(line.rstrip() for line in text.strip().splitlines())
    while True:
        template = escape_template(text)
        if len(template) <= limit:
            return template
        over = len(template) - limit
        text = text[: max(0, len(text) - over - 1)].rstrip() + "…"


def shorten(text: str, limit: int) -> str:
    """Cut at a word boundary, never inside an inline code span."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 2]
    cut = cut.rsplit(" ", 1)[0] if " " in cut[limit // 3 :] else cut
    if cut.count("`") % 2:
        cut = cut[: cut.rfind("`")]
    return cut.rstrip(" ,;:-(") + " …"


def fit_title(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip() or "Step"
    if len(escape_template(text)) > 150:
        text = shorten(text, 146)
    return fit_template(text, 150)


def stem(word: str) -> str:
    word = word.lower()
    for suffix in ("ations", "ation", "ions", "ion", "ings", "ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word
