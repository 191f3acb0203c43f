"""Prometheus metrics on a registry owned by the app (no module-level globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.webhooks_received = Counter(
            "incidentbot_webhooks_received_total", "Webhooks accepted and stored", ["source"], registry=r
        )
        self.webhooks_rejected = Counter(
            "incidentbot_webhooks_rejected_total", "Webhooks refused", ["source", "reason"], registry=r
        )
        self.webhooks_repaired = Counter(
            "incidentbot_webhook_characters_repaired_total",
            "Characters PostgreSQL cannot store (NUL, lone surrogates) replaced by U+FFFD in webhooks",
            ["source"],
            registry=r,
        )
        self.alerts_stored = Counter(
            "incidentbot_alerts_stored_total", "Alert state changes stored", ["status"], registry=r
        )
        self.incidents_opened = Counter(
            "incidentbot_incidents_opened_total", "Incidents opened", ["source", "severity"], registry=r
        )
        self.slack_calls = Counter(
            "incidentbot_slack_calls_total", "Slack Web API calls", ["method", "outcome"], registry=r
        )
        self.slack_ratelimited = Counter(
            "incidentbot_slack_ratelimited_total", "Slack 429 answers (retried)", ["method"], registry=r
        )
        self.processing_lag = Histogram(
            "incidentbot_processing_lag_seconds",
            "Time from webhook receipt to its incident being stored",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.publish_latency = Histogram(
            "incidentbot_publish_seconds",
            "Time to bring an incident's Slack messages up to date",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.dependency_up = Gauge(
            "incidentbot_dependency_up",
            "1 while the bot reaches a dependency, 0 while it is failing",
            ["dependency"],
            registry=r,
        )
        self.inbox_pending = Gauge(
            "incidentbot_inbox_pending", "Stored webhooks not yet processed", registry=r
        )
        self.inbox_oldest_age = Gauge(
            "incidentbot_inbox_oldest_pending_seconds", "Age of the oldest unprocessed webhook", registry=r
        )
        self.remediations = Counter(
            "incidentbot_remediations_total",
            "Remediation runs that ended, by action and result",
            ["action", "result"],
            registry=r,
        )
        self.approval_wait = Histogram(
            "incidentbot_approval_wait_seconds",
            "Time from a remediation proposal to its last approval",
            buckets=(5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600),
            registry=r,
        )
        self.timers_fired = Counter(
            "incidentbot_timers_fired_total", "Durable timers fired", ["kind", "outcome"], registry=r
        )
        self.delivery_failures = Counter(
            "incidentbot_delivery_failures_total", "Webhook processing attempts that failed", registry=r
        )
        self.storms = Counter(
            "incidentbot_storms_total",
            "Incident storms, by team and event (started, ended)",
            ["team", "event"],
            registry=r,
        )
        self.storm_incidents = Counter(
            "incidentbot_storm_incidents_total",
            "Incidents opened during a storm, by role (digest: channel at once, waiting: channel held back)",
            ["role"],
            registry=r,
        )
        self.storm_digest_writes = Counter(
            "incidentbot_storm_digest_writes_total", "Storm digest posts and updates", ["kind"], registry=r
        )
        self.investigations = Counter(
            "incidentbot_investigations_total",
            "Investigations that ended, by status (done, abstained, stopped, failed)",
            ["status"],
            registry=r,
        )
        self.investigation_seconds = Histogram(
            "incidentbot_investigation_seconds",
            "Time an investigation took, from request to result",
            buckets=(1, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.investigation_tokens = Counter(
            "incidentbot_investigation_tokens_total",
            "Model tokens used by investigations",
            ["kind"],
            registry=r,
        )
