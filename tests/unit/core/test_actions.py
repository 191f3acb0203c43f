"""What of an action's parameters may be shown and recorded."""

from __future__ import annotations

from pathlib import Path

from bot.core.actions import HIDDEN, ActionName, public_params


def test_set_env_values_are_hidden_and_names_kept() -> None:
    params = {
        "namespace": "api",
        "deployment": "search-api",
        "env": {"A": "secret", "B": "1"},
        "container": None,
    }
    shown = public_params(ActionName.SET_ENV, params)
    assert shown == {
        "namespace": "api",
        "deployment": "search-api",
        "env": {"A": HIDDEN, "B": HIDDEN},
        "container": None,
    }
    assert params["env"] == {"A": "secret", "B": "1"}  # the run's own parameters are untouched
    assert public_params("set_env", params) == shown


def test_other_actions_are_shown_as_they_are() -> None:
    scale = {"namespace": "api", "deployment": "search-api", "replicas": 9}
    assert public_params(ActionName.SCALE, scale) == scale
    exec_args = {"namespace": "db", "pod": "postgres-0", "template": "pg", "args": {"minutes": "5"}}
    assert public_params(ActionName.EXEC, exec_args) == exec_args


def test_the_database_blanks_values_with_the_same_marker() -> None:
    """A final run's own copy of the values is blanked by a SQL function (0006 migration)."""
    migration = Path(__file__).parents[3] / "bot/store/migrations/0006_remediation_policy.sql"
    assert f"to_jsonb('{HIDDEN}'::text)" in migration.read_text(encoding="utf-8")
