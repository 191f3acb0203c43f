"""A fake PagerDuty: REST API v2 and Events API v2 over TLS, and V3 webhooks out to the bot (see ``app``)."""

from sandbox.pagerduty.app import PagerDutySandbox
from sandbox.pagerduty.models import (
    ACCEPT_V2,
    DEFAULT_API_TOKEN,
    DEFAULT_WEBHOOK_SECRET,
    RecordedRequest,
    SandboxEscalationPolicy,
    SandboxIncident,
    SandboxNote,
    SandboxPriority,
    SandboxService,
    SandboxUser,
    SentWebhook,
)
from sandbox.pagerduty.webhooks import sign_body

__all__ = [
    "ACCEPT_V2",
    "DEFAULT_API_TOKEN",
    "DEFAULT_WEBHOOK_SECRET",
    "PagerDutySandbox",
    "RecordedRequest",
    "SandboxEscalationPolicy",
    "SandboxIncident",
    "SandboxNote",
    "SandboxPriority",
    "SandboxService",
    "SandboxUser",
    "SentWebhook",
    "sign_body",
]
