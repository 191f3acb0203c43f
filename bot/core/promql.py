"""PromQL cost control: a small scanner, and the checks a query passes before it reaches Prometheus.

Who wrote a query decides how far it is trusted:

- an ad hoc graph (``/incident graph``) and an alert's own expression (the ``g0.expr`` of its
  ``generatorURL``, which anyone who can post an alert chooses) are untrusted: `QueryGuard` runs
  every check below before the query is sent, and a refusal gives the reasons. An alert's
  expression is used at all only when its ``generatorURL`` names a configured Prometheus host;
- playbook queries come from reviewed files and are trusted at run time. `playbook_warnings`
  runs the same checks once at start-up so that an operator sees a costly playbook query in the
  log; the bundled playbooks produce none.

The checks (`query_problems`):

1. every vector selector names its metric (``up{job="api"}`` or ``{__name__="up"}``), and
   ``__name__`` is never matched by a regular expression: a selector such as ``{job=~".+"}``
   reads every series Prometheus has;
2. a subquery's resolution is not finer than the step of the graph it is drawn in, and it
   evaluates at most `Limits.max_subquery_points` points per series. Without a resolution
   (``[1h:]``) Prometheus uses its evaluation interval, unknown here, so only the range counts;
3. how far back the query reads — ranges, subquery ranges and positive offsets, added up along
   the nesting (``max_over_time(rate(x[1h])[23h:5m])`` reads 24 h back) — is at most
   `Limits.max_lookback_seconds`;
4. ``@ <timestamp>`` is refused (``@ start()`` and ``@ end()`` are fine): it can read any point of
   the history, whatever the graph's window.

The scanner (`scan`) knows just enough PromQL for that: strings (``"…"``, ``'…'`` with escapes,
raw backtick strings), ``#`` comments, ``{…}`` selectors with their matchers, ``[range]`` and
``[range:resolution]``, parentheses, ``@`` and ``offset``. What it cannot read is refused rather
than sent: Prometheus would not parse it either. Reasons are plain text that quote the query
(one line, clipped); `QueryRefused` escapes them for Slack.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from bot.core.blockkit import clip, escape
from bot.core.errors import UserError
from bot.core.playbooks import Playbook, generator_expression, parse_duration

__all__ = [
    "Limits",
    "Matcher",
    "QueryGuard",
    "QueryRefused",
    "ScanError",
    "Token",
    "TokenKind",
    "TrustedHosts",
    "TrustedSources",
    "format_seconds",
    "playbook_warnings",
    "query_problems",
    "scan",
]

DEFAULT_MAX_LOOKBACK_S = 24 * 3600.0
#: Prometheus' own limit on points per series of a range query; a subquery gets the same bound.
DEFAULT_MAX_SUBQUERY_POINTS = 11_000

_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Numbers (hex, decimal, exponent) and durations (5m, 1h30m) are one kind of token.
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?(?:[A-Za-z]+[0-9]*)*"
)
_OPERATOR = re.compile(r"==|!=|>=|<=|=~|!~|.", re.DOTALL)
_MATCH_OP = re.compile(r"=~|!~|!=|=")
_QUOTES = "\"'`"
# Words that never name a metric, so a `{` after them starts a selector without one.
_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
)
_FRAGMENT = 80


class TokenKind(StrEnum):
    IDENT = "identifier"
    NUMBER = "number"
    STRING = "string"
    SELECTOR = "selector"
    RANGE = "range"
    LPAREN = "("
    RPAREN = ")"
    AT = "@"
    OP = "operator"


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str


@dataclass(frozen=True, slots=True)
class Token:
    """One token; `matchers` for a `{…}` selector, the durations (seconds) for a `[…]`."""

    kind: TokenKind
    text: str
    pos: int
    matchers: tuple[Matcher, ...] = ()
    range_seconds: float = 0.0
    resolution_seconds: float | None = None
    subquery: bool = False


class ScanError(ValueError):
    """The text is not PromQL the scanner can read; the message says what and where."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(f"{message} (at character {pos + 1})")


