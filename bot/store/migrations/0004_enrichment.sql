-- Which playbooks have been posted into an incident's channel: each once, even with several
-- replicas; a claim whose poster died is retried after its lease.
CREATE TABLE incident_playbooks (
    incident_id   bigint      NOT NULL REFERENCES incidents (id),
    playbook      text        NOT NULL,
    alertname     text        NOT NULL,
    claimed_by    text        NOT NULL,
    claimed_at    timestamptz NOT NULL,
    posted_at     timestamptz,
    PRIMARY KEY (incident_id, playbook)
);
