"""PagerDuty V3 webhook parsing and signatures (bot/pagerduty.py; protocols B.1)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from bot.sources.pagerduty import (
    INCIDENT_EVENT_TYPES,
    EventType,
    GenericData,
    IncidentData,
    IncidentNoteData,
    IncidentStatus,
    PagerDutyWebhookError,
    Urgency,
    alertmanager_join_keys,
    parse_webhook,
    sign,
    verify_signature,
)

# The minimal example from PagerDuty's docs (protocols B.1), byte for byte in spirit.
DOC_EXAMPLE = (
    b'{"event":{"id":"5ac64822-4adc-4fda-ade0-410becf0de4f","event_type":"incident.acknowledged",'
    b'"resource_type":"incident","occurred_at":"2020-10-02T18:45:22.169Z",'
    b'"agent":{"id":"PLH1HKV","type":"user_reference","summary":"Tenex Engineer"},'
    b'"client":{"name":"PagerDuty"},'
    b'"data":{"id":"PGR0VU2","type":"incident","number":2,"status":"acknowledged","incident_key":"d3640f",'
    b'"title":"A little bump in the road","service":{"id":"PF9KMXH","type":"service_reference",'
    b'"summary":"API Service"},"urgency":"high","html_url":"https://acme.pagerduty.com/incidents/PGR0VU2"}}}'
)

INCIDENT_REF = {
    "id": "PGR0VU2",
    "type": "incident_reference",
    "summary": "[#2] A little bump in the road",
    "self": "https://api.pagerduty.com/incidents/PGR0VU2",
    "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
}


def full_incident(status: str = "triggered") -> dict[str, Any]:
    return {
        "id": "PGR0VU2",
        "type": "incident",
        "self": "https://api.pagerduty.com/incidents/PGR0VU2",
        "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
        "number": 2,
        "status": status,
        "incident_key": "d3640fbd41094207a1c11e58e46b1662",
        "created_at": "2020-04-09T15:16:27Z",
        "reopened_at": None,
        "title": "A little bump in the road",
        "incident_type": {"name": "incident_default"},
        "service": {"id": "PF9KMXH", "type": "service_reference", "summary": "API Service"},
        "assignees": [{"id": "PTUXL6G", "type": "user_reference", "summary": "User 123"}],
        "escalation_policy": {"id": "PUS0KTE", "type": "escalation_policy_reference", "summary": "Default"},
        "teams": [{"id": "PFCVPS0", "type": "team_reference", "summary": "Engineering"}],
        "priority": {"id": "PSO75BM", "type": "priority_reference", "summary": "P1"},
        "urgency": "high",
        "conference_bridge": {"conference_number": "+1 1234123412,,987654321#", "conference_url": None},
        "resolve_reason": None,
        "a_field_pagerduty_added_later": {"x": 1},
    }


def envelope(event_type: str, data: Any, **event: Any) -> bytes:
    body = {
        "event": {
            "id": "01CQJZ7WQ5AN1M5Y8GKP3S6T5Z",
            "event_type": event_type,
            "resource_type": event_type.split(".", 1)[0],
            "occurred_at": "2020-10-02T18:45:22.169Z",
            "agent": {"id": "PLH1HKV", "type": "user_reference", "summary": "Tenex Engineer"},
            "client": {"name": "PagerDuty"},
            "data": data,
            **event,
        }
    }
    return json.dumps(body).encode()


STATUS_OF = {
    "incident.acknowledged": "acknowledged",
    "incident.resolved": "resolved",
}

# Listed in protocols B.1 whose data is not the incident itself.
OTHER_INCIDENT_TYPES = [
    "incident.responder.added",
    "incident.responder.replied",
    "incident.status_update_published",
    "incident.conference_bridge.updated",
    "incident.custom_field_values.updated",
    "incident.role.assigned",
    "incident.task.created",
    "incident.task.updated",
    "incident.task.completed",
    "incident.action_invocation.created",
    "incident.action_invocation.updated",
    "incident.action_invocation.terminated",
    "incident.workflow.started",
    "incident.workflow.completed",
]
SERVICE_TYPES = [
    "service.created",
    "service.updated",
    "service.deleted",
    "service.custom_field_values.updated",
]


# -- parsing ----------------------------------------------------------------------------


def test_parses_the_documented_example() -> None:
    event = parse_webhook(DOC_EXAMPLE)
    assert event.id == "5ac64822-4adc-4fda-ade0-410becf0de4f"
    assert event.event_type == "incident.acknowledged"
    assert event.known_type is EventType.INCIDENT_ACKNOWLEDGED
    assert event.resource_type == "incident"
    assert event.occurred_at.isoformat() == "2020-10-02T18:45:22.169000+00:00"
    assert event.agent is not None
    assert (event.agent.id, event.agent.type, event.agent.summary) == (
        "PLH1HKV",
        "user_reference",
        "Tenex Engineer",
    )
    assert event.client is not None and event.client.name == "PagerDuty"
    incident = event.incident
    assert isinstance(incident, IncidentData)
    assert incident.id == "PGR0VU2" == event.incident_id
    assert incident.status is IncidentStatus.ACKNOWLEDGED
    assert incident.number == 2
    assert incident.title == "A little bump in the road"
    assert incident.urgency is Urgency.HIGH
    assert incident.service is not None and incident.service.summary == "API Service"
    assert incident.html_url == "https://acme.pagerduty.com/incidents/PGR0VU2"
    assert event.note is None


@pytest.mark.parametrize("event_type", sorted(INCIDENT_EVENT_TYPES))
def test_every_incident_lifecycle_type_carries_the_incident(event_type: EventType) -> None:
    status = STATUS_OF.get(event_type, "triggered")
    event = parse_webhook(envelope(event_type, full_incident(status)))
    assert event.known_type is event_type
    incident = event.incident
    assert incident is not None
    assert event.incident_id == "PGR0VU2"
    assert incident.status == status
    assert incident.self_url == "https://api.pagerduty.com/incidents/PGR0VU2"
    assert incident.incident_type is not None and incident.incident_type.name == "incident_default"
    assert [a.id for a in incident.assignees] == ["PTUXL6G"]
    assert incident.escalation_policy is not None and incident.escalation_policy.id == "PUS0KTE"
    assert [t.summary for t in incident.teams] == ["Engineering"]
    assert incident.priority is not None and incident.priority.summary == "P1"
    assert incident.conference_bridge is not None
    assert incident.conference_bridge.conference_number == "+1 1234123412,,987654321#"
    assert incident.created_at is not None and incident.created_at.year == 2020


def test_lifecycle_types_are_the_eleven_documented() -> None:
    assert {str(t) for t in INCIDENT_EVENT_TYPES} == {
        "incident.triggered",
        "incident.acknowledged",
        "incident.unacknowledged",
        "incident.resolved",
        "incident.reopened",
        "incident.reassigned",
        "incident.escalated",
        "incident.delegated",
        "incident.priority_updated",
        "incident.service_updated",
        "incident.incident_type.changed",
    }


def test_annotated_carries_the_note() -> None:
    data = {"incident": INCIDENT_REF, "id": "P0IN47H", "content": "Restarted the pods.", "trimmed": False}
    event = parse_webhook(envelope("incident.annotated", {**data, "type": "incident_note"}))
    assert event.known_type is EventType.INCIDENT_ANNOTATED
    note = event.note
    assert isinstance(note, IncidentNoteData)
    assert (note.id, note.content, note.trimmed) == ("P0IN47H", "Restarted the pods.", False)
    assert event.incident_id == "PGR0VU2"
    assert event.incident is None


@pytest.mark.parametrize("event_type", OTHER_INCIDENT_TYPES)
def test_other_incident_types_parse_generically_with_the_incident_id(event_type: str) -> None:
    data = {"incident": INCIDENT_REF, "id": "PXYZ123", "type": "something_specific", "extra": [1, 2]}
    event = parse_webhook(envelope(event_type, data))
    assert event.known_type == event_type
    assert isinstance(event.data, GenericData)
    assert event.incident_id == "PGR0VU2"
    assert event.data.model_extra == {"extra": [1, 2]}


@pytest.mark.parametrize("event_type", SERVICE_TYPES)
def test_service_types_parse_generically(event_type: str) -> None:
    data = {"id": "PF9KMXH", "type": "service", "name": "API Service", "summary": "API Service"}
    event = parse_webhook(envelope(event_type, data))
    assert event.resource_type == "service"
    assert event.known_type == event_type
    assert isinstance(event.data, GenericData)
    assert event.data.id == "PF9KMXH"
    assert event.incident_id is None


def test_unknown_event_type_is_not_an_error() -> None:
    data = {"type": "incident_widget", "id": "PW1", "widget": {"colour": "red"}, "incident": INCIDENT_REF}
    event = parse_webhook(envelope("incident.widget.spun", data))
    assert event.event_type == "incident.widget.spun"
    assert event.known_type is None
    assert isinstance(event.data, GenericData)
    assert event.data.type == "incident_widget"
    assert event.data.model_extra == {"widget": {"colour": "red"}}
    assert event.incident_id == "PGR0VU2"


def test_unknown_event_type_with_incident_data_still_gives_the_incident() -> None:
    event = parse_webhook(envelope("incident.something_new", full_incident()))
    assert event.known_type is None
    assert event.incident is not None and event.incident_id == "PGR0VU2"


def test_automation_has_no_agent_or_client() -> None:
    event = parse_webhook(envelope("incident.escalated", full_incident(), agent=None, client=None))
    assert event.agent is None
    assert event.client is None


def test_models_are_frozen() -> None:
    event = parse_webhook(DOC_EXAMPLE)
    with pytest.raises(ValueError, match="frozen"):
        # mypy (rightly) rejects assigning a frozen field; setattr performs the same assignment.
        setattr(event, "event_type", "incident.resolved")  # noqa: B010 - the assignment is what is tested


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'{"events": {}}', "no 'event'"),
        (b'{"event": "x"}', "event: "),
        (envelope("incident.triggered", full_incident(), occurred_at="yesterday"), "event.occurred_at"),
        (envelope("incident.triggered", full_incident(), id=""), "event.id"),
        (envelope("incident.triggered", full_incident(status="snoozed")), "event.data.status"),
        (envelope("incident.triggered", {k: v for k, v in full_incident().items() if k != "id"}), "data.id"),
        (envelope("incident.annotated", {"type": "incident_note", "id": "P1"}), "event.data.incident"),
        (envelope("incident.triggered", "not an object"), "event.data"),
    ],
)
def test_malformed_bodies_raise_a_value_error_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(PagerDutyWebhookError) as caught:
        parse_webhook(raw)
    assert isinstance(caught.value, ValueError)
    assert reason in caught.value.reason
    assert "invalid PagerDuty webhook" in str(caught.value)


def test_missing_event_fields_are_all_named() -> None:
    with pytest.raises(PagerDutyWebhookError) as caught:
        parse_webhook(b'{"event": {}}')
    for name in ("event.id", "event.event_type", "event.resource_type", "event.occurred_at", "event.data"):
        assert name in caught.value.reason


# -- signatures ---------------------------------------------------------------------------

SECRET = "ChangeMe-0123456789abcdef"
OLD_SECRET = "old-secret-zyx"
BODY = DOC_EXAMPLE


def hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_sign_is_hmac_sha256_hex() -> None:
    assert sign(SECRET, BODY) == hex_hmac(SECRET, BODY)


def test_good_signature() -> None:
    assert verify_signature([SECRET], BODY, f"v1={hex_hmac(SECRET, BODY)}")


def test_bad_signature() -> None:
    assert not verify_signature([SECRET], BODY, f"v1={hex_hmac('wrong', BODY)}")
    assert not verify_signature([SECRET], BODY, "v1=deadbeef")
    assert not verify_signature([SECRET], BODY, "v1=")


@pytest.mark.parametrize("header", [None, "", "   ", ","])
def test_missing_signature(header: str | None) -> None:
    assert not verify_signature([SECRET], BODY, header)


def test_tampered_body() -> None:
    header = f"v1={hex_hmac(SECRET, BODY)}"
    assert not verify_signature([SECRET], BODY.replace(b"acknowledged", b"resolved"), header)
    # Re-serialising the same JSON changes the bytes, so it must not verify either.
    assert not verify_signature([SECRET], json.dumps(json.loads(BODY)).encode(), header)


def test_rotated_secrets_two_entries_either_secret_accepts() -> None:
    header = f"v1={hex_hmac(OLD_SECRET, BODY)},v1={hex_hmac(SECRET, BODY)}"
    assert verify_signature([SECRET], BODY, header)
    assert verify_signature([OLD_SECRET], BODY, header)
    assert verify_signature([SECRET, OLD_SECRET], BODY, header)
    assert not verify_signature(["third"], BODY, header)


def test_we_rotate_too_either_configured_secret_matches() -> None:
    header = f"v1={hex_hmac(SECRET, BODY)}"
    assert verify_signature([OLD_SECRET, SECRET], BODY, header)


def test_entries_other_than_v1_are_ignored() -> None:
    digest = hex_hmac(SECRET, BODY)
    assert not verify_signature([SECRET], BODY, f"v0={digest}")
    assert not verify_signature([SECRET], BODY, digest)
    assert verify_signature([SECRET], BODY, f"v2=abc, v1={digest} ")


def test_upper_case_hex_is_accepted() -> None:
    assert verify_signature([SECRET], BODY, f"v1={hex_hmac(SECRET, BODY).upper()}")


def test_non_ascii_header_does_not_crash() -> None:
    assert not verify_signature([SECRET], BODY, "v1=é" * 10)


def test_no_secrets_or_empty_secret_never_verifies() -> None:
    empty_key = hex_hmac("", BODY)
    assert not verify_signature([], BODY, f"v1={empty_key}")
    assert not verify_signature([""], BODY, f"v1={empty_key}")


def test_alertmanager_join_keys_are_the_hash_alertmanager_sends_the_raw_key_and_the_operators() -> None:
    group = '{}:{alertname="HighErrorRate", namespace="checkout"}'
    # What Alertmanager's pagerduty_configs sends as dedup_key (notify.Key.Hash).
    digest = hashlib.sha256(group.encode()).hexdigest()
    keys = alertmanager_join_keys(
        group, [({"pagerduty_dedup_key": "checkout-errors"}, {}), ({}, {"pagerduty_dedup_key": " x "})]
    )
    assert keys == {
        digest: "alertmanager_sha256",
        group: "alertmanager_group_key",
        "checkout-errors": "dedup_key",
        "x": "dedup_key",
    }
    # A group key longer than an Events API dedup_key can never come back raw.
    assert set(alertmanager_join_keys("k" * 300, [])) == {hashlib.sha256(b"k" * 300).hexdigest()}
