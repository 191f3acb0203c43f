"""The team notification: what it shows before and after the acknowledgement and resolution."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.core.incident import (
    Alert,
    AlertStatus,
    Incident,
    IncidentSource,
    IncidentStatus,
    IncidentView,
    Severity,
)
from bot.render.notification import JOIN_ACTION, OPEN_LINK_ACTION, notification
from sandbox.slack import validate_message_blocks

NOW = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)
INCIDENT = Incident(
    7,
    "k",
    "Checkout errors",
    Severity.P1,
    IncidentStatus.TRIGGERED,
    IncidentSource.ALERTMANAGER,
    NOW - timedelta(minutes=5),
    channel_id="C123",
    last_status_update="rolling back",
)
ALERT = Alert(
    "f1",
    AlertStatus.FIRING,
    NOW,
    None,
    {"alertname": "HighErrorRate", "namespace": "shop"},
    {
        "summary": "Checkout errors",
        "description": "5xx <above> 5%",
        "value": "7%",
        "runbook_url": "javascript:x",
    },
    "",
)


def _shown(incident: Incident) -> tuple[str, set[str]]:
    msg = notification(IncidentView(incident, (ALERT,), service_title="Checkout"), NOW, ["<@U0ONCALL>"])
    assert not validate_message_blocks(msg.blocks)
    ids = {str(e.get("action_id")) for b in msg.blocks if b["type"] == "actions" for e in b["elements"]}
    return json.dumps(msg.blocks, ensure_ascii=False), ids


def test_the_description_value_and_on_call_are_shown_and_a_bad_runbook_url_is_no_link() -> None:
    shown, ids = _shown(INCIDENT)
    assert "5xx &lt;above&gt; 5%" in shown and "7%" in shown and "<@U0ONCALL>" in shown
    assert "`shop`" in shown and "Checkout" in shown
    assert "javascript:" not in shown.replace("Open the runbook", "")
    assert "_Latest:_ rolling back" in shown
    assert {"ack_incident", JOIN_ACTION, OPEN_LINK_ACTION} <= ids


def test_after_the_acknowledgement_join_and_open_remain() -> None:
    _, ids = _shown(replace(INCIDENT, status=IncidentStatus.ACKNOWLEDGED, acknowledged_by="U0ACK"))
    assert "ack_incident" not in ids and {JOIN_ACTION, OPEN_LINK_ACTION} <= ids


def test_a_resolved_incident_shows_its_resolution_not_a_stale_status() -> None:
    shown, _ = _shown(replace(INCIDENT, status=IncidentStatus.RESOLVED, resolution_summary="fixed the pool"))
    assert "Latest" not in shown and "rolling back" not in shown
    assert "_Resolution:_ fixed the pool" in shown
