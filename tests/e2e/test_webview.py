"""End to end in headless Chromium: the sandbox web view drives the bot as Slack would.

The whole `incidentbot sandbox` stack runs in-process (real Postgres/Redis, sandbox Slack,
sandbox Kubernetes seeded with the demo systems, sandbox PagerDuty, the bot, the web view);
Playwright drives Debian's Chromium against the page. Every wait is bounded (Playwright's
`expect` timeouts or the sandboxes' `wait_for`); screenshots of each step go to
artifacts/screenshots/.
"""

from __future__ import annotations

import io
import re
import time
from typing import Any

from matplotlib.figure import Figure
from playwright.async_api import Locator, Page, expect

from sandbox.runner import DEMO_ALERTS, SandboxStack
from sandbox.slack import SandboxFile
from tests.e2e.conftest import Shots

WAIT = 30_000  # ms, for anything that goes through the bot
QUICK = 10_000  # ms, for what the page does by itself


def deployment_row(page: Page, namespace: str, name: str) -> Locator:
    return page.locator(f'tr[data-deployment="{namespace}/{name}"]')


def message(page: Page, text: str | re.Pattern[str]) -> Locator:
    """A message of the selected channel that contains `text`."""
    return page.locator("#messages .msg").filter(has_text=text)


async def act_as(page: Page, user_id: str) -> None:
    await page.get_by_test_id("user-picker").select_option(user_id)
    await expect(page.get_by_test_id("user-picker")).to_have_value(user_id)


async def type_command(page: Page, line: str) -> None:
    box = page.get_by_test_id("command-input")
    await box.fill(line)
    await box.press("Enter")
    await expect(page.get_by_test_id("status")).to_contain_text(f"sent {line}", timeout=WAIT)


async def approve_proposal(page: Page, stack: SandboxStack, shots: Shots) -> None:
    """The playbook's proposal (rollout_restart skillquest/skillquest-api), approved by @bob."""
    row = deployment_row(page, "skillquest", "skillquest-api")
    before = int(await row.get_attribute("data-revision") or "0")
    proposal = message(page, "Remediation proposed").filter(
        has=page.locator('[data-action-id="approve_action"]')
    )
    await expect(proposal.first).to_be_visible(timeout=WAIT)
    await proposal.first.scroll_into_view_if_needed()
    await shots.take(page, "proposal")
    await act_as(page, "U0BOB")
    await proposal.first.locator('[data-action-id="approve_action"]').click()
    if await page.locator("#modal").is_visible():
        await page.get_by_test_id("modal-confirm").click()
    await expect(message(page, "Remediation succeeded").first).to_be_visible(timeout=WAIT)
    await expect(row).to_have_attribute("data-revision", str(before + 1), timeout=WAIT)
    await expect(row.locator("td.replicas")).not_to_have_class(re.compile("not-ready"), timeout=WAIT)
    await shots.take(page, "approved-restart")


async def approve_scale_command(page: Page, stack: SandboxStack, shots: Shots) -> None:
    """`/incident run scale api/search-api replicas=9` typed by @alice, approved by @bob."""
    row = deployment_row(page, "api", "search-api")
    await act_as(page, "U0ALICE")
    await type_command(page, "/incident run scale api/search-api replicas=9")
    proposal = message(page, "search-api").filter(has=page.locator('[data-action-id="approve_action"]'))
    await expect(proposal.last).to_be_visible(timeout=WAIT)
    await shots.take(page, "proposal")
    await act_as(page, "U0BOB")
    await proposal.last.locator('[data-action-id="approve_action"]').click()
    if await page.locator("#modal").is_visible():
        await page.get_by_test_id("modal-confirm").click()
    await expect(row).to_have_attribute("data-replicas", "9", timeout=WAIT)
    await expect(row.locator("td.replicas")).to_have_text("9 / 9", timeout=WAIT)
    await shots.take(page, "approved-scale")


