"""Runbook messages: a playbook's steps for one alert, graph captions, the playbook list and
read-only diagnostics output. Pure builders: no I/O, no clock.

Everything goes through `bot.core.blockkit`, and every section's text is kept within Slack's
limit here already (so kit never has to cut one, which could cut a code block's closing
fence). Label values are data: before rendering they are made inert for Slack's mrkdwn
(control characters become spaces, ``*``/``~``/backtick become look-alikes, long values are
clipped) and `render_text` escapes ``&``/``<``/``>``, so a value can neither mention
``<!channel>``, forge a link nor break a code block. The playbook's own template text is
trusted but Slack-escaped too (``p50 < 50 ms`` stays text); ``<https://...|links>`` in it are
kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.core.blockkit import (
    MAX_BLOCKS,
    MAX_HEADER,
    MAX_SECTION_TEXT,
    Block,
    Message,
    actions,
    button,
    clip,
    context,
    divider,
    escape,
    header,
    inert,
    link,
    message,
    section,
    single_line,
)
from bot.core.checks import CheckOutcome, format_value
from bot.core.playbooks import Check, Playbook, Step
from bot.core.templating import TemplateError, render_plain, render_text, template_variables
from bot.render.times import GraphWindow

__all__ = [
    "COLLAPSED_STEPS",
    "MESSAGE_CHAR_BUDGET",
    "SHOW_ALL_ACTION_ID",
    "diagnostics_message",
    "graph_caption",
    "no_prometheus_note",
    "playbook_list_message",
    "runbook_messages",
    "show_all_value",
]

#: Steps shown in the channel before the "Show all N steps" button.
COLLAPSED_STEPS = 6
SHOW_ALL_ACTION_ID = "show_runbook_steps"
#: Characters of block text per runbook message, to keep each message readable.
MESSAGE_CHAR_BUDGET = 12_000
MAX_VALUE_CHARS = 200  # a label value shown in text
MAX_QUERY_CHARS = 300  # a query in a graph caption
MAX_ERROR_CHARS = 500
MAX_DIAGNOSTIC_CHARS = 12_000
MAX_DIAGNOSTIC_LINE = 1_000
MAX_LIST_LINE = 300

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\ufeff]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_PLAIN_ANGLES = str.maketrans({"<": "‹", ">": "›"})
_SLACK_LINK = re.compile(r"<(?:https?://|mailto:)[^<>|\s]+(?:\|[^<>\n]*)?>")
_LANGUAGE = re.compile(r"[A-Za-z0-9+#._-]+[ \t]*\n")
_FENCE = "```"
_INERT_FENCE = "ˋˋˋ"
_CHECK_STATES: dict[bool | None, tuple[str, str]] = {
    True: ("✅", "passed"),
    False: ("❌", "failed"),
    None: ("❔", "no data"),
}
_PENDING = ("⏳", "pending")


# --------------------------------------------------------------------------- safe text


def _inert(text: str) -> str:
    """Untrusted text on one line with mrkdwn's formatting characters neutralised (not escaped:
    `escape`/`render_text` do that)."""
    return inert(text)


def _display_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: clip(_inert(v), MAX_VALUE_CHARS) for k, v in labels.items() if isinstance(v, str)}


def _code_span(text: str, limit: int) -> str:
    """Untrusted text for the inside of a `code span`: one line, no backticks, clipped, escaped."""
    shown = escape(clip(single_line(text).replace("`", "ˋ"), limit))
    return shown or " "


def _escape_template(template: str) -> str:
    """Slack-escape a trusted template's literal text, keeping its ``<https://...|label>`` links.
    ``$name`` references survive (escaping never touches ``$``, ``{`` or ``}``)."""
    out: list[str] = []
    pos = 0
    for m in _SLACK_LINK.finditer(template):
        out.append(escape(template[pos : m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(escape(template[pos:]))
    return "".join(out)


def _text(template: str, labels: Mapping[str, str]) -> str:
    """Slack mrkdwn for a template and display labels; raises TemplateError."""
    return render_text(_escape_template(template), labels)


def _plain(template: str, labels: Mapping[str, str]) -> str:
    """Text for a plain_text field (header, button): no entities, no angle brackets."""
    return render_plain(template, labels).translate(_PLAIN_ANGLES)


def _unavailable(what: str, exc: TemplateError) -> str:
    label = f" (label `{_code_span(exc.label, 128)}`)" if exc.label else ""
    reason = escape(clip(_inert(str(exc)), MAX_ERROR_CHARS))
    return f"⚠️ {what} cannot be shown{label}: {reason}"


def _try_text(what: str, template: str, labels: Mapping[str, str]) -> str:
    try:
        return _text(template, labels)
    except TemplateError as exc:
        return _unavailable(what, exc)


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True, slots=True)
class _Part:
    """A piece of section text kept whole when it fits; code is re-fenced when split."""

    text: str
    code: bool = False


def _safe_cut(line: str, limit: int) -> int:
    """Where to cut `line` at most `limit` characters in without splitting an ``&...;`` entity."""
    amp = line.rfind("&", max(0, limit - 5), limit)
    if amp > 0 and ";" not in line[amp:limit]:
        return amp
    return limit


def _split_lines(text: str, limit: int) -> list[str]:
    chunks: list[str] = []
    current: str | None = None
    for raw in text.split("\n"):
        line = raw
        while len(line) > limit:
            if current is not None:
                chunks.append(current)
                current = None
            cut = _safe_cut(line, limit)
            chunks.append(line[:cut])
            line = line[cut:]
        if current is None:
            current = line
        elif len(current) + 1 + len(line) <= limit:
            current += "\n" + line
        else:
            chunks.append(current)
            current = line
    if current is not None:
        chunks.append(current)
    return [c for c in chunks if c.strip()]


def _code(body: str) -> str:
    return f"{_FENCE}\n{body}\n{_FENCE}"


def _pieces(part: _Part, limit: int = MAX_SECTION_TEXT) -> list[str]:
    if not part.code:
        return [part.text] if len(part.text) <= limit else _split_lines(part.text, limit)
    whole = _code(part.text)
    if len(whole) <= limit:
        return [whole]
    return [_code(chunk) for chunk in _split_lines(part.text, limit - len(_code("")))]


def _section_texts(parts: Iterable[_Part]) -> list[str]:
    texts: list[str] = []
    current: str | None = None
    for part in parts:
        for piece in _pieces(part):
            if current is None:
                current = piece
            elif len(current) + 1 + len(piece) <= MAX_SECTION_TEXT:
                current += "\n" + piece
            else:
                texts.append(current)
                current = piece
    if current is not None:
        texts.append(current)
    return texts


def _sections(parts: Iterable[_Part]) -> list[Block]:
    return [section(text) for text in _section_texts(parts)]


def _markdown_parts(text: str) -> list[_Part]:
    """Rendered markdown as prose and code parts; a fence's language is dropped (Slack has
    none) and an unmatched fence is shown as text."""
    pieces = text.split(_FENCE)
    if len(pieces) % 2 == 0:
        pieces[-2:] = [pieces[-2] + _INERT_FENCE + pieces[-1]]
    parts: list[_Part] = []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            prose = piece.strip("\n")
            if prose.strip():
                parts.append(_Part(prose))
            continue
        m = _LANGUAGE.match(piece)
        body = (piece[m.end() :] if m else piece).strip("\n")
        if body.strip():
            parts.append(_Part(body, code=True))
    return parts


def _verbatim_code(code: str) -> str:
    return escape(code.strip("\n")).replace(_FENCE, _INERT_FENCE)


# --------------------------------------------------------------------------- runbook


def show_all_value(incident_id: int, playbook_name: str) -> str:
    """The opaque value of the "Show all N steps" button: ``"<incident id>:<playbook name>"``."""
    return f"{incident_id}:{playbook_name}"[:2000]


def _check_line(check: Check, labels: Mapping[str, str], outcome: CheckOutcome | None) -> str:
    mark, state = _PENDING if outcome is None else _CHECK_STATES[outcome.passed]
    if check.description:
        what = _try_text("The check's description", check.description, labels)
    else:
        what = escape(f"value {check.op} {format_value(check.value, '')}")
    line = f"{mark} *Check {state}:* {what}"
    if outcome is not None and outcome.text and outcome.text != state:
        line += f" — `{_code_span(outcome.text, 200)}`"
    return line


def _step_blocks(
    number: int, step: Step, labels: Mapping[str, str], outcome: CheckOutcome | None
) -> list[Block]:
    title = _try_text("The step's title", step.title, labels)
    parts = [_Part(f"*{number}. {title}*")]
    if step.text:
        try:
            parts += _markdown_parts(_text(step.text, labels))
        except TemplateError as exc:
            parts.append(_Part(_unavailable("This step's text", exc)))
    if step.code and step.code.strip():
        parts.append(_Part(_verbatim_code(step.code), code=True))
    if step.check is not None:
        parts.append(_Part(_check_line(step.check, labels, outcome)))
    return _sections(parts)


def _title(playbook: Playbook, labels: Mapping[str, str]) -> tuple[str, TemplateError | None]:
    """The playbook title as plain text (the playbook name when it cannot be rendered)."""
    try:
        return _plain(playbook.title, labels), None
    except TemplateError as exc:
        return playbook.name, exc


def _head_blocks(playbook: Playbook, labels: Mapping[str, str]) -> list[Block]:
    title, error = _title(playbook, labels)
    kind = "on-demand guide" if playbook.on_demand else "playbook"
    blocks: list[Block] = [
        header(f"📘 {title}"),
        context(f"*System:* `{playbook.system}` · {kind} `{playbook.name}`"),
    ]
    parts: list[_Part] = []
    if error is not None:
        parts.append(_Part(_unavailable("The title", error)))
    if playbook.summary:
        try:
            parts += _markdown_parts(_text(playbook.summary, labels))
        except TemplateError as exc:
            parts.append(_Part(_unavailable("The summary", exc)))
    if not playbook.steps:
        parts.append(_Part("_This playbook has no steps._"))
    return blocks + _sections(parts)


def _links_blocks(playbook: Playbook, display: Mapping[str, str], raw: Mapping[str, str]) -> list[Block]:
    if not playbook.links:
        return []
    parts = [_Part("*Links*")]
    for item in playbook.links:
        try:
            label = render_plain(item.title, display)
        except TemplateError as exc:
            parts.append(_Part(f"• {_unavailable('A link title', exc)}"))
            continue
        try:
            url = item.render_url(raw)  # percent-encoded: the raw values are safe here
        except TemplateError as exc:
            parts.append(_Part(f"• {escape(label)} — {_unavailable('the link', exc)}"))
            continue
        parts.append(_Part(f"• {link(url, label)}"))
    return [divider(), *_sections(parts)]


def _remediation_blocks(playbook: Playbook, labels: Mapping[str, str]) -> list[Block]:
    if not playbook.remediations:
        return []
    # Whether each one is proposed is known only after the policy and a dry run have had their
    # say: the proposals (and a note naming any not proposed, with why) follow this message.
    parts = [_Part("*Remediations in this runbook* (each one the policy allows is proposed for approval):")]
    for rem in playbook.remediations:
        title = _try_text("A remediation title", rem.title, labels)
        parts.append(_Part(f"• {title} (`{rem.action.value}`)"))
    return [divider(), *_sections(parts)]


def _block_chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_block_chars(v) for v in value.values())
    if isinstance(value, list):
        return sum(_block_chars(v) for v in value)
    return 0


def _pack(groups: Sequence[list[Block]], reserve: int) -> list[list[Block]]:
    """Blocks into pages of at most MAX_BLOCKS - reserve blocks and MESSAGE_CHAR_BUDGET
    characters, keeping each group (a step, the button row) on one page when it fits."""
    max_blocks = MAX_BLOCKS - reserve
    pages: list[list[Block]] = []
    page: list[Block] = []
    chars = 0
    for group in groups:
        size = sum(_block_chars(b) for b in group)
        chunks = [group] if len(group) <= max_blocks and size <= MESSAGE_CHAR_BUDGET else [[b] for b in group]
        for chunk in chunks:
            chunk_size = sum(_block_chars(b) for b in chunk)
            if page and (len(page) + len(chunk) > max_blocks or chars + chunk_size > MESSAGE_CHAR_BUDGET):
                pages.append(page)
                page, chars = [], 0
            page.extend(chunk)
            chars += chunk_size
    if page:
        pages.append(page)
    trimmed: list[list[Block]] = []
    for blocks in pages:
        start, end = 0, len(blocks)
        while end - start > 1 and blocks[start]["type"] == "divider":
            start += 1
        while end - start > 1 and blocks[end - 1]["type"] == "divider":
            end -= 1
        trimmed.append(blocks[start:end])
    return trimmed


def runbook_messages(
    playbook: Playbook,
    labels: Mapping[str, str],
    *,
    check_results: dict[int, CheckOutcome] | None = None,
    expanded: bool = False,
    incident_id: int,
) -> list[Message]:
    """The runbook for one alert, as one or more messages for the incident channel.

    `check_results` maps a step's index in `playbook.steps` (0-based) to its check's outcome;
    a step with a check and no outcome shows as pending. Unless `expanded`, a playbook with
    more than COLLAPSED_STEPS steps shows the first ones and a "Show all N steps" button
    (action_id SHOW_ALL_ACTION_ID, value `show_all_value(incident_id, playbook.name)`).
    Whatever does not fit one message (blocks or MESSAGE_CHAR_BUDGET) continues in the next.
    """
    results = check_results or {}
    display = _display_labels(labels)
    steps = list(enumerate(playbook.steps))
    collapsed = not expanded and len(steps) > COLLAPSED_STEPS
    shown = steps[:COLLAPSED_STEPS] if collapsed else steps

    groups: list[list[Block]] = [_head_blocks(playbook, display)]
    if shown:
        groups.append([divider()])
    for index, step in shown:
        groups.append(_step_blocks(index + 1, step, display, results.get(index)))
    if collapsed:
        total = len(steps)
        groups.append(
            [
                context(f"Showing the first {COLLAPSED_STEPS} of {total} steps."),
                actions(
                    button(
                        f"Show all {total} steps",
                        SHOW_ALL_ACTION_ID,
                        show_all_value(incident_id, playbook.name),
                    ),
                    block_id=f"runbook-{incident_id}-{playbook.name}",
                ),
            ]
        )
    for extra in (_links_blocks(playbook, display, labels), _remediation_blocks(playbook, display)):
        if extra:
            groups.append(extra)

    pages = _pack(groups, reserve=1)
    title, _ = _title(playbook, display)
    fallback = f"Runbook: {escape(title)}"
    if len(pages) == 1:
        return [message(fallback, pages[0])]
    messages: list[Message] = []
    for number, blocks in enumerate(pages, start=1):
        note = f"📘 *{escape(clip(title, MAX_HEADER))}* — continued ({number}/{len(pages)})"
        page = blocks if number == 1 else [context(note), *blocks]
        messages.append(message(f"{fallback} ({number}/{len(pages)})", page))
    return messages


# --------------------------------------------------------------------------- graphs


def graph_caption(
    graph_title: str, query: str, *, window: GraphWindow | None = None, error: str | None = None
) -> str:
    """The comment posted with a graph upload (with its window and the alert start it marks);
    with `error`, the note that replaces the graph (the query failed or Prometheus is down).
    The title, query and error are plain text, escaped here."""
    title = escape(clip(_inert(graph_title), MAX_HEADER))
    shown_query = _code_span(query, MAX_QUERY_CHARS)
    if error is None:
        span = f" · {window.text()}" if window is not None else ""
        return f"📈 *{title}*{span}\n`{shown_query}`"
    reason = escape(clip(_inert(error), MAX_ERROR_CHARS)) or "unknown error"
    return f"⚠️ *{title}*: no graph — the query `{shown_query}` failed: {reason}"


def no_prometheus_note(cluster: str | None = None) -> Message:
    """`cluster`: a listed cluster whose alerts have no Prometheus (others have one)."""
    if cluster:
        text = (
            f"📉 No graphs or runbook step checks for cluster `{cluster}`: it has no `prometheus_url`"
            " in clusters.yaml and `PROMETHEUS_URL` is not set."
        )
        return message(f"No Prometheus for cluster {cluster}", [context(text)])
    text = (
        "📉 Graphs are off: `PROMETHEUS_URL` is not set, so the bot cannot draw graphs or "
        "evaluate runbook step checks. Set it to turn them on."
    )
    return message("Graphs are off: PROMETHEUS_URL is not set", [context(text)])


# --------------------------------------------------------------------------- playbook list


def _list_title(playbook: Playbook) -> str:
    """The title without an alert: variables without a default show as ‹name›."""
    try:
        variables = template_variables(playbook.title)
        placeholders = {v.name: f"‹{v.name}›" for v in variables if v.default is None}
        return _text(playbook.title, placeholders)
    except TemplateError:
        return ""


def _list_line(playbook: Playbook) -> str:
    title = _list_title(playbook)
    line = f"• `{playbook.name}`" + (f" — {title}" if title else "")
    names = playbook.match.alertnames
    if names:
        shown = ", ".join(f"`{_code_span(n, 60)}`" for n in names[:3])
        line += f" · alerts: {shown}" + (f" +{len(names) - 3}" if len(names) > 3 else "")
    if len(line) > MAX_LIST_LINE:
        line = f"• `{playbook.name}`" + (f" — {clip(title, MAX_LIST_LINE - 80)}" if title else "")
    return line


def playbook_list_message(playbooks: Iterable[Playbook], own_system: str | None = None) -> Message:
    """For ``/incident runbook`` without a name: every guide and playbook, grouped by system;
    the incident's own system first (it is what the responder is most likely looking for)."""
    items = list(playbooks)
    guides = sum(1 for pb in items if pb.on_demand)
    systems = sorted({pb.system for pb in items}, key=lambda s: (s != own_system, s))
    blocks: list[Block] = [
        header("📚 Runbooks"),
        context(
            f"{guides} on-demand guide{'s' if guides != 1 else ''} and "
            f"{len(items) - guides} alert playbook{'s' if len(items) - guides != 1 else ''} "
            f"for {len(systems)} system{'s' if len(systems) != 1 else ''}. "
            "Post one here with `/incident runbook &lt;name&gt;`."
        ),
    ]
    if not items:
        return message("No playbooks are loaded", [*blocks, section("_No playbooks are loaded._")])
    parts: list[_Part] = []
    for system in systems:
        in_system = [pb for pb in items if pb.system == system]
        parts.append(_Part(f"\n*{system}*" + (" (this incident's system)" if system == own_system else "")))
        for heading, chosen in (
            ("On-demand guides", [pb for pb in in_system if pb.on_demand]),
            ("Alert playbooks", [pb for pb in in_system if not pb.on_demand]),
        ):
            if chosen:
                parts.append(_Part(f"_{heading}_"))
                parts.extend(_Part(_list_line(pb)) for pb in chosen)
    texts = _section_texts(parts)
    room = MAX_BLOCKS - len(blocks) - 1
    if len(texts) > room:
        omitted = sum(line.startswith("• ") for t in texts[room:] for line in t.split("\n"))
        texts = texts[:room]
        blocks += [section(t.strip("\n") or " ") for t in texts]
        blocks.append(context(f"… and {omitted} more not shown."))
    else:
        blocks += [section(t.strip("\n") or " ") for t in texts]
    return message(f"Runbooks: {len(items)} playbooks for {len(systems)} systems", blocks)


