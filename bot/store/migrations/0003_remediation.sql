-- Remediation: proposals and their runs, approvals, and the append-only audit log.
--
-- Exactly once: a run is executed only by the replica whose compare-and-set
--   UPDATE action_runs SET status = 'running', ... WHERE id = $1 AND status = 'approved' RETURNING *
-- returned the row. Button values carry only `token` (random, unguessable), never the id.
CREATE TABLE action_runs (
    id               bigserial PRIMARY KEY,
    token            text        NOT NULL UNIQUE,
    incident_id      bigint      NOT NULL REFERENCES incidents (id),
    action           text        NOT NULL,
    params           jsonb       NOT NULL,
    target           text        NOT NULL,
    -- Namespace the action touches ('' for cluster-scoped targets such as nodes).
    namespace        text        NOT NULL DEFAULT '',
    playbook         text,
    title            text        NOT NULL,
    why              text        NOT NULL DEFAULT '',
    -- NULL: proposed by a playbook (the bot), not by a person.
    requested_by     text,
    approval_rule    text        NOT NULL DEFAULT 'default',
    approvals_needed integer     NOT NULL CHECK (approvals_needed >= 1),
    status           text        NOT NULL DEFAULT 'proposed' CHECK (status IN (
                         'proposed', 'approved', 'running', 'succeeded', 'failed',
                         'rejected', 'expired', 'cancelled')),
    -- summary_lines, resource_version, generation, fingerprint, dry_run_ok, target_exists,
    -- problem, current_replicas, cluster
    preview          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- The alert the proposal was made for (verification re-runs its checks/expression).
    labels           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    generator_url    text        NOT NULL DEFAULT '',
    expires_at       timestamptz NOT NULL,
    channel_id       text,
    message_ts       text,
    created_at       timestamptz NOT NULL,
    approved_at      timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    -- Set at claim: a run still 'running' after this was interrupted (outcome unknown).
    deadline_at      timestamptz,
    claimed_by       text,
    result           jsonb,
    error            text,
    verification     text,
    undo_of          bigint      REFERENCES action_runs (id),
    -- Playbook proposals are made once per incident, however often enrichment runs.
    dedupe_key       text,
    -- The proposal message is re-rendered from stored state until it shows `version`.
    version          bigint      NOT NULL DEFAULT 1,
    shown_version    bigint      NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX action_runs_dedupe ON action_runs (incident_id, dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX action_runs_by_incident ON action_runs (incident_id, id);
CREATE INDEX action_runs_expiry ON action_runs (expires_at) WHERE status = 'proposed';
CREATE INDEX action_runs_open ON action_runs (status) WHERE status IN ('approved', 'running');
CREATE INDEX action_runs_unshown ON action_runs (id) WHERE version > shown_version;
CREATE INDEX action_runs_by_target ON action_runs (target, started_at) WHERE started_at IS NOT NULL;

CREATE TABLE action_approvals (
    run_id  bigint      NOT NULL REFERENCES action_runs (id),
    user_id text        NOT NULL,
    at      timestamptz NOT NULL,
    PRIMARY KEY (run_id, user_id)
);

-- Append-only: who requested, approved, rejected; what ran, on what, with which parameters,
-- the dry-run output, the result and the timings. UPDATE and DELETE are refused.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    run_id      bigint      REFERENCES action_runs (id),
    incident_id bigint      REFERENCES incidents (id),
    actor       text,
    event       text        NOT NULL CHECK (event IN (
                    'requested', 'approved', 'rejected', 'expired', 'claimed', 'succeeded',
                    'failed', 'verified', 'refused')),
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_by_run ON audit_log (run_id, id);
CREATE INDEX audit_log_by_incident ON audit_log (incident_id, id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