async def test_incident_journey_in_the_browser(page: Page, stack: SandboxStack, shots: Shots) -> None:
    assert stack.web_url is not None
    await page.goto(stack.web_url)
    await expect(page.get_by_test_id("live")).to_have_text("live", timeout=QUICK)
    await expect(page.get_by_test_id("channel-title")).to_have_text("#incident")
    await expect(deployment_row(page, "skillquest", "skillquest-api")).to_be_visible()
    await shots.take(page, "opened")

    # Fire the SkillQuest sample alert from the page.
    skillquest = next(
        i for i, (_, labels, _) in enumerate(DEMO_ALERTS) if labels["namespace"] == "skillquest"
    )
    alertname = DEMO_ALERTS[skillquest][0]
    await page.get_by_test_id(f"fire-{alertname}").click()
    await expect(page.get_by_test_id("status")).to_contain_text(f"fired {alertname}", timeout=WAIT)
    # The notification in #incident, then the incident channel in the sidebar.
    await expect(message(page, "SkillQuest API is down").first).to_be_visible(timeout=WAIT)
    incident = page.locator('#channels button[data-channel-name^="inc-"]')
    await expect(incident).to_have_count(1, timeout=WAIT)
    await expect(incident).to_contain_text("skillquest")
    await shots.take(page, "fired")

    # The incident channel: the card and the runbook.
    await incident.click()
    await expect(page.get_by_test_id("channel-title")).to_have_text(re.compile(r"^#inc-.*skillquest"))
    card = message(page, re.compile(r"\[P1\] SkillQuest API is down")).filter(
        has=page.locator('[data-action-id="ack_incident"]')
    )
    await expect(card).to_have_count(1, timeout=WAIT)
    await expect(card.locator(".block-header")).to_contain_text("SkillQuest API is down")
    card = page.locator(f'#messages .msg[data-ts="{await card.get_attribute("data-ts")}"]')
    # The runbook message (the proposals after it name the playbook too).
    runbook = message(page, "playbook skillquest-api-down").filter(
        has=page.locator(".block-header", has_text="📘")
    )
    await expect(runbook).to_be_visible(timeout=WAIT)
    await expect(runbook.locator(".block-header")).to_have_text("📘 SkillQuest API is down")
    await expect(runbook).to_contain_text("3. Restart the API")
    await expect(runbook.locator("b").filter(has_text="Remediations in this runbook")).to_be_visible()
    await shots.take(page, "incident-channel")

    # Acknowledge from the card as @bob: a signed block_actions through SlackDriver.click.
    await act_as(page, "U0BOB")
    await card.locator('[data-action-id="ack_incident"]').click()
    await expect(card).to_contain_text(re.compile("acknowledged", re.IGNORECASE), timeout=WAIT)
    await expect(card).to_contain_text("@bob", timeout=WAIT)
    await expect(card.locator(".mention").filter(has_text="@bob").first).to_be_visible()
    await shots.take(page, "acknowledged")

    # A slash command typed as @carol in the incident channel; the ephemeral reply is hers only.
    await act_as(page, "U0CAROL")
    await type_command(page, "/incident help")
    reply = page.locator("#messages .msg.ephemeral").filter(has_text="/incident")
    await expect(reply.last).to_be_visible(timeout=WAIT)
    await expect(reply.last).to_contain_text("Only visible to you (@carol)")
    await shots.take(page, "ephemeral-help")
    await act_as(page, "U0ALICE")
    await expect(reply).to_have_count(0)

    # Approving remediations and watching the deployment panel change: the playbook's restart
    # proposal, then an ad-hoc `/incident run scale ...` typed in the command box.
    await approve_proposal(page, stack, shots)
    await approve_scale_command(page, stack, shots)

    # The cluster panel follows the cluster live, whoever changes it: a restart from outside.
    row = deployment_row(page, "skillquest", "skillquest-api")
    revision = int(await row.get_attribute("data-revision") or "0")
    replicas = await row.get_attribute("data-replicas")

    def restart(dep: dict[str, Any]) -> None:
        template = dep["spec"]["template"]
        annotations = template.setdefault("metadata", {}).setdefault("annotations", {})
        annotations["kubectl.kubernetes.io/restartedAt"] = "2026-11-22T16:10:00Z"

    stack.kube.modify("deployments", "skillquest", "skillquest-api", restart)
    await expect(row).to_have_attribute("data-revision", str(revision + 1), timeout=WAIT)
    await expect(row.locator("td.revision")).to_have_text(str(revision + 1))
    await expect(row).to_have_attribute("data-ready", replicas or "", timeout=WAIT)
    await expect(row.locator("td.replicas")).not_to_have_class(re.compile("not-ready"))
    await shots.take(page, "cluster-restarted")

    # Resolve the sample alert from the page: the bot says so in the incident channel.
    await page.get_by_test_id(f"resolve-{alertname}").click()
    await expect(message(page, "have resolved").first).to_be_visible(timeout=WAIT)
    await shots.take(page, "alert-resolved")


