"""Safe templating of alert label values into playbook text, PromQL, names and URLs.

Templates reference an alert's labels as ``$name``, ``${name}`` or ``${name:-default}``
(the default is used only when the label is absent). ``$$`` is a literal ``$``; a ``$``
followed by anything else (``$1``, ``$(date)``) is literal too. A missing label with no
default is a `TemplateError`.

Label values are data, never code. There is ONE substitution function, `substitute`, and
every use names its context, which decides how a value is made safe:

- `Context.PROMQL`: a value may only be substituted inside a quoted string literal
  (``{namespace="$namespace"}``); it is escaped for that literal (backslash, quote,
  newline, control characters), and inside the right-hand side of ``=~``/``!~`` it is
  regex-quoted first so it matches itself only. A variable outside a string literal,
  or inside a raw backtick string, is rejected (at playbook validation time already).
- `Context.K8S_NAME` / `Context.K8S_LABEL`: every value and the result must be a
  DNS-1123 subdomain / label (the regexes of `bot.core.actions`); otherwise the
  error names the label and the bad value.
- `Context.TEXT`: markdown shown in Slack; ``&``, ``<`` and ``>`` in values are escaped
  so a value cannot mention ``<!channel>`` or forge a link.
- `Context.URL`: values are percent-encoded (nothing is left unescaped, not even ``/``).
- `Context.PLAIN`: no escaping, for typed remediation parameters (environment values,
  exec arguments) that a pydantic model or an allow-list pattern validates afterwards.

The template text itself is trusted (it comes from reviewed playbook files); only values
are escaped. Use `escape_template` to embed untrusted text as a literal template.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

from bot.core.actions import DNS1123_LABEL, DNS1123_SUBDOMAIN
from bot.core.errors import UserError

__all__ = [
    "Context",
    "TemplateError",
    "Variable",
    "check_template",
    "escape_promql_string",
    "escape_regex",
    "escape_slack",
    "escape_template",
    "render_k8s_name",
    "render_plain",
    "render_promql",
    "render_text",
    "render_url",
    "sample_label_sets",
    "sample_value",
    "substitute",
    "template_variables",
]


class TemplateError(UserError, ValueError):
    """A template could not be rendered safely. `label`/`value` name the culprit if any."""

    def __init__(self, message: str, *, label: str | None = None, value: str | None = None) -> None:
        super().__init__(message)
        self.label = label
        self.value = value


class Context(StrEnum):
    PROMQL = "promql"
    K8S_NAME = "k8s_name"
    K8S_LABEL = "k8s_label"
    TEXT = "text"
    URL = "url"
    PLAIN = "plain"


@dataclass(frozen=True, slots=True)
class Variable:
    """One ``$name`` reference in a template; `default` is set for ``${name:-default}``."""

    name: str
    default: str | None
    start: int
    end: int


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# $$ | $name | ${name} | ${name:-default}
_TOKEN = re.compile(
    rf"\$(?:(?P<dollar>\$)|(?P<bare>{_NAME})|\{{(?P<braced>{_NAME})(?::-(?P<default>[^}}]*))?\}})"
)
_DNS_SUBDOMAIN = re.compile(DNS1123_SUBDOMAIN)
_DNS_LABEL = re.compile(DNS1123_LABEL)
_K8S_CHARS = {Context.K8S_NAME: re.compile(r"[a-z0-9.-]*"), Context.K8S_LABEL: re.compile(r"[a-z0-9-]*")}
_K8S_MAX = {Context.K8S_NAME: 253, Context.K8S_LABEL: 63}


def _scan(template: str, start: int = 0, end: int | None = None) -> Iterator[Variable | str | int]:
    """Yield literal text chunks, Variables, and for ``$$`` the int position (a literal $)."""
    stop = len(template) if end is None else end
    pos = start
    while pos < stop:
        dollar = template.find("$", pos, stop)
        if dollar < 0:
            yield template[pos:stop]
            return
        if dollar > pos:
            yield template[pos:dollar]
        m = _TOKEN.match(template, dollar, stop)
        if m is None:
            if template.startswith("${", dollar):
                raise TemplateError(
                    f"malformed variable at column {dollar + 1}: write ${{name}} or ${{name:-default}} "
                    "(names are letters, digits and _), or $$ for a literal $"
                )
            yield "$"
            pos = dollar + 1
            continue
        if m.group("dollar"):
            yield dollar
        else:
            name = m.group("bare") or m.group("braced")
            yield Variable(name=name, default=m.group("default"), start=dollar, end=m.end())
        pos = m.end()


def template_variables(template: str) -> list[Variable]:
    """The variables a template references, in order (raises TemplateError if malformed)."""
    return [part for part in _scan(template) if isinstance(part, Variable)]


def _lookup(var: Variable, labels: Mapping[str, str]) -> str:
    value = labels.get(var.name)
    if value is None:
        if var.default is not None:
            return var.default
        raise TemplateError(f"the alert has no label {var.name!r}", label=var.name)
    if not isinstance(value, str):
        raise TemplateError(f"label {var.name!r} is not a string", label=var.name)
    return value


# --------------------------------------------------------------------------- escapers


def escape_slack(text: str) -> str:
    """Escape Slack's control characters (&, <, >) so text is shown, never interpreted."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_template(text: str) -> str:
    """Make arbitrary text a template that renders to exactly that text ($ -> $$)."""
    return text.replace("$", "$$")


