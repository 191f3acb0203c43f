"""Timer planning: a team's escalation levels in place of the policy's reminder, the team's
severity overrides, and a run of levels continued or restarted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.core.catalog import Catalog
from bot.core.incident import Incident, IncidentSource, IncidentStatus, Severity
from bot.core.policy import Policy
from bot.core.timers import LEVEL_TIMER, level_since, opening_timers, response_for

OPENED = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)
NOW = OPENED + timedelta(minutes=3)
CATALOG = Catalog.model_validate(
    {
        "default_team": "ops",
        "teams": {
            "ops": {},
            "forge": {
                "escalation": [
                    {"level": 1, "after_minutes": 0, "usergroups": ["forge-primary"]},
                    {"level": 2, "after_minutes": 15, "usergroups": ["forge-secondary"]},
                ],
                "severity_policy": {
                    "P2": {"ack_minutes": 30, "escalate_after_minutes": 15, "update_every_minutes": 5}
                },
            },
        },
    }
)


def incident(team: str | None, severity: Severity = Severity.P2) -> Incident:
    return Incident(
        1, "g", "t", severity, IncidentStatus.TRIGGERED, IncidentSource.ALERTMANAGER, OPENED, team=team
    )


def test_a_team_with_levels_gets_its_first_level_instead_of_the_ack_reminder() -> None:
    plans = opening_timers(Policy(), incident("forge"), NOW, CATALOG)
    assert plans[0] == (LEVEL_TIMER, OPENED, {"level": 1, "since": OPENED.isoformat()})
    assert [p[0] for p in plans] == [LEVEL_TIMER, "update_reminder"]


def test_the_teams_severity_overrides_apply() -> None:
    assert response_for(Policy(), CATALOG, "forge", Severity.P2).update_every_minutes == 5
    [_, update] = opening_timers(Policy(), incident("forge"), NOW, CATALOG)
    assert update[1] == NOW + timedelta(minutes=5)
    # Another team keeps the policy's promises.
    assert response_for(Policy(), CATALOG, "ops", Severity.P2) == Policy().response(Severity.P2)


def test_a_team_without_levels_keeps_the_ack_reminder() -> None:
    plans = opening_timers(Policy(), incident("ops"), NOW, CATALOG)
    assert plans[0][0] == "ack_reminder"
    assert plans[0][1] == OPENED + timedelta(minutes=Policy().response(Severity.P2).ack_minutes)


def test_a_declared_incident_with_its_commander_gets_no_ack_reminder() -> None:
    declared = Incident(
        1, "g", "t", Severity.P2, IncidentStatus.TRIGGERED, IncidentSource.HUMAN, OPENED, commander="U1"
    )
    assert [p[0] for p in opening_timers(Policy(), declared, NOW, CATALOG)] == ["update_reminder"]


def test_a_severity_that_never_escalates_engages_no_level_and_no_reminder_replaces_them() -> None:
    plans = opening_timers(Policy(), incident("forge", Severity.P4), NOW, CATALOG)
    assert [p[0] for p in plans] == ["ack_reminder"]


def test_levels_continue_after_the_last_engaged_and_count_from_since() -> None:
    reopened = OPENED + timedelta(hours=2)
    plans = opening_timers(Policy(), incident("forge"), NOW, CATALOG, since=reopened, after_level=1)
    assert plans[0] == (
        LEVEL_TIMER,
        reopened + timedelta(minutes=15),
        {"level": 2, "since": reopened.isoformat()},
    )
    # All levels engaged: nothing more, and no reminder in their place.
    done = opening_timers(Policy(), incident("forge"), NOW, CATALOG, after_level=2)
    assert [p[0] for p in done] == ["update_reminder"]


def test_level_since_falls_back_to_the_open() -> None:
    assert level_since({}, incident("forge")) == OPENED
    assert level_since({"since": "garbage"}, incident("forge")) == OPENED
    assert level_since({"since": NOW.isoformat()}, incident("forge")) == NOW