def graph_png() -> bytes:
    figure = Figure(figsize=(6, 2.4), dpi=80)
    axes = figure.add_subplot()
    axes.plot([0, 1, 2, 3, 4, 5], [0.2, 0.25, 1.8, 2.4, 2.2, 0.3], color="#cd2553")
    axes.set_title("search-api p95 latency (s)")
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


async def test_blocks_render_escaped_with_mrkdwn_and_images(
    page: Page, stack: SandboxStack, shots: Shots
) -> None:
    assert stack.web_url is not None
    slack = stack.slack
    png = graph_png()
    slack.files["F0GRAPH"] = SandboxFile(
        id="F0GRAPH",
        name="search-api-p95.png",
        length=len(png),
        user=slack.bot_user_id,
        created=int(time.time()),
        title="search-api p95 latency",
        data=png,
        completed=True,
    )
    hostile = '<img src=x onerror="window.pwned=1"> <script>window.pwned=2</script>'
    stack.slack.add_message(
        "C0GENERAL",
        "fallback",
        user_id="U0CAROL",
        blocks=[
            {"type": "header", "text": {"type": "plain_text", "text": hostile}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*bold* _italic_ ~gone~ `code` <https://example.com/x|a link> <@U0BOB> "
                    "<#C0INCIDENTS> <!subteam^S0SRE> &lt;b&gt;not bold&lt;/b&gt;\n```line 1\nline 2```",
                },
                "fields": [{"type": "mrkdwn", "text": "*Service*\nskillquest-api"}],
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": hostile}]},
            {"type": "divider"},
        ],
    )
    slack.add_message(
        "C0GENERAL",
        "graph",
        user_id=slack.bot_user_id,
        blocks=[
            {
                "type": "image",
                "slack_file": {"id": "F0GRAPH"},
                "alt_text": "p95 graph",
                "title": {"type": "plain_text", "text": "p95 (image block)"},
            }
        ],
    )
    upload = slack.add_message("C0GENERAL", "", user_id=slack.bot_user_id)
    upload.files.append("F0GRAPH")
    confirm = {
        "title": {"type": "plain_text", "text": "Really?"},
        "text": {"type": "mrkdwn", "text": "This does *nothing* at all"},
        "confirm": {"type": "plain_text", "text": "Do it"},
        "deny": {"type": "plain_text", "text": "Keep it"},
    }
    slack.add_message(
        "C0GENERAL",
        "buttons",
        user_id=slack.bot_user_id,
        blocks=[
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Careful"},
                        "action_id": "careful_action",
                        "style": "danger",
                        "confirm": confirm,
                    }
                ],
            }
        ],
    )
    await page.goto(stack.web_url + "#C0GENERAL")
    await expect(page.get_by_test_id("channel-title")).to_have_text("#general", timeout=QUICK)
    msg = page.locator("#messages .msg").nth(0)
    await expect(msg.locator(".block-header")).to_have_text(hostile)
    await expect(msg.locator("img")).to_have_count(0)
    await expect(msg.locator("script")).to_have_count(0)
    assert await page.evaluate("window.pwned === undefined")
    section = msg.locator(".block-section")
    await expect(section.locator("b").first).to_have_text("bold")
    await expect(section.locator("i")).to_have_text("italic")
    await expect(section.locator("s")).to_have_text("gone")
    await expect(section.locator("code")).to_have_text("code")
    link = section.locator("a")
    await expect(link).to_have_text("a link")
    await expect(link).to_have_attribute("href", "https://example.com/x")
    await expect(section.locator(".mention")).to_have_text(["@bob", "#incident", "@sre-oncall"])
    await expect(section).to_contain_text("<b>not bold</b>")
    await expect(section.locator("pre")).to_have_text("line 1\nline 2")
    await expect(section.locator(".fields b")).to_have_text("Service")
    await expect(msg.locator(".block-context")).to_have_text(hostile)
    await expect(msg.locator("hr.block-divider")).to_have_count(1)
    # The graph, as an image block and as an uploaded file, served from the sandbox's bytes.
    await expect(page.locator('#messages img[src="/files/F0GRAPH"]')).to_have_count(2)
    await expect(page.locator("#messages .file .file-title")).to_have_text("search-api p95 latency")
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#messages img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=QUICK,
    )
    await shots.take(page, "rendered")

    # A button with a confirm dialog: denied, nothing is sent; confirmed, the click goes out.
    careful = page.locator('[data-action-id="careful_action"]')
    await careful.click()
    await expect(page.locator("#modal")).to_be_visible()
    await expect(page.locator("#modal-title")).to_have_text("Really?")
    await expect(page.locator("#modal-text b")).to_have_text("nothing")
    await shots.take(page, "confirm-dialog")
    await page.get_by_test_id("modal-deny").click()
    await expect(page.locator("#modal")).to_be_hidden()
    await expect(page.get_by_test_id("status")).to_have_text("")
    await careful.click()
    await page.get_by_test_id("modal-confirm").click()
    # The bot has no handler for this action: Bolt, past the signature check (a bad signature
    # is a 401), answers "unhandled request".
    await expect(page.get_by_test_id("status")).to_contain_text(
        "“Careful”: the bot answered HTTP 404", timeout=WAIT
    )
    await shots.take(page, "confirmed")


