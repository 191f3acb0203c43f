"""Posting a message the bot owns exactly once, across lost answers, restarts and replicas.

Each such message has a stable key. The attempt is recorded in Postgres before the post; the
message carries its key in Slack message metadata. When an attempt fails in a way that may
have been applied (a 5xx, a timeout, a reset after the request was sent), or when an earlier
attempt never recorded its result, the channel's history since the first attempt is searched
for the key and the message found is adopted instead of posting a second one.
"""

from __future__ import annotations

from datetime import timedelta

from bot.clients.slack import SlackChat
from bot.core.blockkit import Message
from bot.core.errors import IntegrationError
from bot.core.ports import Clock
from bot.obs import logs
from bot.store.messages import MessageLedger

log = logs.logger(logs.Component.PUBLISH)

# Slack's clock and ours may disagree a little: search a bit before the first attempt.
CLOCK_SKEW = timedelta(seconds=30)


class OwnedMessages:
    def __init__(self, ledger: MessageLedger, chat: SlackChat, clock: Clock) -> None:
        self.ledger = ledger
        self.chat = chat
        self.clock = clock

    async def post(self, channel: str, msg: Message, key: str, *, thread_ts: str | None = None) -> str:
        attempt = await self.ledger.begin(key, channel, self.clock())
        if attempt.ts is not None:
            return attempt.ts
        oldest = (attempt.first_attempt_at - CLOCK_SKEW).timestamp()
        if attempt.attempts > 1:
            found = await self.chat.find_own(channel, key, oldest=oldest, thread_ts=thread_ts)
            if found is not None:
                log.info("slack.message_adopted", extra={"key": key, "ts": found})
                await self.ledger.posted(key, found)
                return found
        try:
            ts = await self.chat.post(channel, msg, thread_ts=thread_ts, key=key)
        except IntegrationError as exc:
            if not exc.maybe_applied:
                raise
            # Slack may have applied it: look before anyone posts again.
            found = await self.chat.find_own(channel, key, oldest=oldest, thread_ts=thread_ts)
            if found is None:
                raise
            log.info("slack.message_adopted", extra={"key": key, "ts": found, "after": exc.message})
            ts = found
        await self.ledger.posted(key, ts)
        return ts
