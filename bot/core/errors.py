"""The two kinds of error the bot knows (house rule 7)."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user caused and can fix; its message is safe to show in Slack."""


class IntegrationError(Exception):
    """An outside system (Slack, Kubernetes, Prometheus, PagerDuty, Alertmanager) failed.

    Every adapter wraps its SDK's exceptions in this, so use cases never import an SDK.
    `status` carries the HTTP status when there was one.
    """

    def __init__(
        self, system: str, message: str, *, status: int | None = None, maybe_applied: bool = False
    ) -> None:
        super().__init__(f"{system}: {message}")
        self.system = system
        self.message = message
        self.status = status
        # The request may have taken effect although it failed (a 5xx, a timeout or a reset
        # after it was sent): a write must not simply be repeated.
        self.maybe_applied = maybe_applied


class ConfigError(Exception):
    """Configuration or start-up problem; reported as one line and a non-zero exit."""