async def test_the_pagerduty_side_is_shown_beside_slack(
    page: Page, stack: SandboxStack, shots: Shots
) -> None:
    """A PagerDuty incident opens its Slack channel; acknowledging it in Slack shows in the
    page's PagerDuty panel (the sandbox account, as a responder would see it in PagerDuty)."""
    assert stack.web_url is not None
    await page.goto(stack.web_url)
    await expect(page.get_by_test_id("live")).to_have_text("live", timeout=QUICK)
    panel = page.get_by_test_id("pagerduty")
    await expect(panel).to_contain_text("No PagerDuty incident yet")
    pd = stack.pagerduty
    paged = pd.create_incident("Checkout latency above SLO")
    row = panel.locator(f'li[data-number="{paged.number}"]')
    await expect(row).to_have_attribute("data-status", "triggered", timeout=WAIT)
    await expect(row).to_contain_text("Checkout latency above SLO")
    assert await pd.send_webhook(stack.bot_url + "/webhooks/pagerduty", "incident.triggered", paged.id) == 202
    channel = page.locator('#channels button[data-channel-name^="inc-"]')
    await expect(channel).to_have_count(1, timeout=WAIT)
    await channel.click()
    card = message(page, "Checkout latency above SLO").filter(
        has=page.locator('[data-action-id="ack_incident"]')
    )
    await expect(card).to_have_count(1, timeout=WAIT)
    await act_as(page, "U0BOB")
    await card.locator('[data-action-id="ack_incident"]').click()
    await expect(row).to_have_attribute("data-status", "acknowledged", timeout=WAIT)
    await expect(row).to_contain_text("acknowledged")
    await shots.take(page, "pagerduty-acknowledged")