_REGEX_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def escape_regex(value: str) -> str:
    """Quote RE2 metacharacters (like Go's regexp.QuoteMeta) so a value matches only itself."""
    return _REGEX_META.sub(r"\\\1", value)


_SIMPLE_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\a": "\\a", "\b": "\\b"}
_SIMPLE_ESCAPES |= {"\f": "\\f", "\v": "\\v"}


def escape_promql_string(value: str, quote_char: str = '"') -> str:
    """Escape a value for the inside of a PromQL (Go-style) quoted string literal."""
    out: list[str] = []
    for ch in value:
        if ch in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[ch])
        elif ch == quote_char:
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif ch in "\u2028\u2029\ufeff":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


# --------------------------------------------------------------------------- contexts


def _render_simple(template: str, labels: Mapping[str, str], escape: Callable[[str, Variable], str]) -> str:
    out: list[str] = []
    for part in _scan(template):
        if isinstance(part, Variable):
            out.append(escape(_lookup(part, labels), part))
        elif isinstance(part, int):
            out.append("$")
        else:
            out.append(part)
    return "".join(out)


def _render_k8s(template: str, labels: Mapping[str, str], context: Context) -> str:
    chars = _K8S_CHARS[context]
    kind = "DNS-1123 subdomain" if context is Context.K8S_NAME else "DNS-1123 label"
    used: list[tuple[str, str]] = []

    def check(value: str, var: Variable) -> str:
        if chars.fullmatch(value) is None or len(value) > _K8S_MAX[context]:
            source = (
                f"label {var.name!r} has value" if var.name in labels else f"default of ${{{var.name}}} is"
            )
            raise TemplateError(
                f"{source} {value!r}, which cannot be part of a Kubernetes name "
                f"(a {kind}: lowercase letters, digits{', dots' if context is Context.K8S_NAME else ''} "
                f"and '-', at most {_K8S_MAX[context]} characters)",
                label=var.name,
                value=value,
            )
        used.append((var.name, value))
        return value

    result = _render_simple(template, labels, check)
    pattern = _DNS_SUBDOMAIN if context is Context.K8S_NAME else _DNS_LABEL
    if len(result) > _K8S_MAX[context] or pattern.fullmatch(result) is None:
        if used:
            culprits = ", ".join(f"label {name!r} = {value!r}" for name, value in used)
            name, value = used[0]
            raise TemplateError(
                f"{culprits} gives {result!r}, which is not a valid Kubernetes name ({kind})",
                label=name,
                value=value,
            )
        raise TemplateError(f"{result!r} is not a valid Kubernetes name ({kind})")
    return result


def _regex_context(out: list[str]) -> bool:
    """Whether the code emitted so far ends with a regex matcher operator (=~ or !~)."""
    tail = "".join(out[-8:]).rstrip()
    return tail.endswith(("=~", "!~"))


def _string_end(template: str, start: int, quote_char: str) -> int:
    """The index of the quote closing the string literal opened at `start`."""
    j, n = start + 1, len(template)
    while j < n and template[j] != quote_char:
        if template[j] == "\\":
            j += 2
        elif template[j] == "\n":
            raise TemplateError(f"unterminated string literal at column {start + 1}")
        else:
            j += 1
    if j >= n:
        raise TemplateError(f"unterminated string literal at column {start + 1}")
    return j


