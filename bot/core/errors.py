"""The two kinds of error the bot knows (house rule 7)."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user caused and can fix; its message is safe to show in Slack."""


class IntegrationError(Exception):
    """An outside system (Slack, Kubernetes, Prometheus, PagerDuty, Alertmanager) failed.

    Every adapter wraps its SDK's exceptions in this, so use cases never import an SDK.
    `status` carries the HTTP status when there was one.
    """

    def __init__(self, system: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{system}: {message}")
        self.system = system
        self.message = message
        self.status = status


class ConfigError(Exception):
    """Configuration or start-up problem; reported as one line and a non-zero exit."""
