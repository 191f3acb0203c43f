"""Slack adapter: the real slack_sdk AsyncWebClient behind a narrow, rate-aware interface.

Two layers keep us inside Slack's limits with several replicas: a shared token bucket per
method (the published tiers, protocols.md C.4) and ≤1 chat.postMessage per second per
channel, both in Redis; a 429 that still happens is retried after Retry-After by slack_sdk.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.jitter import RandomJitter
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.blockkit import Message, message, section
from bot.core.errors import IntegrationError
from bot.core.ports import TokenBucket
from bot.obs import logs
from bot.obs.metrics import Metrics

log = logs.logger(logs.Component.SLACK)

# (calls per minute, burst) per Slack tier: a token bucket that may spend most of a minute's
# worth at once ("20+ per minute", bursts tolerated) and then refills a little below the tier's
# rate. The margin absorbs the jitter between our reservation and Slack's own accounting, so
# a 429 stays the exception (it is still retried after Retry-After).
RATE_MARGIN = 0.9
TIER_1 = (1.0 * RATE_MARGIN, 1)
TIER_2 = (20.0 * RATE_MARGIN, 17)
TIER_3 = (50.0 * RATE_MARGIN, 44)
TIER_4 = (100.0 * RATE_MARGIN, 90)
# Display names (users.info) are kept this long, for at most this many users.
NAME_TTL_S = 3600.0
NAMES_KEPT = 5000
METHOD_TIERS: dict[str, tuple[float, int]] = {
    "conversations.create": TIER_2,
    "conversations.setTopic": TIER_2,
    "conversations.setPurpose": TIER_2,
    "conversations.archive": TIER_2,
    "conversations.list": TIER_2,
    "usergroups.users.list": TIER_2,
    "conversations.invite": TIER_3,
    "conversations.info": TIER_3,
    "conversations.history": TIER_3,
    "conversations.join": TIER_3,
    "chat.update": TIER_3,
    "users.lookupByEmail": TIER_3,
    "chat.postEphemeral": TIER_4,
    "users.info": TIER_4,
    "files.getUploadURLExternal": TIER_4,
    "files.completeUploadExternal": TIER_4,
    "views.open": TIER_4,
}
# chat.postMessage: about one per second per channel, short bursts tolerated.
POST_PER_SECOND = 1.0 * RATE_MARGIN
POST_BURST = 3
# How far ahead a rate-limit token may be reserved. Reservations live in Redis, not in the
# process: one killed with hundreds of calls queued would otherwise leave the shared bucket in
# debt for as long as those calls would have taken, and the restarted process (or the other
# replicas) would wait that long for a call nobody makes.
RESERVE_HORIZON_S = 1.0


# Message metadata marking a message the bot owns, with its key in the payload.
OWN_MESSAGE_EVENT = "incidentbot_message"
MAX_HISTORY_PAGES = 10


class NameTakenError(IntegrationError):
    def __init__(self, name: str) -> None:
        super().__init__("slack", f"channel name {name} is taken")


class _CountingRateLimitHandler(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (sleeps Retry-After), counting each 429 in /metrics."""

    def __init__(self, metrics: Metrics, max_retry_count: int) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self._metrics = metrics

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        method = method_of(request)
        self._metrics.slack_ratelimited.labels(method).inc()
        log.warning("slack.ratelimited", extra={"method": method})
        await super().prepare_for_next_attempt_async(
            state=state, request=request, response=response, error=error
        )


# Methods that change nothing when sent twice: reads, and writes whose second application is a
# no-op. Only these are retried on a 5xx, which Slack may return after applying the call: a
# post or a channel creation repeated blindly could appear twice.
IDEMPOTENT_METHODS = frozenset(
    {
        "auth.test",
        "chat.update",
        "conversations.archive",
        "conversations.history",
        "conversations.info",
        "conversations.invite",
        "conversations.list",
        "conversations.members",
        "conversations.replies",
        "conversations.setPurpose",
        "conversations.setTopic",
        "reactions.get",
        "usergroups.list",
        "usergroups.users.list",
        "users.info",
        "users.lookupByEmail",
    }
)
SERVER_ERROR_RETRIES = 4
# 0.25, 0.5, 1, 2 s plus up to 1 s of jitter each: at most about 8 s before giving up.
SERVER_ERROR_BACKOFF = BackoffRetryIntervalCalculator(backoff_factor=0.25, jitter=RandomJitter())


