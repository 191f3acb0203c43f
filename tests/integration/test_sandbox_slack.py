"""The Slack sandbox, exercised with the REAL slack_sdk AsyncWebClient and a real Bolt AsyncApp."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack import SlackDriver, SlackSandbox, sign, validate_message_blocks

SIGNING_SECRET = "sandbox-signing-secret"


@pytest.fixture
async def sandbox() -> AsyncIterator[SlackSandbox]:
    sb = SlackSandbox()
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


@pytest.fixture
def client(sandbox: SlackSandbox) -> AsyncWebClient:
    return AsyncWebClient(token=sandbox.bot_token, base_url=sandbox.api_url)


async def expect_error(coro: Any, error: str) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await coro
    assert info.value.response["error"] == error, info.value.response.data
    return info.value


def section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def button(text: str = "Go", **extra: Any) -> dict[str, Any]:
    return {"type": "button", "text": {"type": "plain_text", "text": text}, **extra}


# --------------------------------------------------------------------------------------------
# auth
# --------------------------------------------------------------------------------------------


async def test_auth_test(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    resp = await client.auth_test()
    assert resp["ok"] is True
    assert resp["team_id"] == sandbox.team_id
    assert resp["user_id"] == sandbox.bot_user_id
    assert resp["bot_id"] == sandbox.bot_id
    assert sandbox.calls_to("auth.test")[0].ok


async def test_bad_missing_and_wrong_type_tokens(sandbox: SlackSandbox) -> None:
    bad = AsyncWebClient(token="xoxb-nope", base_url=sandbox.api_url)
    await expect_error(bad.auth_test(), "invalid_auth")
    await expect_error(AsyncWebClient(base_url=sandbox.api_url).auth_test(), "not_authed")
    assert sandbox.app_token is not None
    app_level = AsyncWebClient(token=sandbox.app_token, base_url=sandbox.api_url)
    await expect_error(app_level.chat_postMessage(channel="C0INCIDENTS", text="x"), "not_allowed_token_type")
    # the token may also come as a form/query argument
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sandbox.api_url}auth.test", data={"token": sandbox.bot_token}) as r,
    ):
        assert (await r.json())["ok"] is True


async def test_unknown_method_and_missing_arguments(client: AsyncWebClient) -> None:
    await expect_error(client.api_call("chat.frobnicate"), "unknown_method")
    err = await expect_error(client.users_info(user=""), "invalid_arguments")
    assert err.response["response_metadata"]["messages"] == ["[ERROR] missing required field: user"]


# --------------------------------------------------------------------------------------------
# channels
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "invalid_name_required"),
        ("a" * 81, "invalid_name_maxlength"),
        ("Incident", "invalid_name_specials"),
        ("inc 42", "invalid_name_specials"),
        ("#inc", "invalid_name_specials"),
        ("inc.42", "invalid_name_specials"),
        ("---", "invalid_name_punctuation"),
        ("_-_", "invalid_name_punctuation"),
    ],
)
async def test_channel_name_rules(client: AsyncWebClient, name: str, error: str) -> None:
    await expect_error(client.conversations_create(name=name), error)


async def test_channel_create_name_taken_even_when_archived(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    ok = await client.conversations_create(name="inc-2024-db_down-" + "x" * 63)  # exactly 80
    assert ok["channel"]["is_member"] is True
    created = await client.conversations_create(name="inc-42")
    cid = created["channel"]["id"]
    assert cid.startswith("C")
    await expect_error(client.conversations_create(name="inc-42"), "name_taken")
    await client.conversations_archive(channel=cid)
    await expect_error(client.conversations_archive(channel=cid), "already_archived")
    await expect_error(client.conversations_create(name="inc-42"), "name_taken")
    await expect_error(client.chat_postMessage(channel=cid, text="late"), "is_archived")
    await client.conversations_unarchive(channel=cid)
    assert sandbox.find_channel("inc-4") is sandbox.channels[cid]
    assert sandbox.channel_by_name("#inc-42") is sandbox.channels[cid]


async def test_invite_topic_and_info(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    cid = (await client.conversations_create(name="inc-invite"))["channel"]["id"]
    await client.conversations_invite(channel=cid, users=["U0ALICE", "U0BOB"])
    assert sandbox.channels[cid].members == [sandbox.bot_user_id, "U0ALICE", "U0BOB"]
    await expect_error(client.conversations_invite(channel=cid, users="U0ALICE"), "already_in_channel")
    await expect_error(client.conversations_invite(channel=cid, users="U0NOBODY"), "user_not_found")
    await expect_error(
        client.conversations_invite(channel=cid, users=sandbox.bot_user_id), "cant_invite_self"
    )
    await expect_error(client.conversations_invite(channel="C0GENERAL", users="U0ALICE"), "not_in_channel")

    await expect_error(client.conversations_setTopic(channel=cid, topic="t" * 251), "too_long")
    await client.conversations_setTopic(channel=cid, topic="t" * 250)
    await client.conversations_setPurpose(channel=cid, purpose="DB is down")
    info = await client.conversations_info(channel=cid)
    assert info["channel"]["topic"]["value"] == "t" * 250
    assert info["channel"]["purpose"]["value"] == "DB is down"
    await expect_error(client.conversations_info(channel="C0MISSING"), "channel_not_found")
    listed = await client.conversations_list()
    assert cid in [c["id"] for c in listed["channels"]]
    # system messages are in history, but not in the messages() accessor by default
    assert sandbox.messages(cid) == []
    subtypes = [m.subtype for m in sandbox.messages(cid, system=True)]
    assert subtypes == ["channel_join", "channel_join", "channel_join", "channel_topic", "channel_purpose"]


# --------------------------------------------------------------------------------------------
# messages
# --------------------------------------------------------------------------------------------


async def test_post_update_history_replies(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    blocks = [section("*Incident* opened"), {"type": "actions", "elements": [button(action_id="ack")]}]
    posted = await client.chat_postMessage(channel="#incidents", text="Incident opened", blocks=blocks)
    cid, ts = posted["channel"], posted["ts"]
    assert cid == "C0INCIDENTS"
    assert posted["message"]["blocks"][0]["block_id"]  # Slack fills in block ids

    reply = await client.chat_postMessage(channel=cid, text="timeline entry", thread_ts=ts)
    updated = await client.chat_update(
        channel=cid, ts=ts, text="Incident acknowledged", blocks=[section("ack")]
    )
    assert updated["text"] == "Incident acknowledged"

    history = await client.conversations_history(channel=cid)
    assert [m["ts"] for m in history["messages"]] == [ts]  # replies stay in the thread
    top = history["messages"][0]
    assert top["text"] == "Incident acknowledged"
    assert top["edited"]["user"] == sandbox.bot_user_id
    assert top["reply_count"] == 1
    replies = await client.conversations_replies(channel=cid, ts=ts)
    assert [m["ts"] for m in replies["messages"]] == [ts, reply["ts"]]

    stored = sandbox.messages(cid)
    assert [m.ts for m in stored] == [ts, reply["ts"]]
    assert float(stored[0].ts) < float(stored[1].ts)
    assert stored[0].edits[0]["text"] == "Incident opened"
    assert sandbox.thread(cid, ts)[0].text == "timeline entry"

    link = await client.chat_getPermalink(channel=cid, message_ts=ts)
    assert link["permalink"].endswith(ts.replace(".", ""))
    await client.reactions_add(channel=cid, timestamp=ts, name="eyes")
    await expect_error(client.reactions_add(channel=cid, timestamp=ts, name="eyes"), "already_reacted")
    await client.chat_delete(channel=cid, ts=reply["ts"])
    assert [m.ts for m in sandbox.messages(cid)] == [ts]


async def test_post_errors(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    await expect_error(client.chat_postMessage(channel="C0NOPE", text="x"), "channel_not_found")
    await expect_error(client.chat_postMessage(channel="#general", text="x"), "not_in_channel")
    with pytest.warns(UserWarning):  # slack_sdk warns client-side before sending
        await expect_error(client.chat_postMessage(channel="C0INCIDENTS"), "no_text")
    await expect_error(
        client.chat_update(channel="C0INCIDENTS", ts="1.000001", text="x"), "message_not_found"
    )
    human = sandbox.add_message("C0INCIDENTS", "I'm on it", user_id="U0BOB")
    await expect_error(
        client.chat_update(channel="C0INCIDENTS", ts=human.ts, text="x"), "cant_update_message"
    )
    eph = await client.chat_postEphemeral(channel="C0INCIDENTS", user="U0ALICE", text="only you")
    assert sandbox.ephemerals_for("U0ALICE")[0].ts == eph["message_ts"]
    sandbox.add_user("U0DAVE", "dave", "Dave Doe", "dave@example.com")
    await expect_error(
        client.chat_postEphemeral(channel="C0INCIDENTS", user="U0DAVE", text="x"), "user_not_in_channel"
    )
    long = await client.chat_postMessage(channel="C0INCIDENTS", text="y" * 40_010)
    assert len(long["message"]["text"]) == 40_000
    dm = await client.chat_postMessage(channel="U0CAROL", text="you are on call")
    assert dm["channel"].startswith("D")


LONG = "x"


@pytest.mark.parametrize(
    ("blocks", "pointer"),
    [
        ([section("hi") for _ in range(51)], "/blocks]"),
        ([section(LONG * 3001)], "/blocks/0/text/text"),
        ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}], "/blocks/0/fields"),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": LONG * 2001}]}],
            "/blocks/0/fields/0/text",
        ),
        ([{"type": "header", "text": {"type": "plain_text", "text": LONG * 151}}], "/blocks/0/text/text"),
        ([{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}], "/blocks/0/text/type"),
        (
            [{"type": "actions", "elements": [button(action_id=f"a{i}") for i in range(26)]}],
            "/blocks/0/elements",
        ),
        ([{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}], "/blocks/0/elements"),
        ([{"type": "actions", "elements": [button(LONG * 76)]}], "/blocks/0/elements/0/text/text"),
        ([{"type": "actions", "elements": [button(value=LONG * 2001)]}], "/blocks/0/elements/0/value"),
        (
            [{"type": "actions", "elements": [button(url="https://x/" + LONG * 3000)]}],
            "/blocks/0/elements/0/url",
        ),
        ([{"type": "actions", "elements": [button(action_id=LONG * 256)]}], "/blocks/0/elements/0/action_id"),
        (
            [{"type": "actions", "elements": [button(action_id="a"), button(action_id="a")]}],
            "/blocks/0/elements/1/action_id",
        ),
        ([section("a", block_id=LONG * 256)], "/blocks/0/block_id"),
        ([section("a", block_id="b"), section("c", block_id="b")], "/blocks/1/block_id"),
        ([{"type": "image", "image_url": "https://x/y.png"}], "/blocks/0]"),
        (
            [{"type": "image", "image_url": "https://x/" + LONG * 3000, "alt_text": "a"}],
            "/blocks/0/image_url",
        ),
        ([{"type": "image", "image_url": "https://x/y.png", "alt_text": LONG * 2001}], "/blocks/0/alt_text"),
        ([{"type": "section", "text": {"type": "markdown", "text": "x"}}], "/blocks/0/text/type"),
        ([section("")], "/blocks/0/text/text"),
        ([{"type": "markdown", "text": LONG * 12001}], "/blocks/0/text"),
        ([{"type": "carousel"}], "/blocks/0]"),
        ([{"type": "section"}], "/blocks/0]"),
    ],
)
async def test_invalid_blocks(client: AsyncWebClient, blocks: list[dict[str, Any]], pointer: str) -> None:
    err = await expect_error(
        client.chat_postMessage(channel="C0INCIDENTS", text="t", blocks=blocks), "invalid_blocks"
    )
    errors = err.response["errors"]
    assert any(f"[json-pointer:{pointer}" in e for e in errors), errors
    assert err.response["response_metadata"]["messages"][0].startswith("[ERROR] ")


async def test_blocks_at_the_limits_are_accepted(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    at_limit = [
        {"type": "header", "text": {"type": "plain_text", "text": LONG * 150}},
        section(LONG * 3000, fields=[{"type": "mrkdwn", "text": LONG * 2000}] * 10),
        {
            "type": "actions",
            "elements": [button(LONG * 75, action_id=f"b{i}", value=LONG * 2000) for i in range(25)],
        },
        {"type": "actions", "elements": [button(action_id="b0")]},  # action_id unique per block only
        {"type": "context", "elements": [{"type": "plain_text", "text": "c"}] * 10},
        {"type": "image", "image_url": "https://x/" + LONG * 2990, "alt_text": LONG * 2000},
        {"type": "markdown", "text": LONG * 12000},
        {"type": "divider"},
        {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": []}]},
    ]
    at_limit += [{"type": "divider"} for _ in range(50 - len(at_limit))]
    assert validate_message_blocks(at_limit) == []
    await client.chat_postMessage(channel="C0INCIDENTS", text="t", blocks=at_limit)
    eph_err = await expect_error(
        client.chat_postEphemeral(channel="C0INCIDENTS", user="U0ALICE", text="t", blocks=[section("")]),
        "invalid_blocks",
    )
    assert eph_err.response["errors"]
    posted = sandbox.messages("C0INCIDENTS")[-1]
    await expect_error(
        client.chat_update(
            channel="C0INCIDENTS", ts=posted.ts, text="t", blocks=[*at_limit, {"type": "divider"}]
        ),
        "invalid_blocks",
    )


async def test_views_are_validated(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    def modal(title: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
        return {"type": "modal", "title": {"type": "plain_text", "text": title}, "blocks": blocks}

    trigger = sandbox.issue_trigger_id("U0ALICE")
    err = await expect_error(
        client.views_open(trigger_id=trigger, view=modal("T" * 25, [])), "invalid_arguments"
    )
    assert (
        "[ERROR] must be less than 25 characters [json-pointer:/view/title/text]"
        in (err.response["response_metadata"]["messages"])
    )
    too_many = [section("s") for _ in range(101)]
    await expect_error(client.views_open(trigger_id=trigger, view=modal("T", too_many)), "invalid_arguments")
    opened = await client.views_open(trigger_id=trigger, view=modal("T" * 24, too_many[:100]))
    await expect_error(client.views_open(trigger_id=trigger, view=modal("T", [])), "exchanged_trigger_id")
    await expect_error(
        client.views_open(trigger_id="123.456.nope", view=modal("T", [])), "invalid_trigger_id"
    )
    view_id = opened["view"]["id"]
    updated = await client.views_update(
        view_id=view_id, view=modal("Updated", []), hash=opened["view"]["hash"]
    )
    assert updated["view"]["title"]["text"] == "Updated"
    await expect_error(
        client.views_update(view_id=view_id, view=modal("U", []), hash="stale"), "hash_conflict"
    )


# --------------------------------------------------------------------------------------------
# rate limits
# --------------------------------------------------------------------------------------------


async def test_forced_429_then_retry_handler_succeeds(sandbox: SlackSandbox) -> None:
    plain = AsyncWebClient(token=sandbox.bot_token, base_url=sandbox.api_url)
    sandbox.force_rate_limit("chat.postMessage", 1)
    err = await expect_error(plain.chat_postMessage(channel="C0INCIDENTS", text="x"), "ratelimited")
    assert err.response.status_code == 429
    assert err.response.headers["Retry-After"] == "1"

    retrying = AsyncWebClient(token=sandbox.bot_token, base_url=sandbox.api_url)
    retrying.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    sandbox.force_rate_limit("chat.postMessage", 1)
    ok = await retrying.chat_postMessage(channel="C0INCIDENTS", text="after retry")
    assert ok["ok"]
    statuses = [c.status for c in sandbox.calls_to("chat.postMessage")]
    assert statuses == [429, 429, 200]


async def test_tier_and_per_channel_limits(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    for i in range(20):  # Tier 2: a minute's allowance of 20 is accepted at once
        await client.conversations_create(name=f"burst-{i}")
    err = await expect_error(client.conversations_create(name="burst-20"), "ratelimited")
    assert int(err.response.headers["Retry-After"]) >= 1

    for i in range(3):  # chat.postMessage: burst of 3 per channel, then 1/s
        await client.chat_postMessage(channel="C0INCIDENTS", text=f"m{i}")
    err = await expect_error(client.chat_postMessage(channel="#incidents", text="m3"), "ratelimited")
    assert err.response.headers["Retry-After"] == "1"
    await client.chat_postMessage(channel="burst-0", text="other channel has its own bucket")


async def test_rate_limits_can_be_disabled() -> None:
    async with SlackSandbox(rate_limits=False) as sb:
        client = AsyncWebClient(token=sb.bot_token, base_url=sb.api_url)
        for i in range(10):
            await client.chat_postMessage(channel="C0INCIDENTS", text=f"m{i}")
        assert len(sb.messages("C0INCIDENTS")) == 10


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


async def test_files_upload_v2_round_trip(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10
    resp = await client.files_upload_v2(
        content=png,
        filename="latency.png",
        title="p99 latency",
        channel="C0INCIDENTS",
        initial_comment="graph for the last hour",
    )
    file_id = resp["file"]["id"]
    assert resp["file"]["title"] == "p99 latency"
    stored = sandbox.files[file_id]
    assert stored.data == png
    assert stored.mimetype == "image/png"
    msg = sandbox.messages("C0INCIDENTS")[-1]
    assert msg.files == [file_id]
    assert msg.text == "graph for the last hour"
    info = await client.files_info(file=file_id)
    assert info["file"]["channels"] == ["C0INCIDENTS"]
    assert info["file"]["size"] == len(png)
    history = await client.conversations_history(channel="C0INCIDENTS")
    assert history["messages"][0]["files"][0]["id"] == file_id


async def test_upload_length_mismatch_and_missing_args(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    await expect_error(
        client.api_call("files.getUploadURLExternal", params={"filename": "x"}), "invalid_arguments"
    )
    url = await client.files_getUploadURLExternal(filename="a.txt", length=10)
    async with aiohttp.ClientSession() as session, session.post(url["upload_url"], data=b"short") as r:
        assert r.status == 400
    await expect_error(
        client.files_completeUploadExternal(files=[{"id": url["file_id"]}], channel_id="C0INCIDENTS"),
        "file_not_found",
    )


# --------------------------------------------------------------------------------------------
# users and groups
# --------------------------------------------------------------------------------------------


async def test_usergroups_and_lookup_by_email(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    sandbox.add_usergroup("S0DB", "db-oncall", ["U0CAROL"])
    assert (await client.usergroups_users_list(usergroup="S0DB"))["users"] == ["U0CAROL"]
    await expect_error(client.usergroups_users_list(usergroup="S0NOPE"), "no_such_subteam")
    groups = await client.usergroups_list(include_users=True)
    assert {g["handle"] for g in groups["usergroups"]} == {"sre-oncall", "db-oncall"}

    found = await client.users_lookupByEmail(email="Alice@Example.com")
    assert found["user"]["id"] == "U0ALICE"
    assert found["user"]["profile"]["email"] == "alice@example.com"
    await expect_error(client.users_lookupByEmail(email="nobody@example.com"), "users_not_found")
    await expect_error(client.users_info(user="U0NOPE"), "user_not_found")
    members = await client.users_list(limit=2)
    assert len(members["members"]) == 2
    assert members["response_metadata"]["next_cursor"]


# --------------------------------------------------------------------------------------------
# wait_for
# --------------------------------------------------------------------------------------------


async def test_wait_for_wakes_on_concurrent_post(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    def posted(sb: SlackSandbox) -> str | None:
        msgs = [m for m in sb.messages("C0INCIDENTS") if m.text == "hello"]
        return msgs[0].ts if msgs else None

    waiter = asyncio.create_task(sandbox.wait_for(posted, timeout=5))
    await asyncio.sleep(0)  # let the waiter park (yield, not a timed sleep)
    assert not waiter.done()
    sent = await client.chat_postMessage(channel="C0INCIDENTS", text="hello")
    assert await waiter == sent["ts"]


async def test_wait_for_timeout_describes_calls(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    await client.auth_test()
    with pytest.raises(TimeoutError, match=r"auth\.test \[200 ok\]"):
        await sandbox.wait_for(lambda sb: sb.channel_by_name("never"), timeout=0.05)


# --------------------------------------------------------------------------------------------
# signing and the driver
# --------------------------------------------------------------------------------------------


def test_sign_is_accepted_by_slack_sdk_verifier() -> None:
    body = b"token=x&command=%2Fincident&text=declare"
    now = int(time.time())
    headers = sign(SIGNING_SECRET, body, now)
    verifier = SignatureVerifier(SIGNING_SECRET)
    assert verifier.is_valid_request(body, headers)
    assert not SignatureVerifier("other-secret").is_valid_request(body, headers)
    assert not verifier.is_valid_request(body, sign(SIGNING_SECRET, body, now - 600))


@pytest.fixture
async def bolt_url(sandbox: SlackSandbox) -> AsyncIterator[str]:
    """A tiny real Bolt app wired to the sandbox: /incident posts a card with a button."""
    app = AsyncApp(
        signing_secret=SIGNING_SECRET,
        client=AsyncWebClient(token=sandbox.bot_token, base_url=sandbox.api_url),
    )

    @app.command("/incident")
    async def incident(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack(text=f"Declaring: {command['text']}")
        created = await client.conversations_create(name="inc-" + command["text"].replace(" ", "-"))
        cid = created["channel"]["id"]
        await client.conversations_invite(channel=cid, users=command["user_id"])
        await client.chat_postMessage(
            channel=cid,
            text="Approve restart?",
            blocks=[
                section("Restart `api`?"),
                {"type": "actions", "elements": [button("Approve", action_id="approve", value="req-1")]},
            ],
        )
        await respond(text=f"Opened <#{cid}>")

    @app.action("approve")
    async def approve(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        who = body["user"]["id"]
        await respond(replace_original=True, text=f"Approved by <@{who}> ({body['actions'][0]['value']})")

    @app.event("reaction_added")
    async def reaction(event: dict[str, Any], client: AsyncWebClient) -> None:
        await client.chat_postMessage(
            channel=event["item"]["channel"], thread_ts=event["item"]["ts"], text=f"saw :{event['reaction']}:"
        )

    @app.command("/declare")
    async def declare(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        options = [{"text": {"type": "plain_text", "text": s.upper()}, "value": s} for s in ("sev1", "sev2")]
        await client.views_open(
            trigger_id=body["trigger_id"],
            view={
                "type": "modal",
                "callback_id": "declare",
                "title": {"type": "plain_text", "text": "Declare an incident"},
                "submit": {"type": "plain_text", "text": "Declare"},
                "blocks": [
                    {
                        "type": "input",
                        "block_id": "summary",
                        "label": {"type": "plain_text", "text": "Summary"},
                        "element": {"type": "plain_text_input", "action_id": "value"},
                    },
                    {
                        "type": "input",
                        "block_id": "sev",
                        "label": {"type": "plain_text", "text": "Severity"},
                        "element": {"type": "static_select", "action_id": "pick", "options": options},
                    },
                ],
            },
        )

    @app.view("declare")
    async def declared(ack: AsyncAck, view: dict[str, Any], client: AsyncWebClient) -> None:
        values = view["state"]["values"]
        summary = values["summary"]["value"]["value"]
        if len(summary) < 3:
            await ack(response_action="errors", errors={"summary": "Too short"})
            return
        await ack()
        severity = values["sev"]["pick"]["selected_option"]["value"]
        await client.chat_postMessage(channel="C0INCIDENTS", text=f"{severity}: {summary}")

    @app.event("message")
    async def on_message(event: dict[str, Any], say: Any) -> None:
        await say(text=f"hi <@{event['user']}>", thread_ts=event["ts"])

    async def handle(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

    web_app = web.Application()
    web_app.router.add_post("/slack/events", handle)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/slack/events"
    finally:
        await runner.cleanup()


async def test_driver_command_click_and_event_through_bolt(sandbox: SlackSandbox, bolt_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        driver = SlackDriver(sandbox, bolt_url, SIGNING_SECRET, session)

        rejected = await driver.post(
            b"command=%2Fincident", "application/x-www-form-urlencoded", signature="v0=bad"
        )
        assert rejected.status == 401

        result = await driver.slash_command("/incident", "db down", user_id="U0BOB")
        assert result.status == 200
        assert "Declaring: db down" in result.body
        opened = await sandbox.wait_for(lambda sb: [r for r in sb.responses if r.text.startswith("Opened")])
        channel = sandbox.channel_by_name("inc-db-down")
        assert channel is not None
        assert opened[0].response_type == "ephemeral"
        assert "U0BOB" in channel.members
        assert sorted(e.source for e in sandbox.ephemerals_for("U0BOB")) == ["ack", "response_url"]

        card = await sandbox.wait_for(lambda sb: next(iter(sb.messages(channel.id)), None))
        clicked = await driver.click("approve", user_id="U0ALICE")
        assert clicked.status == 200

        def replaced(sb: SlackSandbox) -> str | None:
            text = sb.messages(channel.id)[0].text
            return text if text.startswith("Approved") else None

        assert await sandbox.wait_for(replaced) == "Approved by <@U0ALICE> (req-1)"
        assert card.edits[0]["text"] == "Approve restart?"

        reacted = await driver.reaction_added("eyes", channel_id=channel.id, ts=card.ts)
        assert reacted.status == 200
        note = await sandbox.wait_for(lambda sb: sb.thread(channel.id, card.ts))
        assert note[0].text == "saw :eyes:"

        with pytest.raises(LookupError, match="nope"):
            await driver.click("nope")


async def test_driver_modal_submission_and_message_event(sandbox: SlackSandbox, bolt_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        driver = SlackDriver(sandbox, bolt_url, SIGNING_SECRET, session)
        assert (await driver.slash_command("/declare")).status == 200
        view = await sandbox.wait_for(lambda sb: next((v for v in sb.views.values() if not v.closed), None))
        assert view.user_id == "U0ALICE"

        bad = await driver.submit_view(view.id, {"summary": {"value": "x"}, "sev": {"pick": "sev1"}})
        assert bad.json() == {"response_action": "errors", "errors": {"summary": "Too short"}}
        assert not view.closed

        good = await driver.submit_view(view.id, {"summary": {"value": "db down"}, "sev": {"pick": "sev2"}})
        assert good.status == 200
        assert view.closed
        await sandbox.wait_for(
            lambda sb: [m for m in sb.messages("C0INCIDENTS") if m.text == "sev2: db down"]
        )

        said = await driver.user_message("C0INCIDENTS", "anyone there?", user_id="U0CAROL")
        assert said.status == 200
        asked = sandbox.messages("C0INCIDENTS")[-1]
        reply = await sandbox.wait_for(lambda sb: sb.thread("C0INCIDENTS", asked.ts))
        assert reply[0].text == "hi <@U0CAROL>"


async def test_expired_trigger(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    sandbox.trigger_ttl = -1.0
    view = {"type": "modal", "title": {"type": "plain_text", "text": "T"}, "blocks": []}
    await expect_error(
        client.views_open(trigger_id=sandbox.issue_trigger_id("U0ALICE"), view=view), "expired_trigger_id"
    )


async def test_response_url_rules(sandbox: SlackSandbox) -> None:
    url = sandbox.new_response_url("command", user_id="U0ALICE", channel_id="C0INCIDENTS")
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"text": "x", "blocks": [section("")]}) as r:
            assert (r.status, await r.text()) == (400, "invalid_blocks")
        async with session.post(url, json={"text": ""}) as r:
            assert (r.status, await r.text()) == (400, "no_text")
        for i in range(5):
            async with session.post(url, json={"text": f"update {i}", "response_type": "in_channel"}) as r:
                assert r.status == 200
        async with session.post(url, json={"text": "sixth"}) as r:
            assert (r.status, await r.text()) == (404, "used_url")
    assert [m.text for m in sandbox.messages("C0INCIDENTS")] == [f"update {i}" for i in range(5)]
    assert [r.status for r in sandbox.responses] == [400, 400, 200, 200, 200, 200, 200, 404]


async def test_snapshot_is_json(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel="C0INCIDENTS", text="snap", blocks=[section("snap")])
    await client.files_upload_v2(content=b"abc", filename="a.txt", channel="C0INCIDENTS")
    snap = json.loads(json.dumps(sandbox.snapshot()))
    incidents = next(c for c in snap["channels"] if c["id"] == "C0INCIDENTS")
    assert [m["text"] for m in incidents["messages"]] == ["snap", ""]
    assert snap["files"][0]["name"] == "a.txt"
    async with aiohttp.ClientSession() as session, session.get(f"{sandbox.base_url}/snapshot") as r:
        assert (await r.json())["team"]["id"] == sandbox.team_id
