"""The investigator's settings: off by default, a model required with an endpoint, the key
from a file (a mounted Secret)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot.config.settings import Settings
from bot.core.errors import ConfigError

REQUIRED: dict[str, Any] = {
    "slack_bot_token": "xoxb-test",
    "slack_signing_secret": "s" * 32,
    "database_url": "postgresql://localhost/x",
    "redis_url": "redis://localhost",
    "alertmanager_webhook_token": "t" * 32,
}


def test_off_by_default() -> None:
    settings = Settings(**REQUIRED)
    assert settings.llm_base_url is None and settings.llm_key() is None


def test_an_endpoint_needs_a_model() -> None:
    with pytest.raises(ValidationError, match="LLM_MODEL is required"):
        Settings(**REQUIRED, llm_base_url="http://vllm:8000/v1")


def test_the_key_comes_from_a_file(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-from-secret\n", encoding="utf-8")
    settings = Settings(**REQUIRED, llm_base_url="http://x/v1", llm_model="m", llm_api_key_file=key)
    assert settings.llm_key() == "sk-from-secret"
    missing = Settings(
        **REQUIRED, llm_base_url="http://x/v1", llm_model="m", llm_api_key_file=tmp_path / "no"
    )
    with pytest.raises(ConfigError, match="LLM_API_KEY_FILE"):
        missing.llm_key()
