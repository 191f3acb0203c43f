-- The optional investigator's audit: every investigation, each tool call it made (arguments
-- and the redacted, size-capped output the model saw), tokens and a cost estimate.
CREATE TABLE investigations (
    id                bigserial PRIMARY KEY,
    incident_id       bigint      NOT NULL REFERENCES incidents (id),
    requested_by      text,
    question          text        NOT NULL DEFAULT '',
    model             text        NOT NULL,
    status            text        NOT NULL,  -- running, done, abstained, stopped, failed
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz,
    prompt_tokens     integer     NOT NULL DEFAULT 0,
    completion_tokens integer     NOT NULL DEFAULT 0,
    cost_estimate     numeric(12, 6) NOT NULL DEFAULT 0,
    stop_reason       text,
    result            jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX investigations_by_incident ON investigations (incident_id, id);

CREATE TABLE investigation_tool_calls (
    investigation_id bigint      NOT NULL REFERENCES investigations (id),
    call_id          text        NOT NULL,
    tool             text        NOT NULL,
    arguments        jsonb       NOT NULL,
    ok               boolean     NOT NULL,
    output           text        NOT NULL,
    elapsed_ms       integer     NOT NULL,
    at               timestamptz NOT NULL,
    PRIMARY KEY (investigation_id, call_id)
);
-- At most one automatic investigation (no requester) per incident, whichever replica starts it.
CREATE UNIQUE INDEX investigations_auto_once ON investigations (incident_id) WHERE requested_by IS NULL;

-- The investigator's runtime kill switch: one row every replica reads before it starts an
-- investigation (LLM_DISABLED stops it at start-up whatever this says).
CREATE TABLE investigator_switch (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),
    stopped     boolean     NOT NULL,
    reason      text        NOT NULL DEFAULT '',
    changed_by  text        NOT NULL,
    changed_at  timestamptz NOT NULL
);
