"""Settings from the environment: the only module that reads it (interface.md lists the names)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.core.errors import ConfigError
from bot.core.promql import TrustedHosts

BUNDLED_PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
# Shortest accepted webhook token or signing secret: an empty or short one is guessable (an
# empty bearer token even matched an empty `Authorization: Bearer`).
MIN_SECRET_LENGTH = 16


class Settings(BaseSettings):
    """Everything configurable. Secrets are SecretStr so they never reach a log by accident."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore", frozen=True)

    slack_bot_token: SecretStr
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    incident_channel: str = "incident"

    database_url: SecretStr
    redis_url: SecretStr

    prometheus_url: str | None = None
    grafana_url: str | None = None
    alertmanager_url: str | None = None
    alertmanager_webhook_token: SecretStr

    pagerduty_api_token: SecretStr | None = None
    pagerduty_api_url: str = "https://api.pagerduty.com"
    pagerduty_from_email: str | None = None
    pagerduty_webhook_secret: SecretStr | None = None
    # Not in the public contract: lets tests trust the sandbox PagerDuty's TLS certificate.
    pagerduty_ca_bundle: str | None = None

    kubeconfig: str | None = None
    # Set by Kubernetes in every pod: use the service account when no KUBECONFIG is given.
    kubernetes_service_host: str | None = None
    playbooks_dir: Path = BUNDLED_PLAYBOOKS

    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=0, le=65535)
    log_format: Literal["json", "console"] = "json"

    # Tuning knobs beyond the contract, with production defaults.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    worker_count: int = Field(default=4, ge=1, le=64)
    sweep_interval_seconds: float = Field(default=2.0, gt=0)
    # Multiplies Slack's published per-method rates in our limiter; only a time-compressed
    # sandbox benchmark changes it (the sandbox server applies the same factor).
    slack_rate_scale: float = Field(default=1.0, gt=0)
    replica_name: str | None = None
    # After a remediation: how long to keep re-checking the playbook checks / the alert's
    # expression for recovery before reporting "not recovered".
    remediation_verify_seconds: float = Field(default=300.0, ge=0, le=3600)
    # Archive a resolved incident's channel after this long (0 = never).
    archive_after_seconds: float = Field(default=24 * 3600, ge=0)
    # Events API v2 routing key used to page when a P1/P2 is not acknowledged in time.
    pagerduty_routing_key: SecretStr | None = None
    pagerduty_events_url: str = "https://events.pagerduty.com"
    # Read only to refuse them: Bolt switches to OAuth on its own when both are set.
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    # PromQL cost control (bot.core.promql): how far back any query or graph window may reach,
    # and how long one Prometheus request may take (Prometheus is told to stop a little earlier).
    promql_max_lookback_seconds: float = Field(default=24 * 3600.0, ge=60)
    prometheus_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # Other host[:port] names (comma-separated) under which the configured Prometheus and
    # Alertmanager appear in alerts' generatorURL / externalURL (e.g. their --web.external-url).
    # An alert's expression is graphed and its links are shown only for these and the hosts of
    # PROMETHEUS_URL / ALERTMANAGER_URL.
    prometheus_hosts: str = ""
    alertmanager_hosts: str = ""
    # Ad hoc graphs (/incident graph): a token bucket per user, and at most this many drawn at
    # once across every replica.
    graph_rate_per_minute: float = Field(default=2.0, gt=0)
    graph_burst: int = Field(default=3, ge=1, le=100)
    graph_max_in_flight: int = Field(default=4, ge=1, le=64)
    # The HTTP edge: per-route body limits (Alertmanager keeps max_body_bytes); how long a
    # client may take from opening the connection (or the previous response) to complete
    # headers, which is also the idle keep-alive limit, and to send its body; and how many
    # bodies of not yet authenticated requests (Slack, PagerDuty: the signature covers the
    # body) are read at once per route; more are answered 503 with Retry-After.
    slack_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    pagerduty_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    http_header_timeout_seconds: float = Field(default=15.0, gt=0)
    http_body_timeout_seconds: float = Field(default=10.0, gt=0)
    http_max_unauthenticated_reads: int = Field(default=16, ge=1)
    # How long a timer's fire or a playbook post claimed by a replica that died stays claimed
    # before another replica takes it over (a live holder renews its claim while it works).
    claim_lease_seconds: float = Field(default=15.0, gt=0, le=300)
    # How long one Slack Web API call may take before it counts as failed (maybe applied).
    slack_timeout_seconds: float = Field(default=15.0, ge=1, le=120)
    # The optional investigator (an OpenAI-compatible chat-completions endpoint): off, and
    # nothing changes, while LLM_BASE_URL is unset. The key comes from LLM_API_KEY or a file
    # (a mounted Secret). Budgets are per investigation; LLM_DISABLED is the kill switch.
    llm_base_url: str | None = None
    llm_model: str = ""
    llm_api_key: SecretStr | None = None
    llm_api_key_file: Path | None = None
    llm_token_budget: int = Field(default=60_000, ge=1_000)
    llm_time_budget_seconds: float = Field(default=180.0, gt=0, le=3600)
    llm_max_tool_calls: int = Field(default=16, ge=1, le=100)
    llm_max_concurrent: int = Field(default=2, ge=1, le=32)
    llm_request_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    llm_tool_output_chars: int = Field(default=4000, ge=200, le=100_000)
    llm_redact_emails: bool = True
    llm_cost_per_million_tokens: float = Field(default=0.0, ge=0)
    llm_disabled: bool = False
    # How often an unreachable or tool-less endpoint is probed again (in the background).
    llm_probe_interval_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Investigate automatically when an incident opens: comma-separated `team:P1` entries
    # (`*` for any team), e.g. `*:P1,payments:P2`. Empty: only on request.
    llm_auto_investigate: str = ""

    @field_validator("alertmanager_webhook_token", "slack_signing_secret", "pagerduty_webhook_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """Every secret that authenticates a request has MIN_SECRET_LENGTH characters when set;
        PAGERDUTY_WEBHOOK_SECRET may hold several, comma separated, during a rotation."""
        if value is None:
            return None
        several = info.field_name == "pagerduty_webhook_secret"
        secrets = value.get_secret_value().split(",") if several else [value.get_secret_value()]
        if any(len(secret.strip()) < MIN_SECRET_LENGTH for secret in secrets):
            raise PydanticCustomError(
                "secret_too_short",
                "{which} be at least {minimum} characters long",
                {
                    "which": "each comma-separated secret must" if several else "must",
                    "minimum": MIN_SECRET_LENGTH,
                },
            )
        return value

    @model_validator(mode="after")
    def _pagerduty_needs_from(self) -> Settings:
        if self.pagerduty_api_token is not None and not self.pagerduty_from_email:
            raise ValueError("PAGERDUTY_FROM_EMAIL is required when PAGERDUTY_API_TOKEN is set")
        return self

    @model_validator(mode="after")
    def _no_oauth(self) -> Settings:
        if self.slack_client_id and self.slack_client_secret is not None:
            raise ValueError(
                "SLACK_CLIENT_ID/SLACK_CLIENT_SECRET are set: incidentbot is a single-workspace app and"
                " Bolt would switch to OAuth; unset them"
            )
        return self

    @model_validator(mode="after")
    def _trusted_hosts(self) -> Settings:
        # Every entry is checked at start-up, so a typo stops the bot instead of hiding links.
        for name, value in (
            ("PROMETHEUS_URL", self.prometheus_url),
            ("PROMETHEUS_HOSTS", self.prometheus_hosts),
            ("ALERTMANAGER_URL", self.alertmanager_url),
            ("ALERTMANAGER_HOSTS", self.alertmanager_hosts),
        ):
            try:
                TrustedHosts.parse(value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _llm_needs_model(self) -> Settings:
        if self.llm_base_url and not self.llm_model:
            raise ValueError("LLM_MODEL is required when LLM_BASE_URL is set")
        return self

    def llm_key(self) -> str | None:
        """The investigator's API key: LLM_API_KEY, else the first line of LLM_API_KEY_FILE."""
        if self.llm_api_key is not None:
            return self.llm_api_key.get_secret_value()
        if self.llm_api_key_file is None:
            return None
        try:
            return self.llm_api_key_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise ConfigError(
                f"LLM_API_KEY_FILE: cannot read {self.llm_api_key_file}: {exc.strerror}"
            ) from None

    @property
    def in_cluster(self) -> bool:
        return self.kubernetes_service_host is not None

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None


def playbooks_dir_from_env() -> Path:
    """PLAYBOOKS_DIR for commands that need no other configuration (validate)."""
    import os

    value = os.environ.get("PLAYBOOKS_DIR")
    return Path(value) if value else BUNDLED_PLAYBOOKS


def sandbox_environment() -> dict[str, str]:
    """Variables the sandbox mode honours from the environment (own Postgres/Redis, port)."""
    import os

    names = ("DATABASE_URL", "REDIS_URL", "PROMETHEUS_URL", "GRAFANA_URL", "LOG_FORMAT")
    return {name.lower(): os.environ[name] for name in names if os.environ.get(name)}


def load_settings(*, http_mode_required: bool = True) -> Settings:
    """Read the environment; any problem becomes one ConfigError line naming the variable."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]).upper() or "settings"
            if err["type"] == "missing":
                problems.append(f"{name} is required")
            else:
                problems.append(f"{name}: {err['msg']}")
        raise ConfigError("configuration: " + "; ".join(problems)) from None
    if http_mode_required and not settings.socket_mode and settings.slack_signing_secret is None:
        raise ConfigError("configuration: SLACK_SIGNING_SECRET is required (or set SLACK_APP_TOKEN)")
    return settings
