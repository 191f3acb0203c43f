"""Storm mode is configured in one place, services.yaml: catalog-wide with a per-team override."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.core.catalog import Catalog
from bot.core.incident import Severity


def test_a_team_override_replaces_the_catalog_default_and_others_keep_it() -> None:
    catalog = Catalog.model_validate(
        {
            "default_team": "ops",
            "storm": {"incidents": 8},
            "teams": {
                "ops": {},
                "web": {"storm": {"incidents": 2, "window_seconds": 30, "channels_for": ["P1"]}},
            },
        }
    )
    assert catalog.storm_policy("ops").incidents == 8 and catalog.storm_policy("ops").window_seconds == 120
    assert catalog.storm_policy(None).channels_for == [Severity.P1, Severity.P2]
    web = catalog.storm_policy("web")
    assert (web.incidents, web.window_seconds, web.channels_for) == (2, 30, [Severity.P1])


@pytest.mark.parametrize(
    "storm", [{"incidents": 0}, {"window_seconds": 1}, {"channels_for": ["P9"]}, {"threshold": 3}]
)
def test_bad_storm_settings_are_refused(storm: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Catalog.model_validate({"storm": storm})
