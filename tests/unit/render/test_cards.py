"""Incident cards and notifications stay within Slack's limits whatever the alerts hold."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.core.incident import (
    Alert,
    AlertStatus,
    Incident,
    IncidentSource,
    IncidentStatus,
    IncidentView,
    Severity,
    TimelineEvent,
)
from bot.render import cards
from bot.render.notification import notification
from sandbox.slack import validate_message_blocks

NOW = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)


def _incident(**changes: Any) -> Incident:
    base: dict[str, Any] = {
        "id": 7,
        "group_key": "k",
        "title": "Checkout errors",
        "severity": Severity.P1,
        "status": IncidentStatus.TRIGGERED,
        "source": IncidentSource.ALERTMANAGER,
        "created_at": NOW - timedelta(minutes=5),
        "channel_id": "C123",
    }
    base.update(changes)
    return Incident(**base)


def _alert(i: int, name: str = "HighErrorRate", **labels: str) -> Alert:
    return Alert(
        fingerprint=f"f{i}",
        status=AlertStatus.FIRING if i % 3 else AlertStatus.RESOLVED,
        starts_at=NOW - timedelta(minutes=i),
        ends_at=None,
        labels={"alertname": name, "namespace": "shop", "pod": f"pod-{i}", **labels},
        annotations={"summary": "5xx > 5% " * 50, "description": "x" * 5000, "runbook_url": "https://r/x"},
        generator_url="http://prom/graph?g0.expr=up",
    )


@pytest.mark.parametrize("count,names", [(1, 1), (2, 1), (500, 1), (500, 40)])
def test_card_and_notification_within_limits(count: int, names: int) -> None:
    alerts = tuple(_alert(i, name=f"Alert{i % names}") for i in range(count))
    view = IncidentView(
        _incident(last_status_update="y" * 5000),
        alerts,
        external_url="http://am:9093",
        grafana_url="http://grafana",
    )
    for msg in (cards.incident_card(view, NOW), notification(view, NOW)):
        assert validate_message_blocks(msg.blocks) == []
        assert msg.text and len(msg.text) <= 4000


def test_hostile_alert_text_is_escaped() -> None:
    alert = _alert(1, pod="<!channel> *bold*", team="<@U999>")
    alert = Alert(
        alert.fingerprint,
        AlertStatus.FIRING,
        alert.starts_at,
        None,
        alert.labels,
        {"summary": "<!here> & <https://evil|click>"},
        "javascript:alert(1)",
    )
    view = IncidentView(_incident(title="<!channel> title"), (alert,))
    for msg in (cards.incident_card(view, NOW), notification(view, NOW)):
        # Only mrkdwn is parsed for mentions (header text is plain_text, shown literally).
        mrkdwn = [msg.text, *_mrkdwn(msg.blocks)]
        text = "\n".join(mrkdwn)
        assert "<!channel>" not in text and "<!here>" not in text and "<@U999>" not in text
        assert "javascript:" not in text
    assert "&lt;!here&gt;" in "\n".join(_mrkdwn(cards.incident_card(view, NOW).blocks))


def _mrkdwn(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        if value.get("type") == "mrkdwn":
            yield value["text"]
        for item in value.values():
            yield from _mrkdwn(item)
    elif isinstance(value, list):
        for item in value:
            yield from _mrkdwn(item)


def test_buttons_carry_opaque_ids_and_disappear_once_acknowledged() -> None:
    view = IncidentView(_incident(), (_alert(1),))
    card = cards.incident_card(view, NOW)
    buttons = [e for b in card.blocks if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], b["value"]) for b in buttons] == [("ack_incident", "7"), ("edit_incident", "7")]
    acked = IncidentView(_incident(status=IncidentStatus.ACKNOWLEDGED, acknowledged_by="U0ACK"), (_alert(1),))
    assert "ack_incident" not in json.dumps(cards.incident_card(acked, NOW).blocks)
    assert "<@U0ACK>" in json.dumps(notification(acked, NOW).blocks)


def test_topic_fits_slack() -> None:
    view = IncidentView(_incident(title="t" * 400), ())
    assert len(cards.topic(view)) <= 250


def test_announcement_keeps_mentions() -> None:
    msg = cards.announcement(TimelineEvent(NOW, "escalated", "🚨 Escalating <!subteam^S1>"))
    assert "<!subteam^S1>" in json.dumps(msg.blocks)
