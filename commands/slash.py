"""The /incident subcommand table: parsing and dispatch. Thin glue over bot.incidents."""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot import incidents
from bot.deps import Deps
from bot.errors import UserError
from bot.render.cards import age, title_line


@dataclass(frozen=True, slots=True)
class Invocation:
    user_id: str
    channel_id: str
    args: list[str]


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    in_channel: bool = False


Handler = Callable[[Deps, Invocation], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Subcommand:
    name: str
    usage: str
    summary: str
    handler: Handler
    aliases: tuple[str, ...] = field(default_factory=tuple)


def parse(text: str) -> tuple[str, list[str]]:
    """Split `/incident` text into a subcommand and arguments, honouring quotes."""
    try:
        words = shlex.split(text.strip())
    except ValueError as exc:
        raise UserError(f'Could not read that command ({exc}). Quote titles with "double quotes".') from None
    if not words:
        return "help", []
    return words[0].lower(), words[1:]


async def _help(deps: Deps, inv: Invocation) -> Reply:
    return Reply(help_text())


async def _ack(deps: Deps, inv: Invocation) -> Reply:
    if len(inv.args) > 1:
        raise UserError("Usage: `/incident ack [#id]`")
    incident = await incidents.find_incident(
        deps, channel_id=inv.channel_id, ref=inv.args[0] if inv.args else None
    )
    return Reply(await incidents.acknowledge(deps, incident, inv.user_id), in_channel=True)


async def _list(deps: Deps, inv: Invocation) -> Reply:
    if inv.args:
        raise UserError("Usage: `/incident list`")
    open_incidents = await deps.store.list_open()
    if not open_incidents:
        return Reply("No open incidents. 🎉")
    now = deps.clock()
    lines = []
    for inc in open_incidents:
        where = f"<#{inc.channel_id}>" if inc.channel_id else "(channel pending)"
        commander = f"<@{inc.commander}>" if inc.commander else "no commander"
        lines.append(
            f"• {inc.ref} {title_line(inc)} — {inc.status.value}, {age(inc.created_at, now)} old, {commander}, {where}"
        )
    return Reply("*Open incidents*\n" + "\n".join(lines))


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("help", "/incident help", "this list", _help),
    Subcommand("ack", "/incident ack [#id]", "acknowledge the incident", _ack),
    Subcommand("list", "/incident list", "open incidents with age, severity and commander", _list),
)


def help_text(table: tuple[Subcommand, ...] = SUBCOMMANDS) -> str:
    lines = ["*`/incident` commands*"]
    lines += [f"• `{s.usage}` — {s.summary}" for s in table]
    return "\n".join(lines)


def lookup(name: str, table: tuple[Subcommand, ...] = SUBCOMMANDS) -> Subcommand:
    for sub in table:
        if name == sub.name or name in sub.aliases:
            return sub
    raise UserError(f"Unknown subcommand `{name}`.\n{help_text(table)}")


async def dispatch(deps: Deps, user_id: str, channel_id: str, text: str) -> Reply:
    name, args = parse(text)
    sub = lookup(name)
    return await sub.handler(deps, Invocation(user_id=user_id, channel_id=channel_id, args=args))
