-- Correlation (bot.core.correlation): every decision about a new alert group, with its reason
-- and the facts compared (later groups are compared with these); suggestions answered with
-- the Attach / Keep separate buttons; links humans taught by merging and splitting.
CREATE TABLE correlation_decisions (
    id             bigserial   PRIMARY KEY,
    group_key      text        NOT NULL,      -- the intake's key (a playbook may regroup)
    am_group_key   text        NOT NULL,      -- Alertmanager's groupKey (its join keys)
    incident_id    bigint      NOT NULL REFERENCES incidents (id),
    outcome        text        NOT NULL,      -- opened | attached | suggested | split
    rule           text        NOT NULL,
    reason         text        NOT NULL,
    related_id     bigint      REFERENCES incidents (id),
    alertnames     text[]      NOT NULL,
    facts          jsonb       NOT NULL,
    at             timestamptz NOT NULL
);
CREATE INDEX correlation_decisions_by_incident ON correlation_decisions (incident_id);

CREATE TABLE correlation_suggestions (
    id           bigserial   PRIMARY KEY,
    token        text        NOT NULL UNIQUE,  -- the buttons' opaque value
    incident_id  bigint      NOT NULL REFERENCES incidents (id),  -- the new incident
    candidate_id bigint      NOT NULL REFERENCES incidents (id),  -- where the buttons are
    reason       text        NOT NULL,
    created_at   timestamptz NOT NULL,
    decided      text,                         -- attach | separate
    decided_by   text,
    decided_at   timestamptz
);

CREATE TABLE learned_links (
    id         bigserial   PRIMARY KEY,
    name_a     text        NOT NULL,
    name_b     text        NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('attach', 'off')),
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL,
    incident_id bigint     REFERENCES incidents (id),
    UNIQUE (name_a, name_b)
);