def method_of(request: HttpRequest) -> str:
    return request.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]


class _ServerErrorRetryHandler(AsyncRetryHandler):
    """A 5xx from Slack, for idempotent methods: retried with exponential backoff and jitter."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(max_retry_count=SERVER_ERROR_RETRIES, interval_calculator=SERVER_ERROR_BACKOFF)
        self._metrics = metrics

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code < 500:
            return False
        method = method_of(request)
        if method not in IDEMPOTENT_METHODS:
            return False
        self._metrics.slack_calls.labels(method, f"retried_{response.status_code}").inc()
        return True


class _ConnectionErrorRetryHandler(AsyncConnectionErrorRetryHandler):
    """Connection errors: retried when nothing reached Slack (the connection was never made)
    or the method is idempotent; a post or a channel creation cut off after it was sent may
    have been applied, and is left to the callers' find-and-adopt rule."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if not await super()._can_retry_async(state=state, request=request, response=response, error=error):
            return False
        return isinstance(error, aiohttp.ClientConnectorError) or method_of(request) in IDEMPOTENT_METHODS


def build_client(
    token: str,
    base_url: str,
    metrics: Metrics,
    session: aiohttp.ClientSession | None = None,
    timeout_s: float = 15.0,
) -> AsyncWebClient:
    handlers: list[AsyncRetryHandler] = [
        _ConnectionErrorRetryHandler(max_retry_count=2),
        _CountingRateLimitHandler(metrics, max_retry_count=5),
        _ServerErrorRetryHandler(metrics),
    ]
    return AsyncWebClient(
        token=token, base_url=base_url, retry_handlers=handlers, timeout=round(timeout_s), session=session
    )


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    name: str
    creator: str = ""  # the Slack user who created it
    created: float = 0.0  # unix seconds