class QueryRefused(UserError):
    """A query was refused before it reached Prometheus. `reasons` are plain text; the message
    (str) is the same, escaped for Slack."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = tuple(reasons)
        super().__init__(escape(self.plain))

    @property
    def plain(self) -> str:
        return "; ".join(self.reasons)


@dataclass(frozen=True, slots=True)
class Limits:
    max_lookback_seconds: float = DEFAULT_MAX_LOOKBACK_S
    max_subquery_points: int = DEFAULT_MAX_SUBQUERY_POINTS


def format_seconds(seconds: float) -> str:
    """A duration the way PromQL writes it: 100ms, 90s, 5m, 25h, 7d (days from two on)."""
    if seconds < 1 or seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    for unit, size, minimum in (("d", 86400, 2 * 86400), ("h", 3600, 3600), ("m", 60, 60)):
        if whole >= minimum and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


# --------------------------------------------------------------------------- the scanner


def scan(expr: str) -> list[Token]:
    """The tokens of `expr` (comments and whitespace dropped); raises ScanError."""
    return _Scanner(expr).tokens()


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        depth = 0
        while (token := self._next()) is not None:
            if token.kind is TokenKind.LPAREN:
                depth += 1
            elif token.kind is TokenKind.RPAREN:
                depth -= 1
                if depth < 0:
                    raise ScanError("unbalanced parentheses: `)` without `(`", token.pos)
            out.append(token)
        if depth:
            raise ScanError("unbalanced parentheses: `(` never closed", len(self.text))
        return out

    def _peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def _skip_space(self) -> None:
        text, n = self.text, len(self.text)
        while self.i < n:
            if text[self.i].isspace():
                self.i += 1
            elif text[self.i] == "#":
                end = text.find("\n", self.i)
                self.i = n if end < 0 else end + 1
            else:
                return

    def _next(self) -> Token | None:
        self._skip_space()
        start, ch = self.i, self._peek()
        if not ch:
            return None
        if ch in _QUOTES:
            self._string()
            return Token(TokenKind.STRING, self.text[start : self.i], start)
        if ch == "{":
            return self._selector()
        if ch == "[":
            return self._bracket()
        if ch in "]}":
            raise ScanError(f"unexpected `{ch}`", start)
        simple = {"(": TokenKind.LPAREN, ")": TokenKind.RPAREN, "@": TokenKind.AT}.get(ch)
        if simple is not None:
            self.i += 1
            return Token(simple, ch, start)
        for pattern, kind in (
            (_IDENT, TokenKind.IDENT),
            (_NUMBER, TokenKind.NUMBER),
            (_OPERATOR, TokenKind.OP),
        ):
            match = pattern.match(self.text, start)
            if match is not None:
                self.i = match.end()
                return Token(kind, match.group(), start)
        raise AssertionError("the operator pattern matches any character")  # pragma: no cover

    def _string(self) -> str:
        """Read a quoted string at the cursor; returns its text between the quotes."""
        text, start = self.text, self.i
        quote = text[start]
        j = start + 1
        while j < len(text):
            if text[j] == "\\" and quote != "`":
                j += 2
                continue
            if text[j] == quote:
                self.i = j + 1
                return text[start + 1 : j]
            j += 1
        raise ScanError("unterminated string", start)

    def _selector(self) -> Token:
        start = self.i
        self.i += 1
        matchers: list[Matcher] = []
        self._skip_space()
        while self._peek() != "}":
            matchers.append(self._matcher())
            self._skip_space()
            if self._peek() == ",":
                self.i += 1
                self._skip_space()
            elif self._peek() != "}":
                raise ScanError("cannot read the label matchers", self.i)
        self.i += 1
        return Token(TokenKind.SELECTOR, self.text[start : self.i], start, matchers=tuple(matchers))

    def _matcher(self) -> Matcher:
        quoted = self._peek() in _QUOTES if self._peek() else False
        if quoted:
            name = self._string()
        else:
            match = _LABEL.match(self.text, self.i)
            if match is None:
                raise ScanError("cannot read the label matchers", self.i)
            name, self.i = match.group(), match.end()
        self._skip_space()
        op = _MATCH_OP.match(self.text, self.i)
        if op is None:
            if quoted:  # {"metric.name", …}: a quoted metric name
                return Matcher("__name__", "=", name)
            raise ScanError("cannot read the label matchers", self.i)
        self.i = op.end()
        self._skip_space()
        if not self._peek() or self._peek() not in _QUOTES:
            raise ScanError("cannot read the label matchers: a value must be a quoted string", self.i)
        return Matcher(name, op.group(), self._string())

    def _bracket(self) -> Token:
        start = self.i
        end = self.text.find("]", start + 1)
        if end < 0:
            raise ScanError("`[` without a closing bracket", start)
        inner = self.text[start + 1 : end]
        self.i = end + 1
        parts = inner.split(":")
        if len(parts) > 2:
            raise ScanError(f"cannot read the duration `[{clip(inner, 40)}]`", start)
        token_text = self.text[start : self.i]
        range_s = _duration(parts[0], start)
        if len(parts) == 1:
            return Token(TokenKind.RANGE, token_text, start, range_seconds=range_s)
        resolution = parts[1].strip()
        return Token(
            TokenKind.RANGE,
            token_text,
            start,
            range_seconds=range_s,
            resolution_seconds=_duration(resolution, start) if resolution else None,
            subquery=True,
        )


def _duration(text: str, pos: int) -> float:
    try:
        return parse_duration(text.strip())
    except ValueError:
        raise ScanError(f"cannot read the duration `{clip(text.strip(), 40)}`", pos) from None


# --------------------------------------------------------------------------- the checks


def _fragment(text: str) -> str:
    """Query text fit to quote in a reason: one line, clipped, no backticks."""
    return clip(" ".join(text.split()), _FRAGMENT).replace("`", "'")


@dataclass(slots=True)
class _Frame:
    """One parenthesised level: how far back its finished operands and its current one read."""

    deepest: float = 0.0
    current: float = 0.0

    def new_operand(self, lookback: float = 0.0) -> None:
        self.deepest = max(self.deepest, self.current)
        self.current = lookback

    @property
    def total(self) -> float:
        return max(self.deepest, self.current)


class _Analysis:
    def __init__(self, tokens: list[Token], limits: Limits, step_seconds: float | None) -> None:
        self.tokens = tokens
        self.limits = limits
        self.step = step_seconds
        self.frames = [_Frame()]
        self.problems: list[str] = []

    def run(self) -> list[str]:
        i = 0
        while i < len(self.tokens):
            i = self._visit(i)
        lookback, most = self.frames[0].total, self.limits.max_lookback_seconds
        if lookback > most:
            self.problems.append(
                f"it looks back {format_seconds(lookback)} (ranges, subqueries and offsets added up),"
                f" more than the {format_seconds(most)} maximum"
            )
        return list(dict.fromkeys(self.problems))

    def _at(self, i: int) -> Token | None:
        return self.tokens[i] if i < len(self.tokens) else None

    def _visit(self, i: int) -> int:
        token = self.tokens[i]
        frame = self.frames[-1]
        if token.kind is TokenKind.IDENT:
            return self._ident(i)
        if token.kind is TokenKind.AT:
            return self._modifier(i)
        if token.kind is TokenKind.SELECTOR:
            self._selector(token, self._at(i - 1) if i else None)
            frame.new_operand()
        elif token.kind is TokenKind.RANGE:
            self._range(token)
            frame.current += token.range_seconds
        elif token.kind is TokenKind.LPAREN:
            self.frames.append(_Frame())
        elif token.kind is TokenKind.RPAREN:
            inner = self.frames.pop()
            self.frames[-1].new_operand(inner.total)
        return i + 1

    def _ident(self, i: int) -> int:
        word = self.tokens[i].text.lower()
        following = self._at(i + 1)
        if word == "offset":
            return self._offset(i + 1)
        if following is not None and following.kind in (TokenKind.LPAREN, TokenKind.SELECTOR):
            return i + 1  # a function name, a grouping keyword, or the metric of the next selector
        if word not in _KEYWORDS:
            self.frames[-1].new_operand()  # a bare metric name: a selector of its own
        return i + 1

    def _offset(self, i: int) -> int:
        sign = 1.0
        token = self._at(i)
        if token is not None and token.kind is TokenKind.OP and token.text in "+-":
            sign = -1.0 if token.text == "-" else 1.0
            i += 1
            token = self._at(i)
        if token is None or token.kind is not TokenKind.NUMBER:
            self.problems.append("cannot read the duration after `offset`")
            return i
        try:
            seconds = parse_duration(token.text)
        except ValueError:
            self.problems.append(f"cannot read the offset `{_fragment(token.text)}`")
            return i + 1
        if sign > 0:  # a negative offset reads ahead of the window, never further back
            self.frames[-1].current += seconds
        return i + 1

    def _modifier(self, i: int) -> int:
        name, opening, closing = self._at(i + 1), self._at(i + 2), self._at(i + 3)
        if (
            name is not None
            and name.kind is TokenKind.IDENT
            and name.text in ("start", "end")
            and opening is not None
            and opening.kind is TokenKind.LPAREN
            and closing is not None
            and closing.kind is TokenKind.RPAREN
        ):
            return i + 4
        self.problems.append(
            "`@ <time>` pins the query to a fixed moment of the history; use `@ start()`, `@ end()` or none"
        )
        return i + 1

    def _selector(self, token: Token, before: Token | None) -> None:
        named = before is not None and before.kind is TokenKind.IDENT and before.text.lower() not in _KEYWORDS
        names = [m for m in token.matchers if m.name == "__name__"]
        if any(m.op in ("=~", "!~") for m in names):
            self.problems.append(
                f"the selector `{_fragment(token.text)}` matches `__name__` by a regular expression:"
                " name one metric"
            )
        elif not named and not any(m.op == "=" and m.value for m in names):
            self.problems.append(
                f"the selector `{_fragment(token.text)}` has no metric name: name the metric,"
                " e.g. `http_requests_total{…}`"
            )

    def _range(self, token: Token) -> None:
        resolution = token.resolution_seconds
        if not token.subquery or resolution is None:
            return
        if resolution <= 0:
            self.problems.append(f"the subquery `{_fragment(token.text)}` has no usable resolution")
            return
        if self.step is not None and resolution < self.step:
            self.problems.append(
                f"the subquery `{_fragment(token.text)}` has a resolution of {format_seconds(resolution)},"
                f" finer than the graph's step ({format_seconds(self.step)})"
            )
        points = token.range_seconds / resolution
        if points > self.limits.max_subquery_points:
            self.problems.append(
                f"the subquery `{_fragment(token.text)}` evaluates {int(points)} points per series"
                f" (at most {self.limits.max_subquery_points})"
            )


def query_problems(expr: str, limits: Limits, *, step_seconds: float | None) -> list[str]:
    """Why `expr` must not be sent to Prometheus (empty: it may be). `step_seconds` is the
    step of the range query it is drawn with, None for an instant query."""
    try:
        tokens = scan(expr)
    except ScanError as exc:
        return [f"cannot read the query: {exc}"]
    return _Analysis(tokens, limits, step_seconds).run()


# --------------------------------------------------------------------------- trusted hosts

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOSTNAME = re.compile(r"[a-z0-9._-]+|[0-9a-f:.]+")


def _host_entry(item: str) -> tuple[str, int | None]:
    problem = f"{item!r} is not a host or host:port"
    parts = urlsplit(item if "://" in item else "//" + item)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(problem) from None
    host = parts.hostname
    if not host or parts.username is not None or not _HOSTNAME.fullmatch(host):
        raise ValueError(problem)
    if "://" not in item and parts.path:
        raise ValueError(problem)
    return host, port


def _url_host(url: str | None) -> tuple[str, int] | None:
    """(host, port) of an http(s) URL without user info, or None."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    return parts.hostname, port if port is not None else _DEFAULT_PORTS[parts.scheme]


