import re
from datetime import UTC, datetime

import pytest

from bot.core.incident import Severity, channel_name, highest_severity, map_severity, slugify

SLACK_NAME = re.compile(r"^[a-z0-9_-]{1,80}$")


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("critical", Severity.P1),
        ("CRITICAL", Severity.P1),
        ("warning", Severity.P2),
        ("info", Severity.P4),
        ("P0", Severity.P1),
        ("p1", Severity.P1),
        ("P3", Severity.P3),
        ("sev1", Severity.P1),
        ("SEV4", Severity.P4),
        ("sev-2", Severity.P2),
        ("2", Severity.P2),
        ("", Severity.P3),
        (None, Severity.P3),
        ("bogus", Severity.P3),
    ],
)
def test_severity_mapping(label: str | None, expected: Severity) -> None:
    assert map_severity(label) is expected


def test_custom_mapping_wins() -> None:
    assert map_severity("warning", {"warning": Severity.P3}) is Severity.P3


def test_highest_severity() -> None:
    assert highest_severity([Severity.P3, Severity.P1, Severity.P2]) is Severity.P1
    assert highest_severity([]) is None


@pytest.mark.parametrize(
    "title",
    [
        "5xx > 5% on API",
        "Ünïcode tïtle — with dashes",
        "x" * 300,
        "!!!",
        "UPPER case & <html>",
    ],
)
def test_channel_names_are_valid_slack_names(title: str) -> None:
    name = channel_name(datetime(2026, 11, 22, tzinfo=UTC), title)
    assert SLACK_NAME.match(name), name
    assert name.startswith("inc-20261122-")
    suffixed = channel_name(datetime(2026, 11, 22, tzinfo=UTC), title, "1234-ab12")
    assert SLACK_NAME.match(suffixed) and suffixed.endswith("-1234-ab12")


def test_slugify() -> None:
    assert slugify("High Error Rate (api)", 50) == "high-error-rate-api"
    assert slugify("###", 10) == "incident"