def _promql_string(template: str, i: int, labels: Mapping[str, str], out: list[str]) -> int:
    """A quoted string literal: label values are escaped for it (and as a regex after =~/!~)."""
    quote_char = template[i]
    regex = _regex_context(out)
    j = _string_end(template, i, quote_char)
    out.append(quote_char)
    for part in _scan(template, i + 1, j):
        if isinstance(part, Variable):
            value = _lookup(part, labels)
            out.append(escape_promql_string(escape_regex(value) if regex else value, quote_char))
        elif isinstance(part, int):
            out.append("$")
        else:
            out.append(part)
    out.append(quote_char)
    return j + 1


def _promql_raw_string(template: str, i: int, out: list[str]) -> int:
    j = template.find("`", i + 1)
    if j < 0:
        raise TemplateError(f"unterminated raw string at column {i + 1}")
    if any(isinstance(p, Variable | int) for p in _scan(template[i + 1 : j])):
        raise TemplateError(
            f"variable inside a raw `backtick` string at column {i + 1}: values cannot be "
            'escaped there; use a "double-quoted" string'
        )
    out.append(template[i : j + 1])
    return j + 1


def _promql_code(template: str, i: int, out: list[str]) -> int:
    """Code outside strings, up to the next comment, string or `$` (copied verbatim)."""
    if template[i] == "$":
        m = _TOKEN.match(template, i)
        what = m.group(0) if m else "$"
        raise TemplateError(
            f"{what} at column {i + 1} is outside a quoted string: label values may only be "
            f'substituted inside a string literal, e.g. {{namespace="$namespace"}}'
        )
    if template[i] == "#":  # a comment, to the end of the line
        j = template.find("\n", i)
        j = len(template) if j < 0 else j
    else:
        j = i + 1
        while j < len(template) and template[j] not in "#\"'`$":
            j += 1
    out.append(template[i:j])
    return j


def _render_promql(template: str, labels: Mapping[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch in "\"'":
            i = _promql_string(template, i, labels, out)
        elif ch == "`":
            i = _promql_raw_string(template, i, out)
        else:
            i = _promql_code(template, i, out)
    return "".join(out)


def substitute(template: str, labels: Mapping[str, str], context: Context) -> str:
    """Fill ``$name`` references with label values, made safe for `context`."""
    if context is Context.PROMQL:
        return _render_promql(template, labels)
    if context in (Context.K8S_NAME, Context.K8S_LABEL):
        return _render_k8s(template, labels, context)
    if context is Context.TEXT:
        return _render_simple(template, labels, lambda value, _var: escape_slack(value))
    if context is Context.URL:
        return _render_simple(template, labels, lambda value, _var: quote(value, safe=""))
    return _render_simple(template, labels, lambda value, _var: value)


def render_promql(template: str, labels: Mapping[str, str]) -> str:
    return substitute(template, labels, Context.PROMQL)


def render_k8s_name(template: str, labels: Mapping[str, str], *, dns_label: bool = False) -> str:
    """A Kubernetes object name (DNS-1123 subdomain), or with dns_label a namespace/container."""
    return substitute(template, labels, Context.K8S_LABEL if dns_label else Context.K8S_NAME)


def render_text(template: str, labels: Mapping[str, str]) -> str:
    return substitute(template, labels, Context.TEXT)


def render_url(template: str, labels: Mapping[str, str]) -> str:
    return substitute(template, labels, Context.URL)


def render_plain(template: str, labels: Mapping[str, str]) -> str:
    return substitute(template, labels, Context.PLAIN)


# --------------------------------------------------------------------------- validation


def sample_value(name: str) -> str:
    """A placeholder value for label `name` that is a valid DNS-1123 label."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return f"sample-{slug}"[:63].rstrip("-") or "sample"


def sample_label_sets(*templates: str) -> list[dict[str, str]]:
    """Label sets to validate templates with: every label present, then only those with no
    default (so each ``${name:-default}`` default is rendered and checked too)."""
    variables = [v for template in templates for v in template_variables(template)]
    every = {v.name: sample_value(v.name) for v in variables}
    sets = [every]
    if any(v.default is not None for v in variables):
        required = {v.name for v in variables if v.default is None}
        sets.append({k: val for k, val in every.items() if k in required})
    return sets


def check_template(template: str, context: Context) -> str:
    """Validate a template for `context` without an alert: syntax, PromQL quoting, and that
    sample values (and every default) render to something valid. Returns the sample render.
    Raises TemplateError."""
    rendered = ""
    for labels in sample_label_sets(template):
        rendered = substitute(template, labels, context)
    return rendered
