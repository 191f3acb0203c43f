"""PromQL in runbooks: which text is a query, the queries of a code block, and the unit a
graph of a query is probably in."""

from __future__ import annotations

import re

from bot.tools.importer.shell import is_command
from bot.tools.importer.text import strip_list_marker

PROMQL_LANGS = frozenset({"promql", "prometheus", "prom", "metricsql"})
_PROMQL_FUNC = re.compile(
    r"\b(?:rate|irate|increase|delta|idelta|deriv|histogram_quantile|sum|avg|min|max|count|topk|bottomk|"
    r"quantile|stddev|absent|absent_over_time|avg_over_time|max_over_time|min_over_time|sum_over_time|"
    r"count_over_time|quantile_over_time|last_over_time|clamp_max|clamp_min|clamp|predict_linear|"
    r"label_replace|label_join|changes|resets)\s*(?:\(|by\b|without\b)"
)
_SELECTOR = re.compile(r"(?<![$\w])[A-Za-z_:][A-Za-z0-9_:]*\{[^{}\n]*\}")
_PROSE = re.compile(r"(?:\b[A-Za-z]{2,}\b[ ,]+){4}")
# A line continues the previous one when that one ends with an operator or keyword, or when
# it starts with one (multi-line queries are common in runbooks).
_ENDS_OPEN = re.compile(
    r"(?:[-+*/(,^%]|\b(?:and|or|unless|by|without|on|ignoring|offset|bool)"
    # a grouping clause waits for what it groups: `sum without(a, b)` / `> 5 and on()`
    r"|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\))$"
)
_STARTS_CONTINUED = re.compile(
    r"^(?:[-+*/)^%\[@]|(?:and|or|unless|by|without|on|ignoring|offset|group_left|"
    r"group_right|bool)\b|[<>=!]=?)"
)
_RATE = re.compile(r"\b(?:i?rate)\s*\(")


def promql_like(text: str) -> bool:
    s = text.strip()
    if not s or len(s) > 4000 or "://" in s:
        return False
    if is_command(s) or s.startswith(("-", "$", "/", "#", "{{")):
        return False
    if re.search(r"\{\s*(?:\.\.\.|…)\s*\}", s):
        return False  # `metric{...}`: an elided selector, not a query
    if re.search(r"\bSELECT\b|\bFROM\b|count\(\*\)|\|=|\|~|\|\s*(?:json|logfmt|line_format|pattern)\b", s):
        return False  # SQL and LogQL look like PromQL to the patterns below
    return _PROMQL_FUNC.search(s) is not None or _SELECTOR.search(s) is not None


def bare_promql(line: str) -> bool:
    """A text line that is a PromQL expression and not a sentence."""
    s = strip_list_marker(line)
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', s)
    if re.search(r"\.\s+[A-Z][a-z]", unquoted):
        return False  # two sentences ("Always increase by 1. This is ...")
    return promql_like(s) and "`" not in s and _PROSE.search(re.sub(r"\([^()]*\)", "", s)) is None


def promql_queries(code: str) -> list[tuple[str, str]]:
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
        if current and not _continues(current, line):
            flush()
        current.append(line)
    flush()
    return found


def _continues(current: list[str], line: str) -> bool:
    """Whether `line` goes on with the query of the lines in `current`."""
    opens = sum(x.count("(") - x.count(")") for x in current)
    return opens > 0 or bool(_ENDS_OPEN.search(current[-1]) or _STARTS_CONTINUED.match(line))


def guess_unit(query: str) -> str:
    q = query.lower()
    if re.search(r"\*\s*100\b", q) or re.search(r"percent|_pct\b|_percentage", q):
        return "%"
    metrics = re.findall(r"[a-z_:][a-z0-9_:]*", q)
    if any(m.endswith(("_seconds", "_seconds_bucket")) for m in metrics):
        return "s"
    if "histogram_quantile" in q:
        milliseconds = any(m.endswith("_milliseconds_bucket") or m.endswith("_ms_bucket") for m in metrics)
        return "ms" if milliseconds else ""
    top_division = re.search(r"(?<![/*])/(?![/*])", re.sub(r"\[[^\]]*\]", "", q)) is not None
    if top_division:
        sums = [m for m in metrics if m.endswith("_seconds_sum")]
        if sums and any(m.endswith("_seconds_count") for m in metrics):
            return "s"  # an average duration: _seconds_sum / _seconds_count
        return "ratio"
    return _metric_unit(q, metrics)


def _metric_unit(q: str, metrics: list[str]) -> str:
    """The unit of a query that divides nothing, from its metrics' name suffixes."""
    if any(m.endswith(("_ratio", "_hit_rate")) for m in metrics):
        return "ratio"
    if any(m.endswith(("_bytes", "_bytes_total")) for m in metrics):
        return "bytes/s" if _RATE.search(q) else "bytes"
    if any(m.endswith("_seconds_total") for m in metrics) and _RATE.search(q):
        return "s/s"
    if _RATE.search(q) and any(m.endswith("_total") for m in metrics):
        return "req/s" if "request" in q else "/s"
    if any("_usd" in m or "cost" in m for m in metrics):
        return "USD"
    if any(m.endswith(("_seconds", "_duration")) for m in metrics):
        return "s"
    return ""