@dataclass(slots=True)
class _Turn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class SlackChat:
    def __init__(
        self,
        client: AsyncWebClient,
        coordination: TokenBucket,
        metrics: Metrics,
        rate_scale: float = 1.0,
        *,
        pace: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self._coord = coordination
        self._metrics = metrics
        self._rate_scale = rate_scale
        # Awaited before every call: background calls give way to webhook intake (bot.flows.gate).
        self._pace = pace
        self._own_user_id: str | None = None
        self._turns: dict[str, _Turn] = {}
        # users.info answers, kept a while: a postmortem names everyone involved, and the next
        # draft should not spend the tier's budget on them again.
        self._names: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    async def _throttle(self, method: str, channel: str | None) -> None:
        tier = METHOD_TIERS.get(method)
        if tier is not None:
            per_minute, burst = tier
            await self._take("slack:" + method, per_minute * self._rate_scale / 60, burst)
        if method == "chat.postMessage" and channel:
            await self._take("slack-post:" + channel, POST_PER_SECOND * self._rate_scale, POST_BURST)

    async def _take(self, bucket: str, rate_per_s: float, burst: int) -> None:
        """Wait for one token of the shared bucket. The calls of this process queue here in
        order, and only the first asks Redis (again when told to), so the bucket holds at most
        RESERVE_HORIZON_S of this process's reservations however many calls are waiting."""
        async with self._turn(bucket):
            while True:
                reservation = await self._coord.reserve_token(bucket, rate_per_s, burst, RESERVE_HORIZON_S)
                if reservation.granted:
                    break
                await asyncio.sleep(reservation.wait_s)
        if reservation.wait_s > 0:
            await asyncio.sleep(reservation.wait_s)

    @asynccontextmanager
    async def _turn(self, bucket: str) -> AsyncIterator[None]:
        turn = self._turns.get(bucket)
        if turn is None:
            turn = self._turns[bucket] = _Turn()
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if turn.users == 0:
                del self._turns[bucket]  # one per channel posted to: not kept once idle

    async def reserve(self, method: str, count: int) -> float:
        """Take `count` rate-limit tokens of `method` now (waiting as needed), for calls made
        right after with `prepaid=True`: a caller can wait first and render after, so what
        it sends is not already stale."""
        started = time.monotonic()
        for _ in range(count):
            await self._throttle(method, None)
        return time.monotonic() - started

    async def call(
        self, method: str, *, channel: str | None = None, prepaid: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        if self._pace is not None:
            await self._pace()
        if not prepaid:
            await self._throttle(method, channel)
        if channel is not None:
            kwargs["channel"] = channel
        try:
            if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
                response = await self.client.api_call(method, json=kwargs)
            else:
                response = await self.client.api_call(method, params=kwargs)
        except SlackApiError as exc:
            # A 5xx from Slack's edge may carry an HTML or text body instead of JSON.
            body = exc.response.data if isinstance(exc.response.data, dict) else {}
            status = exc.response.status_code
            error = str(body.get("error") or (f"http_{status}" if status >= 500 else "unknown_error"))
            self._metrics.slack_calls.labels(method, error).inc()
            if error == "name_taken":
                raise NameTakenError(str(kwargs.get("name"))) from None
            detail = body.get("errors") or body.get("response_metadata") or ""
            raise IntegrationError(
                "slack", f"{method}: {error} {detail}".strip(), status=status, maybe_applied=status >= 500
            ) from None
        except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent
            self._metrics.slack_calls.labels(method, "transport").inc()
            raise IntegrationError("slack", f"{method}: {type(exc).__name__}: {exc}") from None
        except (SlackClientError, TimeoutError, OSError, aiohttp.ClientError) as exc:
            self._metrics.slack_calls.labels(method, "transport").inc()
            raise IntegrationError(
                "slack", f"{method}: {type(exc).__name__}: {exc}", maybe_applied=True
            ) from None
        self._metrics.slack_calls.labels(method, "ok").inc()
        data: dict[str, Any] = response.data if isinstance(response.data, dict) else {}
        return data

    async def create_channel(self, name: str, *, prepaid: bool = False) -> Channel:
        data = await self.call("conversations.create", name=name, is_private=False, prepaid=prepaid)
        return Channel(data["channel"]["id"], data["channel"]["name"])

    async def own_user_id(self) -> str:
        """The bot's own Slack user id (auth.test), asked once."""
        if self._own_user_id is None:
            data = await self.call("auth.test")
            self._own_user_id = str(data.get("user_id", ""))
        return self._own_user_id

    async def find_channel(self, name: str) -> Channel | None:
        """Find a public channel by exact name (used to adopt a channel created by a publisher
        that died before recording it)."""
        cursor: str | None = None
        for _ in range(50):
            args: dict[str, Any] = {"types": "public_channel", "exclude_archived": True, "limit": 1000}
            if cursor:
                args["cursor"] = cursor
            data = await self.call("conversations.list", **args)
            for ch in data.get("channels", []):
                if ch.get("name") == name:
                    return Channel(
                        ch["id"], ch["name"], str(ch.get("creator", "")), float(ch.get("created", 0))
                    )
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return None

    async def set_topic(self, channel: str, topic: str) -> None:
        await self.call("conversations.setTopic", channel=channel, topic=topic)

    async def post(
        self, channel: str, msg: Message, *, thread_ts: str | None = None, key: str | None = None
    ) -> str:
        """Post a message; `key` marks it as the bot's own message of that identity (message
        metadata), so it can be found again after an answer was lost (`find_own`)."""
        args: dict[str, Any] = {"text": msg.text, "blocks": msg.blocks, "unfurl_links": False}
        if thread_ts:
            args["thread_ts"] = thread_ts
        if key is not None:
            args["metadata"] = {"event_type": OWN_MESSAGE_EVENT, "event_payload": {"key": key}}
        data = await self.call("chat.postMessage", channel=channel, **args)
        return str(data["ts"])

    async def find_own(
        self, channel: str, key: str, *, oldest: float, thread_ts: str | None = None
    ) -> str | None:
        """The ts of the bot's message marked `key`, posted since `oldest` (unix seconds), if any."""
        cursor: str | None = None
        for _ in range(MAX_HISTORY_PAGES):
            args: dict[str, Any] = {"oldest": f"{oldest:.6f}", "include_all_metadata": True, "limit": 200}
            if thread_ts:
                args["ts"] = thread_ts
            if cursor:
                args["cursor"] = cursor
            method = "conversations.replies" if thread_ts else "conversations.history"
            data = await self.call(method, channel=channel, **args)
            for found in data.get("messages", []):
                metadata = found.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if metadata.get("event_type") == OWN_MESSAGE_EVENT and payload.get("key") == key:
                    return str(found["ts"])
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return None
        return None

    async def post_text(self, channel: str, text: str, *, thread_ts: str | None = None) -> str:
        """A plain mrkdwn message (text is already Slack-safe)."""
        return await self.post(channel, message(text, [section(text)]), thread_ts=thread_ts)

    async def update(self, channel: str, ts: str, msg: Message, *, prepaid: bool = False) -> None:
        await self.call(
            "chat.update", channel=channel, ts=ts, text=msg.text, blocks=msg.blocks, prepaid=prepaid
        )

    async def invite(self, channel: str, users: list[str]) -> None:
        if not users:
            return
        try:
            # force: the others are invited when one is already in (or cannot be): without it
            # Slack refuses the whole list for one such user.
            await self.call("conversations.invite", channel=channel, users=",".join(users), force=True)
        except IntegrationError as exc:
            if "already_in_channel" not in exc.message and "cant_invite_self" not in exc.message:
                raise

    async def archive(self, channel: str) -> None:
        try:
            await self.call("conversations.archive", channel=channel)
        except IntegrationError as exc:
            if "already_archived" not in exc.message:
                raise

    async def resolve_channel_id(self, channel: str) -> str:
        """Turn a configured channel name into its id (chat.update needs the id)."""
        if channel.startswith(("C", "G")) and channel.isupper():
            return channel
        found = await self.find_channel(channel.lstrip("#"))
        if found is None:
            raise IntegrationError("slack", f"channel #{channel.lstrip('#')} not found; invite the bot to it")
        return found.id

    async def upload_file(
        self,
        channel: str,
        content: bytes,
        filename: str,
        title: str,
        *,
        thread_ts: str | None = None,
        comment: str | None = None,
    ) -> None:
        await self._throttle("files.getUploadURLExternal", None)
        try:
            await self.client.files_upload_v2(
                channel=channel,
                content=content,
                filename=filename,
                title=title,
                thread_ts=thread_ts,
                initial_comment=comment,
            )
        except SlackApiError as exc:
            self._metrics.slack_calls.labels("files_upload_v2", str(exc.response.get("error"))).inc()
            raise IntegrationError("slack", f"files_upload_v2: {exc.response.get('error')}") from None
        except (SlackClientError, OSError) as exc:
            raise IntegrationError("slack", f"files_upload_v2: {exc}") from None
        self._metrics.slack_calls.labels("files_upload_v2", "ok").inc()

    async def message_text(self, channel: str, ts: str) -> str | None:
        """The text of one message (conversations.history bounded to that ts)."""
        data = await self.call(
            "conversations.history", channel=channel, latest=ts, oldest=ts, inclusive=True, limit=1
        )
        messages = data.get("messages") or []
        return str(messages[0].get("text", "")) if messages else None

    async def usergroup_members(self, usergroup: str) -> list[str]:
        data = await self.call("usergroups.users.list", usergroup=usergroup)
        return [str(u) for u in data.get("users", [])]

    async def display_name(self, user: str) -> str | None:
        """The name Slack shows for a user (display name, else real name, else handle); None
        for a user Slack does not know. Answers are kept for NAME_TTL_S (a renamed user shows
        the new name after that)."""
        now = time.monotonic()
        kept = self._names.get(user)
        if kept is not None and kept[0] > now:
            self._names.move_to_end(user)
            return kept[1]
        name = await self._fetch_display_name(user)
        self._names[user] = (now + NAME_TTL_S, name)
        self._names.move_to_end(user)
        while len(self._names) > NAMES_KEPT:
            self._names.popitem(last=False)
        return name

    async def _fetch_display_name(self, user: str) -> str | None:
        try:
            data = await self.call("users.info", user=user)
        except IntegrationError as exc:
            if "user_not_found" in exc.message:
                return None
            raise
        info = data.get("user") or {}
        profile = info.get("profile") or {}
        for name in (
            profile.get("display_name"),
            profile.get("real_name"),
            info.get("real_name"),
            info.get("name"),
        ):
            if isinstance(name, str) and name.strip():
                return name.strip()
        return None

    async def lookup_by_email(self, email: str) -> str | None:
        try:
            data = await self.call("users.lookupByEmail", email=email)
        except IntegrationError as exc:
            if "users_not_found" in exc.message:
                return None
            raise
        return str(data["user"]["id"])
