"""The service catalog: the bundled services.yaml, its schema, routing, problems with file:line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from bot.config.catalog import catalog_problems, load_catalog
from bot.config.playbooks import DEFAULT_PLAYBOOKS_DIR, PlaybookError, load_playbooks, main, validate_dir
from bot.core.catalog import CATALOG_FILE, CATALOG_SCHEMA_FILE, Catalog, Route, catalog_json_schema
from bot.core.incident import Severity
from bot.core.policy import DEFAULT_SEVERITY_POLICY, Policy, SeverityPolicy


def bundled() -> Catalog:
    return load_catalog(DEFAULT_PLAYBOOKS_DIR, load_playbooks(DEFAULT_PLAYBOOKS_DIR).policy)


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_the_schema_file_is_up_to_date_and_the_bundled_catalog_satisfies_it() -> None:
    committed = json.loads((DEFAULT_PLAYBOOKS_DIR / CATALOG_SCHEMA_FILE).read_text(encoding="utf-8"))
    assert committed == catalog_json_schema(), "run python -m bot.config.playbooks --write-schema"
    doc = yaml.safe_load((DEFAULT_PLAYBOOKS_DIR / CATALOG_FILE).read_text(encoding="utf-8"))
    errors = [e.message for e in jsonschema.Draft202012Validator(catalog_json_schema()).iter_errors(doc)]
    assert errors == []


def test_the_bundled_catalog_models_the_five_seed_systems() -> None:
    catalog = bundled()
    assert catalog.default_team == "operations"
    assert set(catalog.teams) == {
        "operations",
        "skillquest",
        "onquota",
        "skillforge",
        "skillmeat",
        "birthday-scheduler",
    }
    skillforge = catalog.teams["skillforge"]
    assert skillforge.channel == "skillforge-incident"
    assert [(lv.level, lv.after_minutes) for lv in skillforge.escalation] == [(1, 0), (2, 15), (3, 120)]
    birthday = catalog.teams["birthday-scheduler"]
    assert [(lv.name, lv.after_minutes) for lv in birthday.escalation] == [
        ("On-call engineer", 0),
        ("Engineering lead", 15),
        ("VP Engineering", 30),
    ]
    # Teams the seeds give no channel announce in INCIDENT_CHANNEL.
    assert catalog.teams["skillquest"].channel is None
    assert catalog.team_for_channel("#skillforge-incident") == "skillforge"
    assert catalog.team_for_channel("incident") is None


@pytest.mark.parametrize(
    ("labels", "route"),
    [
        (
            {"alertname": "APIDown", "namespace": "skillquest", "job": "skillquest-api"},
            Route("skillquest", "api"),
        ),
        ({"alertname": "RedisDown", "namespace": "skillquest"}, Route("skillquest", "cache")),
        ({"alertname": "BackendDown", "job": "onquota-backend"}, Route("onquota", "backend")),
        (
            {"alertname": "SkillForgeLatencyP95High", "namespace": "api", "service": "search"},
            Route("skillforge", "search"),
        ),
        ({"alertname": "SkillForgeETLJobDelayed"}, Route("skillforge", "data-pipelines")),
        ({"alertname": "SkillForgeSyntheticUptimeLow"}, Route("skillforge", "api")),
        ({"alertname": "HighErrorRate"}, Route("skillmeat", "api")),
        ({"alertname": "MCPServerUnhealthy"}, Route("skillmeat", "mcp")),
        # The same alert names with the Birthday Scheduler's job go to the Birthday Scheduler.
        ({"alertname": "HighErrorRate", "job": "birthday-scheduler-api"}, Route("birthday-scheduler", "api")),
        (
            {"alertname": "QueueDepthCritical", "job": "birthday-scheduler-worker"},
            Route("birthday-scheduler", "worker"),
        ),
        ({"alertname": "ServiceDown", "namespace": "birthday-scheduler"}, Route("birthday-scheduler", "api")),
        # Nothing matches: the default team, no service.
        ({"alertname": "HighErrorRate", "namespace": "prod", "service": "api"}, Route("operations")),
        ({"alertname": "Whatever"}, Route("operations")),
    ],
)
def test_routing_of_the_seed_alerts(labels: dict[str, str], route: Route) -> None:
    assert bundled().route(labels) == route


def test_an_incident_takes_the_route_of_its_first_routed_alert() -> None:
    catalog = bundled()
    alerts = [({"alertname": "Unknown"}, None), ({"alertname": "RedisDown", "namespace": "skillquest"}, None)]
    assert catalog.route_alerts(alerts) == Route("skillquest", "cache")
    assert catalog.route_alerts([({"alertname": "Unknown"}, None)]) == Route("operations")


def test_more_specific_matchers_win_then_file_order() -> None:
    catalog = Catalog.model_validate(
        {
            "default_team": "ops",
            "teams": {
                "ops": {},
                "a": {"services": {"x": {"match": [{"labels_regex": {"namespace": "shop.*"}}]}}},
                "b": {"services": {"y": {"match": [{"labels": {"namespace": "shop"}}]}}},
                "c": {"services": {"z": {"match": [{"labels": {"team": "c"}}]}}},
            },
        }
    )
    assert catalog.route({"namespace": "shop"}) == Route("b", "y")  # equality beats regex
    assert catalog.route({"namespace": "shop-eu"}) == Route("a", "x")
    assert catalog.route({"namespace": "shop", "team": "c"}) == Route("b", "y")  # tie: first in file
    assert catalog.route({"namespace": "other"}) == Route("ops")


def test_team_lookups_fall_back_to_the_default_team() -> None:
    catalog = bundled()
    assert catalog.team_name(None) == "operations"
    assert catalog.team_name("gone") == "operations"
    assert catalog.team_title("skillforge") == "SkillForge"
    assert catalog.service_title("skillforge", "search") == "Search API"
    assert catalog.team("skillforge").channel_prefix == "inc-skillforge"
    assert catalog.team(None).channel is None and catalog.team(None).channel_prefix == "inc"
    merged = catalog.severity_policy("skillforge", DEFAULT_SEVERITY_POLICY)
    assert merged[Severity.P2].escalate_after_minutes == 15
    assert merged[Severity.P1] == DEFAULT_SEVERITY_POLICY[Severity.P1]


def test_no_catalog_file_is_one_default_team(tmp_path: Path) -> None:
    catalog = load_catalog(tmp_path, Policy())
    assert catalog.names() == ["default"]
    assert catalog.route({"alertname": "X", "namespace": "skillquest"}) == Route("default")
    assert catalog.team(None).channel is None
    assert catalog_problems(tmp_path) == []


BROKEN = """\
default_team: nobody
teams:
  shop:
    channel: "#Shop Alerts"
    channel_prefix: inc-
    escalation:
      - {level: 2, after_minutes: 30, usergroups: [shop-oncall]}
      - {level: 2, after_minutes: 10}
    approvers: [wizards]
    services:
      api:
        match:
          - labels_regex: {job: "broken(regex"}
          - {}
      web:
        title: Web
  shop2:
    services:
      again:
        match:
          - labels: {namespace: shop}
      same:
        match:
          - labels: {namespace: shop}
    severity_policy:
      P9: {ack_minutes: 5}
    unknown_field: 1