# --------------------------------------------------------------------------- diagnostics


def _diagnostic_line(line: str) -> tuple[str, bool]:
    text = _CONTROL.sub(" ", _ANSI.sub("", line).expandtabs(4)).rstrip()
    cut = len(text) > MAX_DIAGNOSTIC_LINE
    return escape(clip(text, MAX_DIAGNOSTIC_LINE)).replace(_FENCE, _INERT_FENCE), cut


def diagnostics_message(title: str, lines: list[str], *, tail: bool = False) -> Message:
    """Read-only Kubernetes output (pods, events, rollout history, a log tail) as code blocks.

    At most MAX_DIAGNOSTIC_CHARS are shown: the first lines, or with `tail` the last ones
    (for logs); lines longer than MAX_DIAGNOSTIC_LINE are cut. Both are noted "(truncated)".
    """
    all_lines = [piece for line in lines for piece in (line.splitlines() or [""])]
    heading = f"*{escape(clip(_inert(title), MAX_HEADER))}*"
    if not all_lines:
        return message(f"{escape(_inert(title))}: no output", [section(f"{heading}\n_(no output)_")])
    ordered = list(reversed(all_lines)) if tail else all_lines
    kept: list[str] = []
    chars = 0
    any_cut = False
    for line in ordered:
        shown, cut = _diagnostic_line(line)
        if kept and chars + len(shown) + 1 > MAX_DIAGNOSTIC_CHARS:
            break
        kept.append(shown)
        chars += len(shown) + 1
        any_cut = any_cut or cut
    if tail:
        kept.reverse()
    body = "\n".join(kept)
    blocks: list[Block] = [section(heading)]
    blocks += _sections([_Part(body if body.strip() else " ", code=True)])
    notes: list[str] = []
    if len(kept) < len(all_lines):
        which = "last" if tail else "first"
        notes.append(f"showing the {which} {len(kept)} of {len(all_lines)} lines")
    if any_cut:
        notes.append(f"lines longer than {MAX_DIAGNOSTIC_LINE} characters cut")
    if notes:
        blocks.append(context(f"_(truncated: {'; '.join(notes)})_"))
    return message(f"{escape(clip(_inert(title), MAX_HEADER))} ({len(all_lines)} lines)", blocks)
