-- Remediation policy: one approver per required role, label-derived targets, the runtime
-- kill switch.

-- The rule's `approvers_all_of` at proposal time: each role must be covered by a different
-- approver. `roles` (comma-separated) are the required roles an approver held when approving.
ALTER TABLE action_runs ADD COLUMN approvers_all_of text[] NOT NULL DEFAULT '{}';
ALTER TABLE action_approvals ADD COLUMN roles text NOT NULL DEFAULT '';

-- The alert labels a playbook proposal took its target from (shown on the proposal).
ALTER TABLE action_runs ADD COLUMN target_labels text[] NOT NULL DEFAULT '{}';

-- A final run keeps the names of the environment variables it set, not their values (they may
-- be secrets); '(value hidden)' is bot.core.actions.HIDDEN.
CREATE FUNCTION scrubbed_params(action text, params jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN action = 'set_env' AND jsonb_typeof(params -> 'env') = 'object' THEN
        jsonb_set(params, '{env}', COALESCE(
            (SELECT jsonb_object_agg(k, to_jsonb('(value hidden)'::text))
             FROM jsonb_object_keys(params -> 'env') AS k),
            '{}'::jsonb))
    ELSE params END
$$;

-- Pending proposals of an incident are expired when it is resolved.
CREATE INDEX action_runs_pending_by_incident ON action_runs (incident_id) WHERE status = 'proposed';

-- The runtime kill switch: one row, read before every execution by every replica.
-- (policy.yaml `kill_switch: true` forces it on whatever this says.)
CREATE TABLE kill_switch (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),
    engaged     boolean     NOT NULL,
    reason      text        NOT NULL DEFAULT '',
    changed_by  text        NOT NULL,
    changed_at  timestamptz NOT NULL
);

-- Flipping it is audited like the runs.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_event_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_event_check CHECK (event IN (
    'requested', 'approved', 'rejected', 'expired', 'claimed', 'succeeded',
    'failed', 'verified', 'refused', 'kill_switch'));
