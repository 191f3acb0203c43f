-- Lifecycle: roles, timers, silences, PagerDuty links, archive.
ALTER TABLE incidents
    ADD COLUMN pagerduty_incident_id  text,
    ADD COLUMN pagerduty_service      text,
    ADD COLUMN pagerduty_escalation_policy text,
    ADD COLUMN pagerduty_url          text,
    ADD COLUMN resolution_summary     text,
    ADD COLUMN archived_at            timestamptz,
    ADD COLUMN status_updated_at      timestamptz;
CREATE UNIQUE INDEX incidents_pagerduty ON incidents (pagerduty_incident_id) WHERE pagerduty_incident_id IS NOT NULL;

CREATE TABLE incident_roles (
    incident_id bigint      NOT NULL REFERENCES incidents (id),
    role        text        NOT NULL,
    user_id     text        NOT NULL,
    assigned_at timestamptz NOT NULL,
    assigned_by text,
    PRIMARY KEY (incident_id, role)
);

-- Durable timers (reminders, escalation, archive). A replica claims a due timer with a
-- lease; the claim is a compare-and-set, so each fires once across replicas, and a timer
-- whose claimer died is taken over when the lease runs out.
CREATE TABLE timers (
    id          bigserial PRIMARY KEY,
    incident_id bigint      NOT NULL REFERENCES incidents (id),
    kind        text        NOT NULL,
    due_at      timestamptz NOT NULL,
    data        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    claimed_by  text,
    claimed_at  timestamptz,
    done_at     timestamptz,
    outcome     text
);
CREATE INDEX timers_due ON timers (due_at) WHERE done_at IS NULL;
CREATE INDEX timers_by_incident ON timers (incident_id) WHERE done_at IS NULL;

CREATE TABLE silences (
    id           bigserial PRIMARY KEY,
    incident_id  bigint      NOT NULL REFERENCES incidents (id),
    silence_id   text        NOT NULL,
    matchers     jsonb       NOT NULL,
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    expired_at   timestamptz
);
CREATE INDEX silences_by_incident ON silences (incident_id);
