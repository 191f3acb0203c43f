"""Lifecycle authorization and silence rules: the pure parts (which permission a change
needs, how a refusal names the roles, which matchers widen a silence). The decisions against
Slack and the policy's roles are exercised through signed requests in
tests/integration/test_authorization.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.clients.alertmanager import Matcher
from bot.core.blockkit import inline, mention, single_line
from bot.core.incident import Incident, IncidentSource, IncidentStatus, Severity
from bot.core.policy import CHANNEL_MEMBERS, COMMANDER, Permission
from bot.flows.authorize import resolve_permission, severity_permission, who_may
from bot.flows.silences import broad_reason


def _incident(severity: Severity, pagerduty: str | None = None) -> Incident:
    return Incident(
        id=1,
        group_key="g",
        title="t",
        severity=severity,
        status=IncidentStatus.TRIGGERED,
        source=IncidentSource.ALERTMANAGER,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        pagerduty_incident_id=pagerduty,
    )


@pytest.mark.parametrize(
    ("current", "wanted", "permission"),
    [
        (Severity.P1, Severity.P4, Permission.SEVERITY_DOWNGRADE),
        (Severity.P1, Severity.P2, Permission.SEVERITY_DOWNGRADE),
        (Severity.P2, Severity.P3, Permission.SEVERITY_DOWNGRADE),
        (Severity.P2, Severity.P1, Permission.SEVERITY),
        (Severity.P3, Severity.P4, Permission.SEVERITY),
        (Severity.P4, Severity.P1, Permission.SEVERITY),
        (Severity.P1, Severity.P1, Permission.SEVERITY),
    ],
)
def test_lowering_a_p1_or_p2_is_its_own_permission(
    current: Severity, wanted: Severity, permission: Permission
) -> None:
    assert severity_permission(_incident(current), wanted) is permission


def test_resolving_a_pagerduty_incident_is_its_own_permission() -> None:
    assert resolve_permission(_incident(Severity.P3)) is Permission.RESOLVE
    assert resolve_permission(_incident(Severity.P3, pagerduty="PABC123")) is Permission.RESOLVE_PAGED


def test_refusals_name_the_roles_in_words() -> None:
    assert who_may([CHANNEL_MEMBERS, COMMANDER, "sre"], Permission.ACK) == (
        "members of the incident's channel, the incident's commander, `sre`"
    )
    assert "`lifecycle.silence`" in who_may([], Permission.SILENCE)


@pytest.mark.parametrize(
    ("matcher", "reason"),
    [
        (Matcher("alertname", ".+", is_regex=True), "matches (nearly) everything"),
        (Matcher("alertname", ".*", is_regex=True), "matches (nearly) everything"),
        (Matcher("job", "(?s).*", is_regex=True), "matches (nearly) everything"),
        (Matcher("job", "[", is_regex=True), "matches (nearly) everything"),
        (Matcher("team", "db", is_equal=False), "is negative"),
        (Matcher("team", "d.*", is_regex=True, is_equal=False), "is negative"),
        (Matcher("pod", ""), "without the label"),
        (Matcher("pod", "pod-s.*", is_regex=True), None),
        (Matcher("alertname", "HighErrorRate|HighLatency", is_regex=True), None),
        (Matcher("namespace", "shop"), None),
    ],
)
def test_which_matchers_widen_a_silence(matcher: Matcher, reason: str | None) -> None:
    found = broad_reason(matcher)
    assert (found is None) if reason is None else (found is not None and reason in found)


def test_inline_values_are_one_escaped_line_without_formatting() -> None:
    hostile = "ok\n*Status*\r\n✅ Resolved\u2028<!channel> `code` ~strike~ \u202eevil & <@U1>"
    shown = inline(hostile)
    assert "\n" not in shown and "\r" not in shown and "\u2028" not in shown and "\u202e" not in shown
    assert (
        "<" not in shown and ">" not in shown and "*" not in shown and "`" not in shown and "~" not in shown
    )
    assert shown.startswith("ok ∗Status∗ ✅ Resolved &lt;!channel&gt;")
    assert inline("x" * 50, 10) == "x" * 9 + "…"
    assert inline("a < b", 3) == "a …"  # clipped before escaping: no half entity
    assert single_line("  a\tb\n\nc  ") == "a b c"


def test_mentions_only_for_slack_user_ids() -> None:
    assert mention("U0ALICE") == "<@U0ALICE>"
    assert mention("Bob <!channel> (PagerDuty)") == "Bob &lt;!channel&gt; (PagerDuty)"
