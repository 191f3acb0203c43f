-- Webhook inbox: every accepted delivery is written here before the HTTP 2xx.
CREATE TABLE webhook_inbox (
    id           bigserial PRIMARY KEY,
    source       text        NOT NULL,
    delivery_id  text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    body         jsonb       NOT NULL,
    processed_at timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    -- Failed processing backs off instead of spinning on one bad row.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error   text
);
-- Work queue scan: only unprocessed rows are indexed.
CREATE INDEX webhook_inbox_pending ON webhook_inbox (id) WHERE processed_at IS NULL;
-- Sources with a delivery id (PagerDuty X-Webhook-Id, Slack event_id) are stored once.
CREATE UNIQUE INDEX webhook_inbox_delivery ON webhook_inbox (source, delivery_id) WHERE delivery_id IS NOT NULL;

CREATE TABLE incidents (
    id                  bigserial PRIMARY KEY,
    group_key           text        NOT NULL,
    -- TRUE while the incident is open, NULL once resolved: with the unique index below,
    -- at most one open incident per group key, any number of resolved ones.
    open_marker         boolean     DEFAULT TRUE,
    status              text        NOT NULL,
    severity            text        NOT NULL,
    title               text        NOT NULL,
    source              text        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    acknowledged_at     timestamptz,
    acknowledged_by     text,
    resolved_at         timestamptz,
    resolved_by         text,
    commander           text,
    last_status_update  text,
    external_url        text,
    channel_id          text,
    channel_name        text,
    channel_claimed_by  text,
    channel_claimed_at  timestamptz,
    channel_topic       text,
    card_ts             text,
    notification_channel_id text,
    notification_ts     text,
    version             bigint      NOT NULL DEFAULT 1,
    published_version   bigint      NOT NULL DEFAULT 0,
    published_at        timestamptz,
    CONSTRAINT incidents_open_marker CHECK (open_marker IS NULL OR open_marker)
);
CREATE UNIQUE INDEX incidents_one_open_per_key ON incidents (group_key, open_marker);
CREATE INDEX incidents_unpublished ON incidents (id) WHERE version > published_version;

CREATE TABLE alerts (
    id               bigserial PRIMARY KEY,
    incident_id      bigint      REFERENCES incidents (id),
    fingerprint      text        NOT NULL,
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz,
    status           text        NOT NULL,
    alertname        text        NOT NULL,
    labels           jsonb       NOT NULL,
    annotations      jsonb       NOT NULL,
    generator_url    text        NOT NULL DEFAULT '',
    first_seen       timestamptz NOT NULL DEFAULT now(),
    last_seen        timestamptz NOT NULL DEFAULT now(),
    -- The newest delivery applied; an older snapshot processed late never regresses state.
    last_delivery_id bigint      NOT NULL,
    -- One row per alert occurrence, as Alertmanager identifies it.
    UNIQUE (fingerprint, starts_at)
);
CREATE INDEX alerts_by_incident ON alerts (incident_id);

CREATE TABLE timeline_events (
    id          bigserial PRIMARY KEY,
    incident_id bigint      NOT NULL REFERENCES incidents (id),
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text        NOT NULL,
    actor       text,
    text        text        NOT NULL,
    data        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Events posted into the channel carry the Slack ts once posted (exactly once).
    announce    boolean     NOT NULL DEFAULT FALSE,
    announced_ts text
);
CREATE INDEX timeline_by_incident ON timeline_events (incident_id, id);
CREATE INDEX timeline_unannounced ON timeline_events (incident_id, id) WHERE announce AND announced_ts IS NULL;
