-- Several clusters: every run and every audit entry names the cluster it acts on (a name from
-- clusters.yaml, or 'default' for the single cluster without it). Rows stored before are ''.
ALTER TABLE action_runs ADD COLUMN cluster text NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN cluster text NOT NULL DEFAULT '';

-- The cooldown looks for recent runs on the same target in the same cluster.
CREATE INDEX action_runs_by_cluster_target ON action_runs (cluster, target, started_at);
