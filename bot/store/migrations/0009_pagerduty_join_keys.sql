-- Keys under which a PagerDuty incident joins an incident instead of opening another one:
-- what Alertmanager's pagerduty_configs sends as dedup_key (the hex SHA-256 of the group key),
-- the raw group key, a dedup key the operator set on the alerts, and the incident_key of a
-- PagerDuty incident that opened the incident (so the Alertmanager group that comes later joins
-- it). Only open incidents are looked up; a resolved incident's keys stay for its history.
CREATE TABLE incident_join_keys (
    join_key    text   NOT NULL,
    incident_id bigint NOT NULL REFERENCES incidents (id),
    kind        text   NOT NULL,
    PRIMARY KEY (join_key, incident_id)
);
CREATE INDEX incident_join_keys_by_incident ON incident_join_keys (incident_id);
