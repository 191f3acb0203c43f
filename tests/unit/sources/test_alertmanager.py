import json
from pathlib import Path

import pytest

from bot.core.incident import AlertStatus
from bot.sources.alertmanager import PayloadError, parse_payload

DATA = Path(__file__).resolve().parents[2] / "data" / "am_payload_v4.json"


def test_real_payload_parses_with_go_zero_end_time() -> None:
    payload = parse_payload(DATA.read_bytes())
    assert payload.group_key == '{}:{alertname="HighErrorRate", namespace="prod"}'
    assert payload.truncated_alerts == 1
    alerts = payload.domain_alerts()
    assert [a.fingerprint for a in alerts] == ["b25693fcb462cd37", "89a6d57921008bdd"]
    assert alerts[0].status is AlertStatus.FIRING
    assert alerts[0].ends_at is None  # 0001-01-01 means "no end" for a firing alert
    assert alerts[0].starts_at.year == 2026
    assert alerts[0].name == "HighErrorRate"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"[]", "JSON object"),
        (b'{"version": "3"}', "version"),
        (b"\xff\xfe", "malformed JSON"),
    ],
)
def test_malformed_payloads_give_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse_payload(body)


def test_missing_alertname_is_rejected() -> None:
    data = json.loads(DATA.read_text())
    del data["alerts"][0]["labels"]["alertname"]
    with pytest.raises(PayloadError, match="alertname"):
        parse_payload(json.dumps(data).encode())


def test_empty_alert_list_is_rejected() -> None:
    data = json.loads(DATA.read_text())
    data["alerts"] = []
    with pytest.raises(PayloadError, match=r"alerts"):
        parse_payload(json.dumps(data).encode())


def test_resolved_alert_keeps_its_end_time() -> None:
    data = json.loads(DATA.read_text())
    data["alerts"][0]["status"] = "resolved"
    data["alerts"][0]["endsAt"] = "2026-11-22T16:10:00Z"
    alert = parse_payload(json.dumps(data).encode()).domain_alerts()[0]
    assert alert.status is AlertStatus.RESOLVED
    assert alert.ends_at is not None and alert.ends_at.minute == 10