@dataclass(frozen=True, slots=True)
class TrustedHosts:
    """Hosts whose URLs the bot trusts: (host, port) entries; port None matches any port."""

    entries: tuple[tuple[str, int | None], ...] = ()

    @classmethod
    def parse(cls, *values: str | None) -> TrustedHosts:
        """From URLs (``http://prometheus:9090``) or comma-separated ``host[:port]`` lists;
        raises ValueError naming a bad entry."""
        entries: list[tuple[str, int | None]] = []
        for value in values:
            for item in (value or "").split(","):
                if item.strip():
                    entries.append(_host_entry(item.strip()))
        return cls(tuple(dict.fromkeys(entries)))

    def allows(self, url: str | None) -> bool:
        where = _url_host(url)
        if where is None:
            return False
        host, port = where
        return any(host == h and (p is None or p == port) for h, p in self.entries)


@dataclass(frozen=True, slots=True)
class TrustedSources:
    """Where the links an alert carries may point: its generatorURL at a configured Prometheus,
    the Alertmanager externalURL at a configured Alertmanager."""

    prometheus: TrustedHosts = field(default_factory=TrustedHosts)
    alertmanager: TrustedHosts = field(default_factory=TrustedHosts)


# --------------------------------------------------------------------------- the guard


@dataclass(frozen=True, slots=True)
class QueryGuard:
    """The checks every untrusted query passes before it is sent (see the module docstring)."""

    limits: Limits = field(default_factory=Limits)
    prometheus_hosts: TrustedHosts = field(default_factory=TrustedHosts)

    def check(self, query: str, *, step_seconds: float | None = None) -> None:
        problems = query_problems(query, self.limits, step_seconds=step_seconds)
        if problems:
            raise QueryRefused(problems)

    def check_range(self, span: timedelta) -> None:
        most = self.limits.max_lookback_seconds
        if span.total_seconds() > most:
            raise QueryRefused(
                [
                    f"the range {format_seconds(span.total_seconds())} is longer than the {format_seconds(most)} maximum"
                ]
            )

    def earliest(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.limits.max_lookback_seconds)

    def clamp(self, start: datetime, now: datetime) -> datetime:
        """`start` moved into [now - max_lookback, now]."""
        return min(max(start, self.earliest(now)), now)

    def source_problem(self, generator_url: str) -> str | None:
        """Why the alert's generatorURL must not be used (None: it may, or there is none)."""
        if not generator_url or self.prometheus_hosts.allows(generator_url):
            return None
        try:
            where = urlsplit(generator_url).netloc
        except ValueError:
            where = ""
        if not where:
            return "its generatorURL is not an http(s) URL"
        return (
            f"its generatorURL names `{_fragment(where)}`, which is not a configured Prometheus"
            " (PROMETHEUS_URL or PROMETHEUS_HOSTS)"
        )

    def alert_expression(self, generator_url: str, *, step_seconds: float | None = None) -> str:
        """The alert's own expression, when its generatorURL names a configured Prometheus and
        the expression passes the checks; raises QueryRefused otherwise."""
        problem = self.source_problem(generator_url)
        if problem is not None:
            raise QueryRefused([problem])
        expr = generator_expression(generator_url)
        if expr is None:
            raise QueryRefused(["the alert carries no expression (no g0.expr in its generatorURL)"])
        self.check(expr, step_seconds=step_seconds)
        return expr


def playbook_warnings(playbooks: Iterable[Playbook], limits: Limits) -> list[str]:
    """The checks run over trusted playbook queries at start-up: one line per costly query."""
    warnings: list[str] = []
    for playbook in playbooks:
        places = [(f"graph {n} ({g.title})", g.query) for n, g in enumerate(playbook.graphs, 1)]
        places += [
            (f"step {n} check", step.check.query)
            for n, step in enumerate(playbook.steps, 1)
            if step.check is not None
        ]
        for place, query in places:
            problems = query_problems(query, limits, step_seconds=None)
            if problems:
                warnings.append(f"playbook {playbook.name}, {place}: " + "; ".join(problems))
    return warnings