"""


def _assert_reported(path: str, rendered: list[str], expected: list[tuple[int, str]]) -> None:
    for line, fragment in expected:
        found = any(r.startswith(f"{path}:{line}: ") and fragment in r for r in rendered)
        assert found, (line, fragment, rendered)


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_PLAYBOOKS_DIR / "policy.yaml", tmp_path / "policy.yaml")
    (tmp_path / CATALOG_FILE).write_text(BROKEN, encoding="utf-8")
    rendered = [str(p) for p in validate_dir(tmp_path)]
    path = str(tmp_path / CATALOG_FILE)
    expected = [
        (line_of(BROKEN, 'channel: "#Shop'), "teams.shop.channel"),
        (line_of(BROKEN, "channel_prefix: inc-"), "teams.shop.channel_prefix"),
        (line_of(BROKEN, 'job: "broken(regex"'), "invalid regular expression"),
        (line_of(BROKEN, "web:"), "teams.shop.services.web.match: Field required"),
        (line_of(BROKEN, "P9:"), "teams.shop2.severity_policy.P9"),
        (line_of(BROKEN, "unknown_field"), "Extra inputs are not permitted"),
    ]
    _assert_reported(path, rendered, expected)
    # The model problems hide the cross-reference ones until they are fixed; fix them and see those.
    fixed = (
        BROKEN.replace('"#Shop Alerts"', "shop-alerts")
        .replace("channel_prefix: inc-", "channel_prefix: inc-shop")
        .replace('"broken(regex"', '"shop.*"')
        .replace("        title: Web\n", "        title: Web\n        match: [{labels: {service: web}}]\n")
        .replace("      P9: {ack_minutes: 5}\n", "      P2: {ack_minutes: 5}\n")
        .replace("    unknown_field: 1\n", "")
    )
    (tmp_path / CATALOG_FILE).write_text(fixed, encoding="utf-8")
    rendered = [str(p) for p in validate_dir(tmp_path)]
    expected = [
        (line_of(fixed, "default_team: nobody"), "default_team 'nobody' is not one of the teams"),
    ]
    _assert_reported(path, rendered, expected)
    fixed = fixed.replace("default_team: nobody", "default_team: shop")
    (tmp_path / CATALOG_FILE).write_text(fixed, encoding="utf-8")
    rendered = [str(p) for p in validate_dir(tmp_path)]
    expected = [
        (line_of(fixed, "{level: 2, after_minutes: 30"), "expected level 1"),
        (line_of(fixed, "{level: 2, after_minutes: 10}"), "needs users, usergroups or pagerduty"),
        (line_of(fixed, "approvers: [wizards]"), "unknown role 'wizards'"),
        (line_of(fixed, "approvers: [wizards]"), "list them"),
        (line_of(fixed, "          - {}"), "a matcher needs a label"),
        (line_of(fixed, "      same:") + 2, "the same matcher as service shop2/again"),
    ]
    _assert_reported(path, rendered, expected)
    with pytest.raises(PlaybookError) as info:
        load_catalog(tmp_path, load_playbooks(tmp_path).policy)
    assert len(info.value.problems) == len(rendered)
    # `python -m bot.config.playbooks validate` (and `incidentbot playbooks validate`) list them.
    assert main(["validate", str(tmp_path)]) == 1


def test_a_team_override_must_be_a_whole_severity_policy() -> None:
    with pytest.raises(ValueError, match="ack_minutes"):
        Catalog.model_validate({"teams": {"default": {"severity_policy": {"P1": {"page": True}}}}})
    ok = Catalog.model_validate({"teams": {"default": {"severity_policy": {"P1": {"ack_minutes": 5}}}}})
    assert ok.teams["default"].severity_policy[Severity.P1] == SeverityPolicy(ack_minutes=5)
