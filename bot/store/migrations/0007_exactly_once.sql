-- Timers and enrichment: exactly once in effect, with short leases.
-- A timeline event written by a timer (or an enrichment post) carries an idempotency key
-- (timer:<id>, playbook:<incident>:<playbook>): a second fire after its holder died or lost its
-- lease finds the event there and adds nothing, so its announcement is posted once.
ALTER TABLE timeline_events ADD COLUMN idempotency_key text UNIQUE;
-- Each claim of a timer or of a playbook post is numbered: the heartbeat that renews it and
-- the finish are compare-and-set on (claimed_by, claim), so a holder that lost its claim to
-- another replica can neither keep it alive nor finish it.
ALTER TABLE timers ADD COLUMN claim integer NOT NULL DEFAULT 0;
ALTER TABLE incident_playbooks ADD COLUMN claim integer NOT NULL DEFAULT 1;
CREATE INDEX incident_playbooks_unposted ON incident_playbooks (claimed_at) WHERE posted_at IS NULL;
